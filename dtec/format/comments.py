"""Place every comment of a document: on an opener's line, after an item, or on its own line."""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass, field
from itertools import pairwise

from dtec.lang.suppress import is_suppression, target_line
from dtec.syntax import ast

# The lexer's comment token runs to the end of the line, so it drags in `\r` and trailing blanks.
COMMENT_WS = " \t\f\r"

Node = ast.Block | ast.Attribute | ast.Import | ast.Expr
Container = ast.Document | ast.Block | ast.ListExpr | ast.MapExpr | ast.Call
_EXPR_CONTAINERS = (ast.ListExpr, ast.MapExpr, ast.Call)


@dataclass
class Entry:
    """One line-level element of a container: an item (with its trailing comment) or a comment.

    `pin` is the line of an item that lies wholly on a line a suppression comment applies to: the
    item stays on one line, with the other items of that line.
    """

    node: Node | None
    comment: str | None
    blank: bool = False
    start: int = 0
    end: int = 0
    pin: int | None = None


@dataclass
class Shape:
    """A container's content in source order, and the comment on its opener's line."""

    opening: str | None = None
    entries: list[Entry] = field(default_factory=list)


def children(node: Container) -> tuple[Node, ...]:
    """Return a container's items in source order (a call's arguments interleaved as written)."""
    if isinstance(node, ast.Document):
        return node.items
    if isinstance(node, ast.Block):
        return node.body
    if isinstance(node, ast.ListExpr):
        return node.items
    if isinstance(node, ast.MapExpr):
        return node.entries
    return tuple(sorted((*node.args, *node.kwargs), key=lambda n: n.span.start))


def comment_text(comment: ast.Comment) -> str:
    """Return a comment as the formatter writes it."""
    return comment.text.rstrip(COMMENT_WS)


class Notes:
    """Where each comment of one document goes, and which containers must keep several lines.

    A `# dtec: ignore` comment applies to the items that start on one line, so the formatter
    keeps that line's items together and does not join that line with others (`pin`, `multiline`).
    """

    def __init__(self, document: ast.Document) -> None:
        self._source = document.source
        self._shapes: dict[int, Shape] = {}
        self._own: dict[int, list[ast.Comment]] = {}
        self._trailing: dict[int, str] = {}
        self._indexes: dict[int, tuple[tuple[Node, ...], list[int]]] = {}
        self._targets = {target_line(document, c) for c in document.comments if is_suppression(c)}
        self.multiline: set[int] = set()
        for comment in document.comments:
            self._place(document, comment)
        self._build(document)

    def shape(self, node: Container) -> Shape:
        """Return the entries of a container."""
        return self._shapes[id(node)]

    def _line(self, offset: int) -> int:
        return self._source.position(offset)[0]

    def _place(self, document: ast.Document, comment: ast.Comment) -> None:
        at = comment.span.start
        path: list[Container] = [document]
        while True:
            items, starts = self._index(path[-1])
            # Items are disjoint and in order: only the last one starting before `at` can hold it.
            count = bisect_left(starts, at)
            inner = _inner(items[count - 1]) if count else None
            if inner is None or not inner.span.start < at < inner.span.end:
                break
            path.append(inner)
        line = self._line(at)
        text = comment_text(comment)
        if count and self._line(items[count - 1].span.end) == line:
            item = items[count - 1]
            while is_suppression(comment) and self._line(item.span.start) != line:
                # It applies to what starts on its line: trail the innermost item there (`2]`),
                # or, when nothing starts there, stay after the closer (`]`), on a line of its own.
                inner = _inner(item)
                last = self._index(inner)[0][-1:] if inner is not None else ()
                if not last or self._line(last[0].span.end) != line:
                    self._keep_open(item)
                    break
                path.append(inner)  # type: ignore[arg-type]
                item = last[0]
            # Authors align trailing comments by hand (the quickstart does): keep their gap, at least 2.
            prefix = self._source.line_text(line)[: comment.span.start_pos[1] - 1]
            gap = len(prefix) - len(prefix.rstrip(" \t"))
            self._trailing[id(item)] = " " * max(2, gap) + text
        elif not count and path[-1] is not document and self._line(path[-1].span.start) == line:
            self._opening(path[-1]).opening = text
        else:
            self._own.setdefault(id(path[-1]), []).append(comment)
        self.multiline.update(id(node) for node in path)

    def _index(self, node: Container) -> tuple[tuple[Node, ...], list[int]]:
        """Return a container's items and their start offsets, computed once per container."""
        key = id(node)
        if key not in self._indexes:
            items = children(node)
            self._indexes[key] = items, [n.span.start for n in items]
        return self._indexes[key]

    def _pin(self, entries: list[Entry]) -> None:
        """Pin the items lying on a suppressed line; keep those starting there on several lines."""
        for entry in entries:
            first, last = self._line(entry.start), self._line(entry.end)
            if first not in self._targets:
                continue
            if first == last:
                entry.pin = first
            else:
                self._keep_open(entry.node)  # type: ignore[arg-type]

    def _keep_open(self, node: Node) -> None:
        """Keep the container an item holds on several lines (an empty one prints `[]` anyway)."""
        inner = _inner(node)
        if inner is not None and children(inner):
            self.multiline.add(id(inner))

    def _opening(self, node: Container) -> Shape:
        return self._shapes.setdefault(id(node), Shape())

    def _build(self, node: Container) -> None:
        shape = self._shapes.setdefault(id(node), Shape())
        entries = [
            Entry(n, self._trailing.get(id(n)), start=n.span.start, end=n.span.end)
            for n in children(node)
        ]
        if self._targets:
            self._pin(entries)
        for entry in entries:
            if entry.comment is not None:
                # A trailing comment ends the item's line, so blank lines are counted after it.
                entry.end = self._source.text.find("\n", entry.end)
                entry.end = len(self._source.text) if entry.end == -1 else entry.end
        entries += [
            Entry(None, comment_text(c), start=c.span.start, end=c.span.end)
            for c in self._own.get(id(node), [])
        ]
        entries.sort(key=lambda e: e.start)
        text = self._source.text
        for prev, entry in pairwise(entries):
            entry.blank = text.count("\n", prev.end, entry.start) >= 2
        shape.entries = entries
        for child in children(node):
            inner = _inner(child)
            if inner is not None:
                self._build(inner)


def _inner(node: Node) -> Container | None:
    """Return the container an item holds (a block, or an attribute's list, map or call)."""
    inner = node.value if isinstance(node, ast.Attribute) else node
    return inner if isinstance(inner, (ast.Block, *_EXPR_CONTAINERS)) else None
