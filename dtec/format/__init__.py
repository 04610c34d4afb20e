"""The `.twin` formatter: canonical, idempotent output that keeps every comment."""

from __future__ import annotations

from dtec.diagnostics import Diagnostic
from dtec.format.printer import print_document
from dtec.format.safety import FormatterError, check
from dtec.source import Source
from dtec.syntax.parser import parse

__all__ = ["FormatterError", "format_source"]


def format_source(source: Source) -> tuple[str | None, list[Diagnostic]]:
    """Return the canonical text, or None and the diagnostics when the source has syntax errors.

    Raises FormatterError when the output fails a safety check (a formatter bug). The parser bounds
    nesting (DT002), so the printer's recursion stays far from Python's limit.
    """
    document, diagnostics = parse(source)
    # Any parse diagnostic (bad escape, unknown unit, deep nesting) means the file needs a human.
    if document is None or diagnostics:
        return None, diagnostics
    formatted = print_document(document)
    check(document, formatted, print_document)
    return formatted, []
