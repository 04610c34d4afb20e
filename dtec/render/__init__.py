"""Renderers of diagnostics, one module per output format, and the one-line summary."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from dtec.diagnostics import Diagnostic, Severity

FORMATS = ("text", "json", "github", "sarif")


def render(
    diagnostics: Sequence[Diagnostic],
    fmt: str = "text",
    *,
    color: bool = False,
    files: Sequence[Path | str] = (),
    root: Path | None = None,
) -> str:
    """Render diagnostics in one of `FORMATS`; `files` are the files checked (SARIF artifacts)."""
    if fmt == "text":
        from dtec.render.text import render_text

        return render_text(diagnostics, color=color)
    if fmt == "json":
        from dtec.render.json import render_json

        return render_json(diagnostics)
    if fmt == "github":
        from dtec.render.github import render_github

        return render_github(diagnostics)
    if fmt == "sarif":
        from dtec.render.sarif import render_sarif

        return render_sarif(diagnostics, files=files, root=root)
    raise ValueError(f"unknown format {fmt!r}")


def summary(diagnostics: Sequence[Diagnostic], files: int, *, color: bool = False) -> str:
    """Return `2 errors, 1 warning in 3 files` or `All checks passed (3 files)` (files checked)."""
    checked = _plural(files, "file")
    if not diagnostics:
        text = f"All checks passed ({checked})"
        return _paint(text, "32;1") if color else text
    counts = []
    for severity in Severity:
        n = sum(d.severity is severity for d in diagnostics)
        noun = severity.value
        if n:
            # "info" is a mass noun: `2 info`, not `2 infos`.
            counts.append(f"{n} {noun}" if severity is Severity.INFO else _plural(n, noun))
    text = f"{', '.join(counts)} in {checked}"
    if color:
        worst = "31;1" if any(d.severity is Severity.ERROR for d in diagnostics) else "33;1"
        return _paint(text, worst)
    return text


def write(stream: TextIO, text: str) -> None:
    """Write `text`, escaping what the stream's encoding cannot hold instead of crashing."""
    try:
        stream.write(text)
    except UnicodeEncodeError:
        encoding = getattr(stream, "encoding", None) or "ascii"
        stream.write(text.encode(encoding, "backslashreplace").decode(encoding))


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _paint(text: str, sgr: str) -> str:
    return f"\x1b[{sgr}m{text}\x1b[0m"
