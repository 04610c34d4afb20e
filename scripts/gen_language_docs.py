"""Write docs/language.md from the vocabulary; `--check` fails when the file is stale."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# The page is made from this checkout's vocabulary, not from whatever dtec is installed.
sys.path.insert(0, str(REPO))

from dtec.lang.reference import language_reference  # noqa: E402
from generated import write_or_check  # noqa: E402

if __name__ == "__main__":
    sys.exit(write_or_check(REPO / "docs" / "language.md", language_reference(), sys.argv[1:]))
