// Starts `dtec lsp` for .twin files; colouring comes from the TextMate grammar in syntaxes/.
const { workspace } = require("vscode");
const { LanguageClient } = require("vscode-languageclient/node");

let client;

async function activate() {
  const command = workspace.getConfiguration("dtec").get("path", "dtec");
  client = new LanguageClient(
    "dtec",
    "dtec language server",
    { command, args: ["lsp"] },
    { documentSelector: [{ scheme: "file", language: "twin" }] },
  );
  await client.start();
}

function deactivate() {
  return client ? client.stop() : undefined;
}

module.exports = { activate, deactivate };
