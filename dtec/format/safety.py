"""The formatter's safety checks (after gdtoolkit): same meaning, stable, every comment kept."""

from __future__ import annotations

from collections.abc import Callable

from dtec.format.comments import comment_text
from dtec.source import Source
from dtec.syntax import ast
from dtec.syntax.parser import parse


class FormatterError(Exception):
    """The formatter cannot give a safe result (a failed safety check); leave the file as it was."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}; the file is left unchanged")
        self.path = path
        self.problem = problem


def check(original: ast.Document, formatted: str, reprint: Callable[[ast.Document], str]) -> None:
    """Raise FormatterError unless `formatted` means `original`, keeps its comments, is stable."""
    path = original.source.path
    document, diagnostics = parse(Source(path, formatted))
    if document is None or diagnostics:
        found = "; ".join(d.message for d in diagnostics)
        raise FormatterError(path, f"formatter bug: the output does not parse ({found})")
    if document != original:
        raise FormatterError(path, "formatter bug: the output means something else than the input")
    if [comment_text(c) for c in document.comments] != [comment_text(c) for c in original.comments]:
        raise FormatterError(
            path, "formatter bug: a comment was lost, changed or moved out of order"
        )
    if reprint(document) != formatted:
        raise FormatterError(
            path, "formatter bug: the output is not stable (a second run changes it)"
        )
