"""The open documents and what dtec makes of them, shared by every feature of the server.

An open buffer stands for its file everywhere: analysing a blueprint reads the unsaved text of
the files it imports. Results are cached until the document or an open file it read changes.

    source(server, uri)    -> Source | None         the buffer as dtec reads it (offsets, lines)
    document(server, uri)  -> ast.Document | None   its syntax tree (top-level items that parse)
    program(server, uri)   -> Program | None        it and its imports, parsed
    analysis(server, uri)  -> FileResult | None     `dtec lint`'s analysis of the buffer
    importers(server, uri) -> list[str]             open documents whose analysis read this file
    path_of(uri) / uri_of(server, path)             file URIs and paths
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from weakref import WeakKeyDictionary

from pygls.lsp.server import LanguageServer
from pygls.uris import from_fs_path, to_fs_path

from dtec.analysis import FileResult, analyse
from dtec.lang.loader import Program, Reader, load
from dtec.source import Source, read_source
from dtec.syntax import ast
from dtec.syntax.parser import parse


@dataclass
class _Cached:
    """One result and what it was computed from."""

    stamp: tuple
    value: Any
    files: frozenset[Path]  # the imported files it read, symlinks resolved


@dataclass
class _State:
    caches: dict[tuple[str, str], _Cached] = field(default_factory=dict)  # (what, uri) -> result


_STATES: WeakKeyDictionary[LanguageServer, _State] = WeakKeyDictionary()


def _state(server: LanguageServer) -> _State:
    return _STATES.setdefault(server, _State())


def path_of(uri: str) -> Path | None:
    """Return the file a `file:` URI names, or None for other schemes (an unsaved `untitled:`)."""
    path = to_fs_path(uri) if uri.startswith("file:") else None
    return Path(path) if path else None


def uri_of(server: LanguageServer, path: str) -> str:
    """Return the URI of a file dtec named: an open document's own URI when it is open."""
    real = os.path.realpath(path)
    return _open_files(server).get(Path(real)) or from_fs_path(os.path.abspath(path)) or path


def _open_files(server: LanguageServer) -> dict[Path, str]:
    """Return the open documents by their resolved path."""
    found = {}
    for uri in server.workspace.text_documents:
        path = path_of(uri)
        if path is not None:
            found[Path(os.path.realpath(path))] = uri
    return found


def _version(server: LanguageServer, uri: str) -> int | None:
    doc = server.workspace.text_documents.get(uri)
    return None if doc is None else doc.version


def source(server: LanguageServer, uri: str) -> Source | None:
    """Return an open document's text as a Source named by its path (None when it is not open)."""
    return _cached(server, "source", uri, lambda path, text, read: Source(str(path), text))


def document(server: LanguageServer, uri: str) -> ast.Document | None:
    """Return an open document's syntax tree; with a syntax error, the top-level items that parse."""
    return _cached(server, "document", uri, lambda path, text, read: parse(Source(str(path), text), recover=True)[0])


def program(server: LanguageServer, uri: str) -> Program | None:
    """Return an open document and the files it imports (open ones as in their buffers), parsed."""
    return _cached(server, "program", uri, lambda path, text, read: load(path, text, None, read)[0])


def analysis(server: LanguageServer, uri: str) -> FileResult | None:
    """Return `dtec lint`'s analysis of an open document (None when it is not an open file)."""
    return _cached(server, "analysis", uri, lambda path, text, read: analyse(path, text, read=read))


def importers(server: LanguageServer, uri: str) -> list[str]:
    """Return the open documents whose latest analysis read the file at `uri` as an import."""
    path = path_of(uri)
    if path is None:
        return []
    real = Path(os.path.realpath(path))
    return sorted({u for (what, u), c in _state(server).caches.items() if what == "analysis" and real in c.files})


def forget(server: LanguageServer, uri: str) -> None:
    """Drop what is cached for a document (it was closed)."""
    caches = _state(server).caches
    for key in [k for k in caches if k[1] == uri]:
        del caches[key]


def _cached(server: LanguageServer, what: str, uri: str, compute: Callable[[Path, str, Reader], Any]) -> Any:
    """Return `compute(path, text, read)` for an open document, cached until it or an open file it read changes."""
    doc = server.workspace.text_documents.get(uri)
    path = path_of(uri)
    if doc is None or path is None:
        return None
    caches = _state(server).caches
    opened = _open_files(server)
    found = caches.get((what, uri))
    if found is not None and found.stamp == _stamp(server, uri, found.files, opened):
        return found.value
    files: set[Path] = set()

    def read(target: Path, name: str) -> Source | str:
        files.add(target)
        buffer = opened.get(target)
        if buffer is not None:
            return Source(name, server.workspace.text_documents[buffer].source)
        return read_source(target, name)

    value = compute(path, doc.source, read)
    caches[(what, uri)] = _Cached(_stamp(server, uri, frozenset(files), opened), value, frozenset(files))
    return value


def _stamp(server: LanguageServer, uri: str, files: frozenset[Path], opened: dict[Path, str]) -> tuple:
    """Return the versions a result depends on: the document's and those of the open files it read."""
    return (_version(server, uri), tuple(sorted((str(f), _version(server, opened[f]) if f in opened else None) for f in files)))
