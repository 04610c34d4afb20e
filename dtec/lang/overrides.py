"""`--set path=value`: replace or add an attribute in the AST before checking, for sweeps."""

from __future__ import annotations

from dataclasses import replace

from dtec.diagnostics import Diagnostic, diag
from dtec.lang.loader import Program
from dtec.lang.schema import BLOCKS
from dtec.source import Source, Span
from dtec.suggest import did_you_mean
from dtec.syntax import ast
from dtec.syntax.parser import parse


def apply_sets(program: Program, sets: list[str]) -> tuple[Program, list[Diagnostic]]:
    """Apply `kind[.label].key=expression` overrides to the main file's blocks."""
    found: list[Diagnostic] = []
    for text in sets:
        program = _apply(program, text, found)
    return program, found


def _apply(program: Program, text: str, found: list[Diagnostic]) -> Program:
    source = Source("<--set>", text)
    whole = Span(source, 0, len(text))
    path, eq, value_text = text.partition("=")
    parts = path.strip().split(".")
    if not eq or not all(parts) or len(parts) < 2:
        found.append(diag("DT002", f"`--set {text}` is not `path=value`", whole, "write e.g. `--set strategy.nodes=4`"))
        return program
    spec = BLOCKS.get(parts[0])
    if spec is None:
        found.append(diag("DT100", f"unknown block `{parts[0]}`", whole, did_you_mean(parts[0], BLOCKS)))
        return program
    labelled = spec.label is not None and spec.multiple
    if labelled and len(parts) < 3:
        found.append(diag("DT111", f"`{parts[0]}` blocks have labels", whole, f"write `--set {parts[0]}.<name>.{parts[-1]}=...`"))
        return program
    label = parts[1] if labelled else None
    keys = parts[2:] if labelled else parts[1:]
    document, errors = parse(Source("<--set>", f"x = {value_text.strip()}\n"))
    if document is None or errors:
        found.extend(errors)
        return program
    value = document.items[0].value  # type: ignore[union-attr]
    documents = list(program.documents)
    for i, doc in enumerate(documents):
        items = list(doc.items)
        for j, item in enumerate(items):
            if isinstance(item, ast.Block) and item.kind == parts[0] and (label is None or item.label == label):
                items[j] = _set(item, keys, value)
                documents[i] = replace(doc, items=tuple(items))
                return replace(program, documents=tuple(documents))
    # The block is absent: create it in the main file, so `--set strategy.nodes=4` works anywhere.
    block = _set(ast.Block(parts[0], label, (), whole, whole if label else None, whole), keys, value)
    documents[0] = replace(documents[0], items=(*documents[0].items, block))
    return replace(program, documents=tuple(documents))


def _set(block: ast.Block, keys: list[str], value: ast.Expr) -> ast.Block:
    key, rest = keys[0], keys[1:]
    body = list(block.body)
    for i, member in enumerate(body):
        if rest and isinstance(member, ast.Block) and member.kind == key:
            body[i] = _set(member, rest, value)
            return replace(block, body=tuple(body))
        if not rest and isinstance(member, ast.Attribute) and member.key == key:
            body[i] = replace(member, value=value)
            return replace(block, body=tuple(body))
    span = block.span
    if rest:
        body.append(_set(ast.Block(key, None, (), span, None, span), rest, value))
    else:
        body.append(ast.Attribute(key, value, span, span))
    return replace(block, body=tuple(body))
