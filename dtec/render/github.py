"""GitHub Actions workflow commands (`::error file=…::message`), one line per diagnostic."""

from __future__ import annotations

from collections.abc import Sequence

from dtec.diagnostics import Diagnostic, Severity
from dtec.render.location import display_path

_COMMAND = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "notice"}


def escape_data(text: str) -> str:
    """Escape a message the way the runner's command parser expects."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """Escape a property value: as a message, plus `:` and `,` that end a property."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def render_github(diagnostics: Sequence[Diagnostic]) -> str:
    """Render one workflow command per diagnostic; columns are code points, end exclusive."""
    return "".join(_command(d) + "\n" for d in diagnostics)


def _command(d: Diagnostic) -> str:
    props: list[tuple[str, object]] = []
    if d.span is not None:
        line, col = d.span.start_pos
        end_line, end_col = d.span.end_pos
        props += [("file", display_path(d.span.path)), ("line", line)]
        # GitHub rejects columns on annotations that span lines (see ruff's github renderer).
        props += [("col", col)] if end_line == line else []
        props += [("endLine", end_line)]
        props += [("endColumn", end_col)] if end_line == line else []
    props.append(("title", f"{d.code} {d.rule.name}"))
    message = d.message
    if d.help:
        message += f"\nhelp: {d.help}"
    for related in d.related:
        line, col = related.span.start_pos
        message += f"\nnote: {related.message} ({display_path(related.span.path)}:{line}:{col})"
    fields = ",".join(f"{key}={escape_property(str(value))}" for key, value in props)
    return f"::{_COMMAND[d.severity]} {fields}::{escape_data(message)}"
