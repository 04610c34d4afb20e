"""Formatting with `dtec fmt`'s formatter; a file with syntax errors is left as it is, as the CLI does."""

from __future__ import annotations

from lsprotocol import types
from pygls.lsp.server import LanguageServer

from dtec.format import format_source
from dtec.lsp import documents
from dtec.lsp.positions import position


def register(server: LanguageServer) -> None:
    """Answer formatting requests with one edit replacing the whole text, or none."""

    @server.feature(types.TEXT_DOCUMENT_FORMATTING)
    def formatting(ls: LanguageServer, params: types.DocumentFormattingParams) -> list[types.TextEdit] | None:
        source = documents.source(ls, params.text_document.uri)
        if source is None:
            return None
        formatted, diagnostics = format_source(source)  # a FormatterError is a bug: answered as an error
        if formatted is None:
            first = diagnostics[0]
            line, column = first.span.start_pos if first.span is not None else (1, 1)
            message = f"dtec fmt: not formatted: {first.code} {first.message} at {line}:{column}"
            ls.window_show_message(types.ShowMessageParams(types.MessageType.Warning, message))
            return []
        if formatted == source.text:
            return []
        whole = types.Range(types.Position(0, 0), position(source, len(source.text)))
        return [types.TextEdit(whole, formatted)]
