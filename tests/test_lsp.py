"""`dtec lsp` end to end: a real LSP client (pytest-lsp) talking to the real server over stdio."""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
import pytest_lsp
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient

from dtec.analysis import analyse
from dtec.render import render

REPO = Path(__file__).resolve().parent.parent
RULE_FIXTURES = REPO / "tests" / "fixtures" / "rules"
# The server runs in the folder the rule goldens are written from, without a machine folder.
ENV = {k: v for k, v in os.environ.items() if k != "DTEC_MACHINES"}
# `-P`: the installed dtec in CI, the checkout under PYTHONPATH here; never the current folder.
CONFIG = ClientServerConfig(server_command=[sys.executable, "-P", "-m", "dtec", "lsp"], server_env=ENV)
QUICKSTART = REPO / "blueprints" / "quickstart.twin"


class Published(dict):
    """The client's latest diagnostics per URI, counting the publications (an empty one is `()`, always the same object)."""

    def __init__(self) -> None:
        super().__init__()
        self.count: Counter[str] = Counter()

    def __setitem__(self, uri: str, diagnostics) -> None:
        self.count[uri] += 1
        super().__setitem__(uri, diagnostics)


async def start(client: LanguageClient) -> None:
    client.diagnostics = Published()
    await client.initialize_session(types.InitializeParams(capabilities=types.ClientCapabilities(), root_uri=REPO.as_uri()))


@pytest_lsp.fixture(config=CONFIG, scope="module")
async def shared(lsp_client: LanguageClient):
    """One server for the tests that open documents and close them again."""
    await start(lsp_client)
    yield
    await lsp_client.shutdown_session()


@pytest_lsp.fixture(config=CONFIG)
async def client(lsp_client: LanguageClient):
    """A server of the test's own."""
    await start(lsp_client)
    yield
    await lsp_client.shutdown_session()


async def until(condition: Callable[[], object], what: str, timeout: float = 30.0) -> None:
    """Wait until `condition()` holds (the server answers asynchronously)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


def open_document(client: LanguageClient, path: Path, text: str | None = None) -> str:
    uri = path.as_uri()
    text = path.read_text(encoding="utf-8") if text is None else text
    client.text_document_did_open(types.DidOpenTextDocumentParams(types.TextDocumentItem(uri, "twin", 1, text)))
    return uri


def change(client: LanguageClient, uri: str, version: int, text: str) -> None:
    """Replace the whole text of an open document."""
    client.text_document_did_change(
        types.DidChangeTextDocumentParams(
            types.VersionedTextDocumentIdentifier(uri, version), [types.TextDocumentContentChangeWholeDocument(text)]
        )
    )


async def published(client: LanguageClient, uri: str, before: int) -> list[types.Diagnostic]:
    """Return the diagnostics of `uri` once more than `before` publications of it arrived."""
    await until(lambda: client.diagnostics.count[uri] > before, f"diagnostics of {uri}")
    return list(client.diagnostics[uri])


def as_lint(uri: str, d: types.Diagnostic) -> dict:
    """An LSP diagnostic in the shape of `dtec lint --format json`'s (1-based, code points: the texts are ASCII)."""
    message, _, help = d.message.partition("\nhelp: ")
    severity = {types.DiagnosticSeverity.Error: "error", types.DiagnosticSeverity.Warning: "warning"}
    return {
        "code": d.code,
        "name": d.data["name"],
        "severity": severity.get(d.severity, "info"),
        "message": message,
        "file": str(Path(uri.removeprefix("file://")).relative_to(REPO)),
        "line": d.range.start.line + 1,
        "column": d.range.start.character + 1,
        "end_line": d.range.end.line + 1,
        "end_column": d.range.end.character + 1,
        "help": help or None,
        "related": [
            {
                "file": str(Path(r.location.uri.removeprefix("file://")).relative_to(REPO)),
                "line": r.location.range.start.line + 1,
                "column": r.location.range.start.character + 1,
                "end_line": r.location.range.end.line + 1,
                "end_column": r.location.range.end.character + 1,
                "message": r.message,
            }
            for r in d.related_information or ()
        ],
    }


def lint_json(path: Path, monkeypatch) -> list[dict]:
    """What `dtec lint --format json` prints for the file named by its absolute path (as editors name it), run from the repository."""
    monkeypatch.chdir(REPO)
    return json.loads(render(list(analyse(path, environ=ENV).diagnostics), "json"))


# The editor decodes the file; DT001's fixture is not UTF-8, so no client can send it.
RULE_CODES = sorted(p.stem for p in RULE_FIXTURES.glob("DT*.twin") if p.stem != "DT001")


@pytest.mark.asyncio(loop_scope="module")
async def test_every_rule_fixture_gets_lints_diagnostics(shared: LanguageClient, monkeypatch) -> None:
    for code in RULE_CODES:
        path = RULE_FIXTURES / f"{code}.twin"
        expected = lint_json(path, monkeypatch)
        files = {e["file"] for e in expected} | {str(path.relative_to(REPO))}
        before = {f: shared.diagnostics.count[(REPO / f).as_uri()] for f in files}
        uri = open_document(shared, path)
        found = []
        for f in sorted(files):
            file_uri = (REPO / f).as_uri()
            found += [as_lint(file_uri, d) for d in await published(shared, file_uri, before[f])]
        key = lambda d: (d["file"], d["line"], d["column"], d["code"], d["message"])  # noqa: E731
        assert sorted(found, key=key) == sorted(expected, key=key), code
        assert all(d.code_description.href.endswith(f"/docs/rules/{d.code}.md") for d in shared.diagnostics[uri])
        shared.text_document_did_close(types.DidCloseTextDocumentParams(types.TextDocumentIdentifier(uri)))
        await until(lambda: not shared.diagnostics[uri], f"{code} cleared on close")
