"""The .twin AST: frozen nodes whose spans are left out of equality, so trees compare by meaning."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Union

from dtec.source import Source, Span


def _span() -> Span:
    return field(compare=False, repr=False)  # type: ignore[return-value]


@dataclass(frozen=True, slots=True)
class Str:
    """A double-quoted string, escapes resolved."""

    value: str
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Number:
    """A number with an optional unit suffix (`30min`, `16GB`); the text is kept for the formatter.

    The value is None when the parser reported the literal (too many digits); `1e309` is infinity,
    which the checker reports.
    """

    value: int | float | None
    unit: str | None
    text: str = field(compare=False)
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Bool:
    """`true` or `false`."""

    value: bool
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Symbol:
    """A bare identifier used as a value (`mse`, `ddp`, `auto`)."""

    name: str
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Ref:
    """A dotted reference to a block, such as `data.gauges`."""

    parts: tuple[str, ...]
    span: Span = _span()

    @property
    def dotted(self) -> str:
        """Return the reference as written, e.g. `data.gauges`."""
        return ".".join(self.parts)


@dataclass(frozen=True, slots=True)
class ListExpr:
    """A list `[a, b]`."""

    items: tuple[Expr, ...]
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class MapExpr:
    """An inline map `{ k = v, ... }`."""

    entries: tuple[Attribute, ...]
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Call:
    """A call `name(positional, key = value)`."""

    name: str
    args: tuple[Expr, ...]
    kwargs: tuple[Attribute, ...]
    name_span: Span = _span()
    span: Span = _span()


Expr = Union[Str, Number, Bool, Symbol, Ref, ListExpr, MapExpr, Call]


@dataclass(frozen=True, slots=True)
class Attribute:
    """`key = value`."""

    key: str
    value: Expr
    key_span: Span = _span()
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Block:
    """`kind "label" { ... }` or `kind { ... }`."""

    kind: str
    label: str | None
    body: tuple[Attribute | Block, ...]
    kind_span: Span = _span()
    label_span: Span | None = _span()
    span: Span = _span()

    @property
    def head_span(self) -> Span:
        """Return the span of `kind "label"`, where block-level diagnostics point."""
        end = self.label_span.end if self.label_span is not None else self.kind_span.end
        return Span(self.span.source, self.kind_span.start, end)

    @property
    def title(self) -> str:
        """Return `kind "label"` or `kind`, as a user would name the block."""
        return f'{self.kind} "{self.label}"' if self.label is not None else self.kind


@dataclass(frozen=True, slots=True)
class Import:
    """`import "relative/path.twin"`."""

    path: str
    path_span: Span = _span()
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Comment:
    """A `#` comment, kept for the formatter and for suppressions."""

    text: str
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Document:
    """One parsed file: its top-level items and its comments."""

    items: tuple[Block | Attribute | Import, ...]
    comments: tuple[Comment, ...] = field(compare=False)
    source: Source = field(compare=False, repr=False)
    # True when the file has a syntax error and these are the top-level items that parse alone.
    recovered: bool = field(default=False, compare=False)


def walk(node: Block | Attribute | Import | Expr) -> Iterator[Block | Attribute | Import | Expr]:
    """Yield a node and every node inside it, in source order."""
    yield node
    if isinstance(node, Block):
        children: tuple = node.body
    elif isinstance(node, Attribute):
        children = (node.value,)
    elif isinstance(node, ListExpr):
        children = node.items
    elif isinstance(node, MapExpr):
        children = node.entries
    elif isinstance(node, Call):
        children = (*node.args, *node.kwargs)
    else:
        return
    for child in children:
        yield from walk(child)
