"""Format files: read, format, diff, and replace a file without ever leaving it half-written."""

from __future__ import annotations

import difflib
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

from dtec.diagnostics import Diagnostic, diag
from dtec.format import FormatterError, format_source
from dtec.output import OutputError, failed, write_atomic
from dtec.source import Source, read_source


@dataclass
class Outcome:
    """What formatting one file gave: new text, or why there is none."""

    name: str
    original: str | None
    formatted: str | None = None
    diagnostics: list[Diagnostic] = field(default_factory=list)
    error: FormatterError | None = None

    @property
    def changed(self) -> bool:
        """Tell whether the file is formatted and differs from the canonical text."""
        return self.formatted is not None and self.formatted != self.original


def format_path(path: Path) -> Outcome:
    """Format one file's text (the file itself is not touched)."""
    source = read_source(path)
    if isinstance(source, str):
        found = diag("DT001", f"cannot read `{path}`: {source}", None, "check the path")
        return Outcome(str(path), None, diagnostics=[found])
    return format_text(source)


def format_bytes(name: str, data: bytes) -> Outcome:
    """Format text that came as bytes (stdin), UTF-8 with an optional byte-order mark."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        found = diag("DT001", f"cannot read `{name}`: not valid UTF-8 (byte {exc.start})", None)
        return Outcome(name, None, diagnostics=[found])
    return format_text(Source(name, text))


def format_text(source: Source) -> Outcome:
    """Format a source, turning a failed safety check into an outcome instead of an exception."""
    try:
        formatted, diagnostics = format_source(source)
    except FormatterError as exc:
        return Outcome(source.path, source.text, error=exc)
    return Outcome(source.path, source.text, formatted, diagnostics)


def replace_text(path: Path, text: str) -> None:
    """Replace a file's text in one step (see write_atomic), keeping its mode; raise OutputError."""
    target = Path(os.path.realpath(path))  # keep symlinks: rewrite the file they point to
    try:
        mode = stat.S_IMODE(target.stat().st_mode)
    except OSError as exc:
        raise failed(exc, path) from None
    if not os.access(target, os.W_OK):
        raise OutputError(path, "the file is read-only")  # a rename would get past its mode
    write_atomic(target, text, mode)


def unified_diff(outcome: Outcome) -> str:
    """Return the change as a unified diff (`patch -p0` applies it)."""
    lines = difflib.unified_diff(
        _lines(outcome.original or ""),
        _lines(outcome.formatted or ""),
        f"{outcome.name}\t(original)",
        f"{outcome.name}\t(formatted)",
    )
    return "".join(
        line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines
    )


def _lines(text: str) -> list[str]:
    # Split on `\n` only: str.splitlines would also break at form feeds inside comments.
    return re.findall(r"[^\n]*\n|[^\n]+$", text)


def summary(changed: int, unchanged: int, failed: int, *, dry: bool) -> str:
    """Return `1 file reformatted, 2 files left unchanged`, or the `would be` form for a dry run."""
    would = "would be " if dry else ""
    parts = [
        f"{_files(changed)} {would}reformatted" if changed else "",
        f"{_files(unchanged)} {would}left unchanged" if unchanged else "",
        f"{_files(failed)} {'would fail' if dry else 'failed'} to reformat" if failed else "",
    ]
    return ", ".join(p for p in parts if p) or "no blueprints found"


def _files(n: int) -> str:
    return f"{n} file" if n == 1 else f"{n} files"
