"""Document symbols: the outline of a blueprint's blocks, with their attributes and imports."""

from __future__ import annotations

from lsprotocol import types
from pygls.lsp.server import LanguageServer

from dtec.lsp import documents
from dtec.lsp.positions import lsp_range
from dtec.syntax import ast


def register(server: LanguageServer) -> None:
    """Answer documentSymbol requests."""

    @server.feature(types.TEXT_DOCUMENT_DOCUMENT_SYMBOL)
    def document_symbols(ls: LanguageServer, params: types.DocumentSymbolParams) -> list[types.DocumentSymbol] | None:
        document = documents.document(ls, params.text_document.uri)
        return None if document is None else [_symbol(item) for item in document.items]


def _symbol(item: ast.Block | ast.Attribute | ast.Import) -> types.DocumentSymbol:
    if isinstance(item, ast.Block):
        return types.DocumentSymbol(
            name=item.title,
            kind=types.SymbolKind.Struct if item.label is None else types.SymbolKind.Object,
            range=lsp_range(item.span),
            selection_range=lsp_range(item.head_span),
            children=[_symbol(member) for member in item.body],
        )
    if isinstance(item, ast.Attribute):
        return types.DocumentSymbol(
            name=item.key,
            kind=types.SymbolKind.Property,
            range=lsp_range(item.span),
            selection_range=lsp_range(item.key_span),
            detail=item.value.span.source.text[item.value.span.start : item.value.span.end].split("\n")[0],
        )
    return types.DocumentSymbol(
        name=f'import "{item.path}"', kind=types.SymbolKind.File, range=lsp_range(item.span), selection_range=lsp_range(item.path_span)
    )
