"""Write one generated file, or with `--check` fail when it is stale (for the gen_* scripts)."""

from __future__ import annotations

import sys
from pathlib import Path


def write_or_check(target: Path, text: str, argv: list[str]) -> int:
    """Write `text` to `target`, or with `--check` in `argv` compare; return the exit status."""
    if "--check" in argv:
        if not target.is_file() or target.read_text(encoding="utf-8") != text:
            print(f"{target} is stale: run `python scripts/{Path(sys.argv[0]).name}`", file=sys.stderr)
            return 1
        return 0
    target.write_text(text, encoding="utf-8")
    print(f"wrote {target}")
    return 0
