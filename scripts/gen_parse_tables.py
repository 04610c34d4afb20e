"""Write grammars/twin.tables.json from grammars/twin.lark; `--check` fails when the file is stale."""

from __future__ import annotations

import sys
from pathlib import Path

from dtec.syntax.parser import grammar_sha256, tables_from_lark

TARGET = Path(__file__).resolve().parent.parent / "grammars" / "twin.tables.json"


def main(argv: list[str]) -> int:
    text = tables_from_lark().to_json(grammar_sha256())
    if "--check" in argv:
        if not TARGET.is_file() or TARGET.read_text(encoding="utf-8") != text:
            print(f"{TARGET} is stale: run `python scripts/gen_parse_tables.py`", file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(text, encoding="utf-8")
    print(f"wrote {TARGET}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
