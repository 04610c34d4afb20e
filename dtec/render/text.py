"""Human-readable diagnostics with the source line and a caret underline."""

from __future__ import annotations

from collections.abc import Sequence

from dtec.diagnostics import Diagnostic


def render_text(diagnostics: Sequence[Diagnostic], *, color: bool = False) -> str:
    """Render diagnostics the way rustc and ruff show them."""
    out: list[str] = []
    for d in diagnostics:
        out.append(f"{d.severity.value}[{d.code}]: {d.message}")
        if d.span is not None:
            line, col = d.span.start_pos
            out.append(f"  --> {d.span.path}:{line}:{col}")
            text = d.span.source.line_text(line)
            end_line, end_col = d.span.end_pos
            width = (end_col - col) if end_line == line else len(text) - col + 1
            gutter = " " * len(str(line))
            out += [f"{gutter} |", f"{line} | {text}", f"{gutter} | {' ' * (col - 1)}{'^' * max(width, 1)}"]
        if d.help:
            out.append(f"  = help: {d.help}")
        out.append("")
    return "\n".join(out)
