"""Conversions between dtec's character offsets and LSP positions (lines from 0, UTF-16 columns)."""

from __future__ import annotations

from lsprotocol import types

from dtec.source import Source, Span


def _utf16_length(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def position(source: Source, offset: int) -> types.Position:
    """Return the LSP position of a character offset."""
    line, column = source.position(offset)
    prefix = source.line_text(line)[: column - 1]
    return types.Position(line=line - 1, character=_utf16_length(prefix))


def offset(source: Source, pos: types.Position) -> int:
    """Return the character offset of an LSP position, clamped to the text."""
    if pos.line >= source.line_count:
        return len(source.text)
    text = source.line_text(pos.line + 1)
    units = 0
    for index, char in enumerate(text):
        if units >= pos.character:
            return source.line_start(pos.line + 1) + index
        units += 2 if ord(char) > 0xFFFF else 1
    return source.line_start(pos.line + 1) + len(text)


def lsp_range(span: Span) -> types.Range:
    """Return the LSP range of a span."""
    return types.Range(start=position(span.source, span.start), end=position(span.source, span.end))
