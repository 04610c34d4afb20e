"""Write grammars/twin.tables.json from grammars/twin.lark; `--check` fails when the file is stale."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# The tables are built from this checkout's grammar, not from whatever dtec is installed.
sys.path.insert(0, str(REPO))

from dtec.syntax.parser import grammar_sha256, tables_from_lark  # noqa: E402
from generated import write_or_check  # noqa: E402

if __name__ == "__main__":
    text = tables_from_lark().to_json(grammar_sha256())
    sys.exit(write_or_check(REPO / "grammars" / "twin.tables.json", text, sys.argv[1:]))
