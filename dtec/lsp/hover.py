"""Hover: the documentation of the block, key, function, argument, value or machine under the cursor."""

from __future__ import annotations

from collections.abc import Mapping

from lsprotocol import types

from dtec.lang.schema import BLOCKS
from dtec.lsp import describe
from dtec.lsp.completion import imported_blocks, target_machine
from dtec.lsp.cursor import Cursor, Token, functions, list_item, scan, symbols, token_at, tokens
from dtec.lsp.positions import offset, position
from dtec.source import Source


def hover(text: str, path: str | None, at: types.Position, environ: Mapping[str, str]) -> types.Hover | None:
    """Return what the token at `at` means, or None where there is nothing to say."""
    source = Source(path or "", text)
    tok = token_at(text, offset(source, at))
    if tok is None:
        return None
    line_end = text.find("\n", tok.end)
    following = tokens(text[: len(text) if line_end < 0 else line_end], tok.end)
    after = following[0].kind if following else ""
    cursor = scan(text, tok.start)
    found = _string(cursor, tok, text, environ) if tok.kind == "string" else _name(cursor, tok, after, text, path, environ) if tok.kind == "name" else None
    if not found:
        return None
    span = types.Range(position(source, tok.start), position(source, tok.end))
    return types.Hover(types.MarkupContent(types.MarkupKind.Markdown, found), span)


def _name(cursor: Cursor, tok: Token, after: str, text: str, path: str | None, environ: Mapping[str, str]) -> str | None:
    frame, name = cursor.frame, tok.text
    if frame.state == "start" and frame.kind == "body" and after in ("{", "string"):
        spec = BLOCKS.get(name) if not frame.block else frame.spec.blocks.get(name) if frame.spec else None
        return describe.block_markdown(name, spec) if spec else None
    if frame.state == "start" and frame.kind in ("body", "map", "call") and after == "=":
        field = (frame.fields or {}).get(name)
        return describe.field_markdown(name, field) if field else None
    if frame.state == "vdot" and frame.value is not None:
        return _label(cursor, frame.value.text, name, path, environ)
    if frame.state == "value":
        type_ = frame.type
    elif frame.state == "start" and frame.kind == "list":
        type_ = frame.item
    elif frame.state == "start" and frame.kind == "call":
        names = list(frame.fields or ())
        type_ = frame.fields[names[frame.positional]].type if frame.fields and frame.positional < len(names) else None
    else:
        return None
    if name == "env" and after == "(":
        return _env(text, tok, environ)
    function = functions(type_).get(name) or functions(list_item(type_)).get(name)
    if function is not None:
        return describe.function_markdown(name, function)
    if name in symbols(type_):
        owner = (frame.fields or {}).get(frame.key or "")
        return f"`{name}`: {type_.describe()}" + (f"\n\n{owner.doc}" if owner else "")  # type: ignore[union-attr]
    if after == "." and name in BLOCKS:
        return describe.block_markdown(name, BLOCKS[name])
    return None


def _label(cursor: Cursor, kind: str, label: str, path: str | None, environ: Mapping[str, str]) -> str | None:
    found = [(k, lab, "this file") for k, lab in cursor.declared] + imported_blocks(path, cursor.imports, environ)
    where = next((w for k, lab, w in found if (k, lab) == (kind, label)), None)
    if where is None or kind not in BLOCKS:
        return None
    return f'`{kind} "{label}"`, declared in {where}\n\n{BLOCKS[kind].doc}'


def _string(cursor: Cursor, tok: Token, text: str, environ: Mapping[str, str]) -> str | None:
    frame = cursor.frame
    if frame.kind == "call" and frame.function == "env":
        start = text.rfind("env", 0, tok.start)
        return _env(text, tokens(text, start)[0], environ) if start >= 0 else None
    from dtec.machines import load_machines

    if frame.kind == "body" and not frame.block and frame.state == "name" and frame.name and frame.name.text == "target":
        machine = load_machines().get(tok.unquoted())
        return describe.machine_markdown(machine) if machine else None
    if frame.kind == "body" and frame.block == ("target",) and frame.state == "value":
        if frame.key == "profile":
            machine = load_machines().get(tok.unquoted())
            return describe.machine_markdown(machine) if machine else None
        if frame.key in ("partition", "qos"):
            machine = target_machine(cursor)
            part = machine.partition(tok.unquoted()) if machine else None
            return f"`{part.name}` of {machine.name}: {describe.partition_line(part)}" if part and machine else None
    return None


def _env(text: str, name: Token, environ: Mapping[str, str]) -> str | None:
    """Return what `env("NAME", default)` starting at `name` resolves to in the server's environment."""
    value = _resolve(tokens(text, name.start), 0, environ)
    if value is None:
        return None
    shown, why = value
    return f"`env(…)` = `{shown}` ({why})" if shown is not None else f"`env(…)`: {why}"


def _resolve(toks: list[Token], i: int, environ: Mapping[str, str]) -> tuple[str | None, str] | None:
    if len(toks) < i + 3 or toks[i + 1].kind != "(" or toks[i + 2].kind != "string":
        return None
    variable = toks[i + 2].unquoted()
    if variable in environ:
        return environ[variable], f"`{variable}` is set"
    default = toks[i + 4] if len(toks) > i + 4 and toks[i + 3].kind == "," else None
    if default is not None and default.kind == "string":
        return default.unquoted(), f"`{variable}` is not set: the default"
    if default is not None and default.text == "env":
        inner = _resolve(toks, i + 4, environ)
        return (inner[0], f"`{variable}` is not set: {inner[1]}") if inner else None
    return None, f"`{variable}` is not set and there is no default (DT113)"


def register(server) -> None:
    """Answer `textDocument/hover` from the open document's text and the server's environment."""
    import os

    @server.feature(types.TEXT_DOCUMENT_HOVER)
    def on_hover(ls, params: types.HoverParams) -> types.Hover | None:
        document = ls.workspace.get_text_document(params.text_document.uri)
        return hover(document.source, document.path, params.position, os.environ)
