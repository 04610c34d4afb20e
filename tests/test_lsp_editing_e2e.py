"""Completion, hover and code actions through a real LSP client talking to `python -m dtec lsp` over stdio."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import dtec
import pytest
import pytest_lsp
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient

# The server runs the dtec under test: the checkout (PYTHONPATH) here, the installed wheel in CI;
# -P keeps the working folder (a checkout) off sys.path, so it cannot shadow the wheel.
SERVER = ClientServerConfig(
    server_command=[sys.executable, "-P", "-m", "dtec", "lsp"],
    server_env={**os.environ, "PYTHONPATH": str(Path(dtec.__file__).resolve().parent.parent)},
)

TEXT = """\
twin "flood" {}

data "gauges" {
  source = synthetic(samples = 256, shape = [8], targets = 1)
  batch = 16
}

model "net" {
  arch = mlp(input = 8, output = 1)
  input = data.gauges
}

train {
  loss = mse
  epoch = 10
}

target "juwels-booster" {
  partition = "
}
"""


@pytest_lsp.fixture(config=SERVER)
async def client(lsp_client: LanguageClient):
    await lsp_client.initialize_session(types.InitializeParams(capabilities=types.ClientCapabilities()))
    yield
    await lsp_client.shutdown_session()


def opened(client: LanguageClient, folder: Path, text: str = TEXT) -> str:
    (folder / ".git").mkdir(exist_ok=True)
    path = folder / "flood.twin"
    path.write_text(text)
    uri = path.as_uri()
    client.text_document_did_open(types.DidOpenTextDocumentParams(types.TextDocumentItem(uri, "twin", 1, text)))
    return uri


def pos(text: str, after: str) -> types.Position:
    end = text.index(after) + len(after)
    return types.Position(text.count("\n", 0, end), end - (text.rfind("\n", 0, end) + 1))


@pytest.mark.asyncio
async def test_completion_over_stdio(client: LanguageClient, tmp_path: Path) -> None:
    uri = opened(client, tmp_path)
    doc = types.TextDocumentIdentifier(uri)
    found = await client.text_document_completion_async(types.CompletionParams(doc, pos(TEXT, "input = data.")))
    assert [i.label for i in found.items] == ["gauges"]
    found = await client.text_document_completion_async(types.CompletionParams(doc, pos(TEXT, 'partition = "')))
    assert [i.label for i in found.items] == ["booster", "develbooster", "largebooster"]
    found = await client.text_document_completion_async(types.CompletionParams(doc, pos(TEXT, "train {\n")))
    assert "optimizer" in [i.label for i in found.items] and "loss" not in [i.label for i in found.items]


@pytest.mark.asyncio
async def test_hover_over_stdio(client: LanguageClient, tmp_path: Path) -> None:
    uri = opened(client, tmp_path)
    found = await client.text_document_hover_async(types.HoverParams(types.TextDocumentIdentifier(uri), pos(TEXT, 'target "juw')))
    assert found.contents.value.startswith("**juwels-booster**")
    assert found.range == types.Range(types.Position(17, 7), types.Position(17, 23))


@pytest.mark.asyncio
async def test_code_actions_over_stdio(client: LanguageClient, tmp_path: Path) -> None:
    uri = opened(client, tmp_path, TEXT.replace('partition = "', 'partition = "booster"\n  account = "training2500"'))
    # The client sends the diagnostics it shows in the range, as `dtec lint` reports them.
    epoch = types.Diagnostic(types.Range(types.Position(14, 2), types.Position(14, 7)), "unknown attribute `epoch` in `train`", code="DT101")
    actions = await client.text_document_code_action_async(
        types.CodeActionParams(types.TextDocumentIdentifier(uri), epoch.range, types.CodeActionContext([epoch]))
    )
    (fix,) = actions
    assert fix.title == "Replace with `epochs`" and list(fix.diagnostics) == [epoch]
    assert list(fix.edit.changes[uri]) == [types.TextEdit(epoch.range, "epochs")]
