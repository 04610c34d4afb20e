"""Live diagnostics: `dtec lint`'s analysis of each open document, published as it is typed.

A document is analysed at once when it was not analysed in the last `INTERVAL` seconds, else when
the interval ends, with its latest text: a burst of keystrokes costs one analysis per interval, and
a lone change is answered without waiting. Diagnostics in an imported file are published on that
file's URI; a change in a file re-checks the open documents that import it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from weakref import WeakKeyDictionary

from lsprotocol import types
from pygls.lsp.server import LanguageServer

from dtec.diagnostics import Diagnostic
from dtec.lsp import documents
from dtec.lsp.positions import lsp_range
from dtec.render.sarif import INFORMATION_URI
from dtec.source import Span

INTERVAL = 0.15  # seconds between two analyses of one document

_SEVERITY = {
    "error": types.DiagnosticSeverity.Error,
    "warning": types.DiagnosticSeverity.Warning,
    "info": types.DiagnosticSeverity.Information,
}

logger = logging.getLogger(__name__)


def rule_url(code: str) -> str:
    """Return the address of a rule's doc (docs/rules/<CODE>.md)."""
    return f"{INFORMATION_URI}/docs/rules/{code}.md"


@dataclass
class _State:
    pending: dict[str, asyncio.TimerHandle] = field(default_factory=dict)
    last: dict[str, float] = field(default_factory=dict)  # when each document was last analysed
    # What each analysed document found, per URI: a file's diagnostics are the union over the
    # open documents that read it.
    found: dict[str, dict[str, list[types.Diagnostic]]] = field(default_factory=dict)
    published: set[str] = field(default_factory=set)


_STATES: WeakKeyDictionary[LanguageServer, _State] = WeakKeyDictionary()


def register(server: LanguageServer) -> None:
    """Check documents when they are opened, changed or saved; clear them when closed."""

    @server.feature(types.TEXT_DOCUMENT_DID_OPEN)
    def did_open(ls: LanguageServer, params: types.DidOpenTextDocumentParams) -> None:
        changed(ls, params.text_document.uri)

    @server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(ls: LanguageServer, params: types.DidChangeTextDocumentParams) -> None:
        changed(ls, params.text_document.uri)

    @server.feature(types.TEXT_DOCUMENT_DID_SAVE)
    def did_save(ls: LanguageServer, params: types.DidSaveTextDocumentParams) -> None:
        changed(ls, params.text_document.uri)

    @server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(ls: LanguageServer, params: types.DidCloseTextDocumentParams) -> None:
        uri = params.text_document.uri
        state = _STATES.setdefault(ls, _State())
        handle = state.pending.pop(uri, None)
        if handle is not None:
            handle.cancel()
        importers = documents.importers(ls, uri)
        documents.forget(ls, uri)
        _publish(ls, uri, {})
        for other in importers:  # they read the file from disk again
            schedule(ls, other)


def changed(server: LanguageServer, uri: str) -> None:
    """Re-check a document and the open documents that import it."""
    for other in [uri, *documents.importers(server, uri)]:
        schedule(server, other)


def schedule(server: LanguageServer, uri: str) -> None:
    """Analyse a document soon (a pending analysis will read its latest text)."""
    state = _STATES.setdefault(server, _State())
    if uri in state.pending:
        return
    delay = max(0.0, state.last.get(uri, float("-inf")) + INTERVAL - time.monotonic())
    state.pending[uri] = asyncio.get_running_loop().call_later(delay, _check, server, uri)


def _check(server: LanguageServer, uri: str) -> None:
    state = _STATES.setdefault(server, _State())
    state.pending.pop(uri, None)
    state.last[uri] = time.monotonic()
    try:
        result = documents.analysis(server, uri)
        if result is None:
            return
        by_uri: dict[str, list[types.Diagnostic]] = {uri: []}
        for d in result.diagnostics:
            at = uri if d.span is None else documents.uri_of(server, d.span.path)
            by_uri.setdefault(at, []).append(to_lsp(server, d))
        _publish(server, uri, by_uri)
    except Exception:  # noqa: BLE001 - a bug in one analysis must not stop the server
        logger.exception("checking %s failed", uri)
        server.window_log_message(types.LogMessageParams(types.MessageType.Error, f"dtec: checking {uri} failed (see the server's log)"))


def _publish(server: LanguageServer, root: str, by_uri: dict[str, list[types.Diagnostic]]) -> None:
    """Record what `root`'s analysis found and publish every URI whose diagnostics may have changed."""
    state = _STATES.setdefault(server, _State())
    before = set(state.found.get(root, {}))
    if by_uri:
        state.found[root] = by_uri
    else:
        state.found.pop(root, None)
    for uri in sorted(before | set(by_uri)):
        merged: dict[tuple, types.Diagnostic] = {}
        for found in state.found.values():
            for d in found.get(uri, ()):
                merged.setdefault(_key(d), d)
        if merged or uri == root or uri in state.published:  # an empty list clears what was shown
            server.text_document_publish_diagnostics(types.PublishDiagnosticsParams(uri=uri, diagnostics=list(merged.values())))
        if merged:
            state.published.add(uri)
        else:
            state.published.discard(uri)


def _key(d: types.Diagnostic) -> tuple:
    r = d.range
    return (r.start.line, r.start.character, r.end.line, r.end.character, d.code, d.message)


def to_lsp(server: LanguageServer, d: Diagnostic) -> types.Diagnostic:
    """Return a dtec diagnostic as LSP shows it: the message with its help, the rule and its doc."""
    return types.Diagnostic(
        range=_range(d.span),
        message=d.message + (f"\nhelp: {d.help}" if d.help else ""),
        severity=_SEVERITY[d.severity.value],
        code=d.code,
        code_description=types.CodeDescription(href=rule_url(d.code)),
        source="dtec",
        related_information=[
            types.DiagnosticRelatedInformation(types.Location(documents.uri_of(server, r.span.path), _range(r.span)), r.message)
            for r in d.related
        ]
        or None,
        data={"name": d.rule.name, "help": d.help},
    )


def _range(span: Span | None) -> types.Range:
    if span is None:
        return types.Range(types.Position(0, 0), types.Position(0, 0))
    return lsp_range(span)
