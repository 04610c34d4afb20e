"""Where a diagnostic is, as renderers show it: 1-based positions and display paths."""

from __future__ import annotations

from pathlib import Path

from dtec.source import Span


def position(span: Span | None) -> dict[str, int | None]:
    """Return 1-based `line`, `column`, `end_line`, `end_column` (end exclusive), or Nones."""
    if span is None:
        return {"line": None, "column": None, "end_line": None, "end_column": None}
    line, column = span.start_pos
    end_line, end_column = span.end_pos
    return {"line": line, "column": column, "end_line": end_line, "end_column": end_column}


def display_path(path: str) -> str:
    """Return `path` relative to the working folder when it lies below it, else unchanged.

    Imported files are read by absolute path; showing every file the same way keeps output
    portable and lets GitHub attach annotations, which need repository-relative paths.
    """
    candidate = Path(path)
    if not candidate.is_absolute():
        return path
    try:
        return str(candidate.relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return path
