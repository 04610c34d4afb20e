"""The formatter's safety checks (after gdtoolkit): same meaning, stable, every comment kept.

And every suppression comment still applies to the same items.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import fields, is_dataclass

from dtec.format.comments import comment_text
from dtec.lang.suppress import is_suppression, target_line
from dtec.source import Source, Span
from dtec.syntax import ast
from dtec.syntax.parser import parse


class FormatterError(Exception):
    """The formatter cannot give a safe result (a failed safety check); leave the file as it was."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}; the file is left unchanged")
        self.path = path
        self.problem = problem


def check(original: ast.Document, formatted: str, reprint: Callable[[ast.Document], str]) -> None:
    """Raise FormatterError unless `formatted` means `original`, keeps its comments, is stable.

    It also keeps what each `# dtec: ignore` comment applies to: the items starting on its line.
    """
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
    for comment, before, after in zip(
        [c for c in original.comments if is_suppression(c)],
        _suppressed(original),
        _suppressed(document),
        strict=True,
    ):
        if before != after:
            line = comment.span.start_pos[0]
            raise FormatterError(
                path,
                f"cannot keep what the `# dtec: ignore` comment on line {line} applies to; "
                "move it beside the item it is for, or onto its own line above it",
            )
    if reprint(document) != formatted:
        raise FormatterError(
            path, "formatter bug: the output is not stable (a second run changes it)"
        )


def _suppressed(document: ast.Document) -> list[set[str]]:
    """Return, for each `# dtec: ignore` comment, the spans that start on the line it applies to."""
    targets = [target_line(document, c) for c in document.comments if is_suppression(c)]
    lines: dict[int, set[str]] = {line: set() for line in targets}
    for place, offset in span_starts(document) if targets else ():
        line = document.source.position(offset)[0]
        if line in lines:
            lines[line].add(place)
    return [lines[line] for line in targets]


def span_starts(document: ast.Document) -> Iterator[tuple[str, int]]:
    """Yield where each span of the tree starts, named by its place in the tree.

    Every diagnostic starts where a span starts, or at the start of the file.
    """
    yield "start of file", 0
    for i, item in enumerate(document.items):
        yield from _starts(item, str(i))


def _starts(node: object, place: str) -> Iterator[tuple[str, int]]:
    for f in fields(node):  # type: ignore[arg-type]
        value = getattr(node, f.name)
        if isinstance(value, Span):
            yield f"{place}.{f.name}", value.start
        elif is_dataclass(value):
            yield from _starts(value, f"{place}.{f.name}")
        elif isinstance(value, tuple):
            for i, child in enumerate(value):
                if is_dataclass(child):
                    yield from _starts(child, f"{place}.{f.name}.{i}")
