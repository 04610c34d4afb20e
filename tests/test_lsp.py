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
            types.VersionedTextDocumentIdentifier(version=version, uri=uri), [types.TextDocumentContentChangeWholeDocument(text)]
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


def codes(diagnostics) -> list[str]:
    return sorted(d.code for d in diagnostics)


def position_of(text: str, needle: str, shift: int = 0) -> types.Position:
    """The LSP position of the first `needle` (plus `shift` characters); the texts are ASCII."""
    at = text.index(needle) + shift
    return types.Position(text.count("\n", 0, at), at - (text.rfind("\n", 0, at) + 1))


@pytest.mark.asyncio
async def test_diagnostics_follow_edits_and_a_syntax_error_hides_only_its_block(client: LanguageClient, tmp_path: Path) -> None:
    path = tmp_path / "flood.twin"
    text = QUICKSTART.read_text(encoding="utf-8")
    path.write_text(text, encoding="utf-8")
    uri = open_document(client, path)
    assert await published(client, uri, 0) == []
    count = client.diagnostics.count[uri]
    change(client, uri, 2, text.replace("batch   = 64", "btch    = 64"))
    found = await published(client, uri, count)
    assert codes(found) == ["DT101", "DT107"]  # an unknown key, and `batch` missing
    [unknown] = [d for d in found if d.code == "DT101"]
    assert "did you mean `batch`?" in unknown.message and unknown.range.start == position_of(text, "batch")
    # A half-typed key in `train`: the syntax error, and the unknown key in `data` still found.
    count = client.diagnostics.count[uri]
    change(client, uri, 3, text.replace("batch   = 64", "btch    = 64").replace("  loss       = mse", "  loss       ="))
    await until(lambda: client.diagnostics.count[uri] > count and codes(client.diagnostics[uri]) == ["DT002", "DT101", "DT107"], "recovered diagnostics")
    symbols = await client.text_document_document_symbol_async(types.DocumentSymbolParams(types.TextDocumentIdentifier(uri)))
    assert [s.name for s in symbols][:3] == ['twin "flood-forecast"', 'data "gauges"', 'model "surrogate"']
    assert "train" not in [s.name for s in symbols]
    count = client.diagnostics.count[uri]
    change(client, uri, 4, text)
    await until(lambda: client.diagnostics.count[uri] > count and not client.diagnostics[uri], "diagnostics cleared")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A blueprint whose data block is in an imported file."""
    text = QUICKSTART.read_text(encoding="utf-8")
    start, end = text.index('data "gauges"'), text.index('model "surrogate"')
    (tmp_path / "common.twin").write_text(text[start:end], encoding="utf-8")
    (tmp_path / "main.twin").write_text('import "common.twin"\n\n' + text[:start] + text[end:], encoding="utf-8")
    return tmp_path


@pytest.mark.asyncio
async def test_an_open_import_is_read_from_its_buffer_and_its_change_rechecks_the_importer(client: LanguageClient, project: Path) -> None:
    common_text = (project / "common.twin").read_text(encoding="utf-8")
    (project / "common.twin").write_text(common_text.replace("batch   = 64", "btch    = 64"), encoding="utf-8")
    main = open_document(client, project / "main.twin")
    common = (project / "common.twin").as_uri()
    # The imported file's diagnostics are published on its URI, not on the importer's.
    assert await published(client, main, 0) == []
    assert codes(client.diagnostics[common]) == ["DT101", "DT107"]  # published with the importer's
    # Open, its buffer (fixed) stands for the file, and the importer is checked again.
    count = client.diagnostics.count[main]
    open_document(client, project / "common.twin", common_text)
    await until(lambda: client.diagnostics.count[main] > count, "the importer re-checked")
    await until(lambda: "DT101" not in codes(client.diagnostics[common]), "the import's buffer read")
    # Renaming the block in the unsaved import breaks the importer's reference.
    change(client, common, 2, common_text.replace('data "gauges"', 'data "levels"'))
    await until(lambda: codes(client.diagnostics[main]) == ["DT112"], "the importer's unresolved reference")


@pytest.mark.asyncio
async def test_definition_and_references(client: LanguageClient, project: Path) -> None:
    main_text = (project / "main.twin").read_text(encoding="utf-8")
    main = open_document(client, project / "main.twin")
    common = (project / "common.twin").as_uri()
    at = types.TextDocumentIdentifier(main)
    [found] = await client.text_document_definition_async(types.DefinitionParams(at, position_of(main_text, "data.gauges", 6)))
    assert found.uri == common and found.range.start == types.Position(0, 0)
    [found] = await client.text_document_definition_async(types.DefinitionParams(at, position_of(main_text, "model.surrogate", 2)))
    assert found.uri == main and found.range.start == position_of(main_text, 'model "surrogate"')
    [found] = await client.text_document_definition_async(types.DefinitionParams(at, position_of(main_text, "common.twin")))
    assert found.uri == common
    assert await client.text_document_definition_async(types.DefinitionParams(at, position_of(main_text, "mse"))) is None
    context = types.ReferenceContext(include_declaration=True)
    found = await client.text_document_references_async(types.ReferenceParams(context=context, text_document=at, position=position_of(main_text, 'model "surrogate"', 8)))
    assert [(f.uri, f.range.start) for f in found] == [
        (main, position_of(main_text, 'model "surrogate"')),
        (main, position_of(main_text, "model.surrogate")),
    ]
    found = await client.text_document_references_async(
        types.ReferenceParams(context=types.ReferenceContext(include_declaration=False), text_document=at, position=position_of(main_text, "data.gauges"))
    )
    assert [(f.uri, f.range.start) for f in found] == [(main, position_of(main_text, "data.gauges"))]


@pytest.mark.asyncio
async def test_document_symbols_outline_the_blocks(client: LanguageClient) -> None:
    text = QUICKSTART.read_text(encoding="utf-8")
    uri = open_document(client, QUICKSTART)
    symbols = await client.text_document_document_symbol_async(types.DocumentSymbolParams(types.TextDocumentIdentifier(uri)))
    assert [s.name for s in symbols] == [
        'twin "flood-forecast"', 'data "gauges"', 'model "surrogate"', "train", "strategy", "monitor",
        *[f'target "{name}"' for name in ("lumi", "juwels-booster", "leonardo", "local")][: len(symbols) - 6],
    ]
    data = symbols[1]
    assert data.selection_range.start == position_of(text, 'data "gauges"')
    assert [c.name for c in data.children] == ["source", "split", "batch", "workers"]
    assert data.children[2].detail == "64"


@pytest.mark.asyncio
async def test_formatting_is_dtec_fmt_and_refuses_a_syntax_error(client: LanguageClient, tmp_path: Path) -> None:
    path = tmp_path / "flood.twin"
    text = QUICKSTART.read_text(encoding="utf-8")
    messy = text.replace("  batch   = 64", "batch=64").replace("  loss       = mse", "    loss = mse")
    uri = open_document(client, path, messy)
    options = types.FormattingOptions(tab_size=2, insert_spaces=True)
    [edit] = await client.text_document_formatting_async(types.DocumentFormattingParams(types.TextDocumentIdentifier(uri), options))
    assert edit.new_text == text
    assert edit.range.start == types.Position(0, 0) and edit.range.end == position_of(messy + "\0", "\0")
    change(client, uri, 2, text)
    assert await client.text_document_formatting_async(types.DocumentFormattingParams(types.TextDocumentIdentifier(uri), options)) == ()
    change(client, uri, 3, text.replace("batch   = 64", "batch:64"))
    assert await client.text_document_formatting_async(types.DocumentFormattingParams(types.TextDocumentIdentifier(uri), options)) == ()
    assert "DT002" in client.messages[-1].message and client.messages[-1].type == types.MessageType.Warning


@pytest.mark.asyncio
async def test_random_edits_never_crash_the_server(client: LanguageClient, tmp_path: Path) -> None:
    rng = random.Random(17)
    path = tmp_path / "flood.twin"
    text = QUICKSTART.read_text(encoding="utf-8")
    uri = open_document(client, path, text)
    alphabet = 'abz_019 .,=:"#{}[]()\n\t\\é💧'
    at = types.TextDocumentIdentifier(uri)
    for version in range(2, 202):
        start = rng.randrange(len(text) + 1)
        if rng.random() < 0.5 and text:
            text = text[:start] + text[start + rng.randint(1, 8) :]
        else:
            text = text[:start] + "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 4))) + text[start:]
        change(client, uri, version, text)
        position = position_of(text + "\0", "\0") if version % 2 else types.Position(rng.randrange(80), rng.randrange(40))
        if version % 4 == 0:
            await client.text_document_definition_async(types.DefinitionParams(at, position))
        elif version % 4 == 1:
            await client.text_document_references_async(types.ReferenceParams(context=types.ReferenceContext(True), text_document=at, position=position))
        elif version % 4 == 2:
            await client.text_document_document_symbol_async(types.DocumentSymbolParams(at))
        else:
            await client.text_document_formatting_async(types.DocumentFormattingParams(at, types.FormattingOptions(2, True)))
    # The last text is analysed and its diagnostics published, as lint reports them.
    path.write_text(text, encoding="utf-8")
    expected = sorted((d.code, d.message) for d in analyse(path, environ=ENV).diagnostics)
    await until(lambda: sorted((d.code, d.message.partition("\nhelp: ")[0]) for d in client.diagnostics.get(uri, ())) == expected, "the last text's diagnostics")
    assert not [m for m in client.log_messages if m.type == types.MessageType.Error]
