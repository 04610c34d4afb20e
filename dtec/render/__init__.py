"""Renderers of diagnostics, one module per output format."""

from __future__ import annotations

from collections.abc import Sequence

from dtec.diagnostics import Diagnostic

FORMATS = ("text", "json", "github", "sarif")


def render(diagnostics: Sequence[Diagnostic], fmt: str = "text", *, color: bool = False) -> str:
    """Render diagnostics in one of `FORMATS`."""
    if fmt == "text":
        from dtec.render.text import render_text

        return render_text(diagnostics, color=color)
    raise ValueError(f"unknown format {fmt!r}")
