"""Go to definition and find references: `data.x` / `model.y` to their blocks, `import` paths to their files."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from lsprotocol import types
from pygls.lsp.server import LanguageServer

from dtec.lsp import documents
from dtec.lsp.positions import lsp_range, offset
from dtec.source import Span
from dtec.syntax import ast


def register(server: LanguageServer) -> None:
    """Answer definition and references requests."""

    @server.feature(types.TEXT_DOCUMENT_DEFINITION)
    def definition(ls: LanguageServer, params: types.DefinitionParams) -> list[types.Location] | None:
        found = _at(ls, params.text_document.uri, params.position)
        if isinstance(found, ast.Import):
            path = Path(os.path.normpath(Path(found.span.path).parent / found.path))
            zero = types.Position(0, 0)
            return [types.Location(documents.uri_of(ls, str(path)), types.Range(zero, zero))] if path.is_file() else None
        if found is None:
            return None
        block = _blocks(ls, params.text_document.uri).get(found)
        return [_location(ls, block.head_span)] if block is not None else None

    @server.feature(types.TEXT_DOCUMENT_REFERENCES)
    def references(ls: LanguageServer, params: types.ReferenceParams) -> list[types.Location] | None:
        uri = params.text_document.uri
        found = _at(ls, uri, params.position)
        if found is None or isinstance(found, ast.Import):
            return None
        spans = [r.span for r in _refs(ls, uri) if r.parts == found]
        block = _blocks(ls, uri).get(found)
        if params.context.include_declaration and block is not None:
            spans.insert(0, block.head_span)
        return [_location(ls, s) for s in spans]


def _at(ls: LanguageServer, uri: str, pos: types.Position) -> tuple[str, ...] | ast.Import | None:
    """Return what is under the cursor: a reference's or a block's `(kind, label)`, or an import."""
    document = documents.document(ls, uri)
    if document is None:
        return None
    at = offset(document.source, pos)
    for item in document.items:
        if not item.span.start <= at <= item.span.end:
            continue
        if isinstance(item, ast.Import):
            return item
        if isinstance(item, ast.Block) and item.label is not None and item.head_span.start <= at <= item.head_span.end:
            return (item.kind, item.label)
        return next((r.parts for r in _item_refs(item) if r.span.start <= at <= r.span.end), None)
    return None


def _blocks(ls: LanguageServer, uri: str) -> dict[tuple[str, ...], ast.Block]:
    """Return the labelled top-level blocks of the document and its imports, the first of each name."""
    program = documents.program(ls, uri)
    found: dict[tuple[str, ...], ast.Block] = {}
    for item in program.items() if program is not None else ():
        if isinstance(item, ast.Block) and item.label is not None:
            found.setdefault((item.kind, item.label), item)
    return found


def _refs(ls: LanguageServer, uri: str) -> Iterator[ast.Ref]:
    """Yield every reference in the document and its imports."""
    program = documents.program(ls, uri)
    for item in program.items() if program is not None else ():
        yield from _item_refs(item)


def _item_refs(item: ast.Block | ast.Attribute) -> Iterator[ast.Ref]:
    """Yield the references inside a top-level item."""
    return (node for node in ast.walk(item) if isinstance(node, ast.Ref))


def _location(ls: LanguageServer, span: Span) -> types.Location:
    return types.Location(documents.uri_of(ls, span.path), lsp_range(span))
