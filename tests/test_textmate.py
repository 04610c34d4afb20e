"""The TextMate grammar (grammars/twin.tmLanguage.json) colours what dtec's own grammar lexes."""

from __future__ import annotations

from pathlib import Path

import re

import pytest
from lark import Lark

_NUMBER = re.compile(r"[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?([A-Za-z]*)")

# What each of dtec's terminals must be scoped as (a prefix of one of the token's scopes).
_EXPECTED = {
    "COMMENT": "comment.line",
    "STRING": "string.quoted.double",
    "IMPORT": "keyword.control.import",
    "TRUE": "constant.language.boolean",
    "FALSE": "constant.language.boolean",
    "EQUALS": "keyword.operator.assignment",
}


@pytest.fixture(scope="module")
def lexer(repo_root: Path) -> Lark:
    return Lark.open(str(repo_root / "grammars" / "twin.lark"), parser="lalr")


def _expected_scope(tokens: list, index: int) -> str | None:
    """Return the scope a NAME or NUMBER token must have from its neighbours, as the parser reads it."""
    token = tokens[index]
    if token.type != "NAME":
        return _EXPECTED.get(token.type)
    after = [t for t in tokens[index + 1 :] if t.type not in ("WS", "COMMENT")][:2]
    before = next((t for t in reversed(tokens[:index]) if t.type != "WS"), None)
    kinds = [t.type for t in after]
    if kinds[:1] == ["EQUALS"]:
        return "variable.other.property"
    if kinds[:1] == ["LPAREN"]:
        return "support.function"
    if kinds[:1] == ["LBRACE"] or kinds == ["STRING", "LBRACE"]:
        return "storage.type.block"
    if kinds[:1] == ["DOT"]:
        return "variable.language.namespace"
    if before is not None and before.type == "DOT":
        return "variable.other.reference"
    return "constant.other.symbol"


def _scopes_at(tokens: list[dict], line: int, column: int) -> list[str]:
    for token in tokens:
        if token["line"] == line and token["start"] <= column < token["start"] + len(token["text"]):
            return token["scopes"]
    raise AssertionError(f"no TextMate token at {line}:{column}")


def test_every_lexed_token_of_the_shipped_blueprints_has_its_scope(textmate, repo_root, lexer) -> None:
    grammar = repo_root / "grammars" / "twin.tmLanguage.json"
    files = sorted((repo_root / "blueprints").glob("*.twin"))
    assert len(files) >= 10
    coloured = textmate(grammar, files)
    checked: dict[str, int] = {}
    for path in files:
        text = path.read_text(encoding="utf-8")
        mine = [t for t in coloured if t["file"] == str(path)]
        tokens = [t for t in lexer.lex(text, dont_ignore=True) if t.type not in ("_NL",)]
        for index, token in enumerate(tokens):
            if token.type == "WS":
                continue
            scopes = _scopes_at(mine, token.line, token.column - 1)
            assert len(scopes) > 1, f"{path.name}:{token.line}:{token.column}: {token!r} has no scope"
            want = _expected_scope(tokens, index)
            if token.type == "NUMBER":
                want = "constant.numeric"
                unit = _NUMBER.fullmatch(token.value).group(1)
                if unit:
                    unit_scopes = _scopes_at(mine, token.line, token.column - 1 + len(token) - len(unit))
                    assert any(s.startswith("keyword.other.unit") for s in unit_scopes), (path.name, token)
            if want is not None:
                assert any(s.startswith(want) for s in scopes), f"{path.name}:{token.line}: {token!r} {scopes}"
                checked[want] = checked.get(want, 0) + 1
    # Every kind of colour was seen somewhere, so the test cannot pass on blueprints without it.
    assert set(checked) >= {
        "comment.line", "string.quoted.double", "constant.numeric", "storage.type.block",
        "variable.other.property", "support.function", "constant.other.symbol", "variable.other.reference",
    }, checked


def test_units_suppressions_and_half_typed_text(textmate, tmp_path: Path, repo_root: Path) -> None:
    path = tmp_path / "bp.twin"
    path.write_text('target "lumi" {\n  walltime = 30min  # dtec: ignore[DT201]\n  memory = 16GB\n  account = "unclosed\n}\n')
    tokens = textmate(repo_root / "grammars" / "twin.tmLanguage.json", [path])
    by_text = {t["text"]: t["scopes"] for t in tokens}
    assert "keyword.other.unit.twin" in by_text["min"] and "constant.numeric.twin" in by_text["30"]
    assert "keyword.other.unit.twin" in by_text["GB"]
    assert "constant.other.rule-code.twin" in by_text["DT201"]
    assert "entity.name.section.label.twin" in by_text['"lumi"']
    # An unclosed string ends at its line: the next line is coloured as code again.
    assert "punctuation.section.block.end.twin" in by_text["}"]


def test_the_vscode_extension_ships_the_grammar_and_starts_dtec_lsp(repo_root: Path) -> None:
    import json
    import shutil
    import subprocess

    folder = repo_root / "editors" / "vscode"
    manifest = json.loads((folder / "package.json").read_text(encoding="utf-8"))
    (grammar,) = manifest["contributes"]["grammars"]
    assert (folder / grammar["path"]).read_bytes() == (repo_root / "grammars" / "twin.tmLanguage.json").read_bytes()
    (language,) = manifest["contributes"]["languages"]
    assert language["extensions"] == [".twin"] and grammar["language"] == language["id"]
    assert (folder / language["configuration"]).is_file()
    script = (folder / manifest["main"]).read_text(encoding="utf-8")
    assert 'args: ["lsp"]' in script
    if shutil.which("node"):
        subprocess.run(["node", "--check", str(folder / manifest["main"])], check=True)
