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

    Raises FormatterError when the output fails a safety check (a formatter bug), or when the
    nesting is too deep for Python's recursion limit.
    """
    try:
        document, diagnostics = parse(source)
        # Any parse diagnostic (bad escape, unknown unit) means the file needs a human first.
        if document is None or diagnostics:
            return None, diagnostics
        formatted = print_document(document)
        check(document, formatted, print_document)
    except RecursionError:
        raise FormatterError(source.path, "the blueprint is nested too deeply to format") from None
    return formatted, []
