"""Write docs/language.md from the vocabulary; `--check` fails when the file is stale."""

from __future__ import annotations

import sys
from pathlib import Path

from dtec.lang.reference import language_reference

TARGET = Path(__file__).resolve().parent.parent / "docs" / "language.md"


def main(argv: list[str]) -> int:
    text = language_reference()
    if "--check" in argv:
        if not TARGET.is_file() or TARGET.read_text(encoding="utf-8") != text:
            print(f"{TARGET} is stale: run `python scripts/gen_language_docs.py`", file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(text, encoding="utf-8")
    print(f"wrote {TARGET}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
