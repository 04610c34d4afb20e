"""`--set path=value`: replace or add a value in the AST before checking, for sweeps.

A path names a block (and its label), then keys down through nested blocks, maps and a call's
arguments: `train.optimizer.lr=1e-2` changes one argument and keeps the others. Every diagnostic
points into the `--set` argument itself, shown as it was typed on the command line.
"""

from __future__ import annotations

import re
from dataclasses import fields, is_dataclass, replace
from typing import Any

from dtec.diagnostics import Diagnostic, diag
from dtec.lang import types as t
from dtec.lang.loader import Program
from dtec.lang.schema import BLOCKS
from dtec.source import COMMAND_LINE, Source, Span
from dtec.suggest import did_you_mean
from dtec.syntax import ast
from dtec.syntax.parser import parse

_FLAG = "--set "
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def apply_sets(program: Program, sets: list[str]) -> tuple[Program, list[Diagnostic]]:
    """Apply `kind[.label].key[.key…]=expression` overrides to the main file's blocks."""
    found: list[Diagnostic] = []
    for text in sets:
        program = _Set(text, found).apply(program)
    return program, found


class _Set:
    """One `--set` argument: its path, its value parsed with spans into the argument."""

    def __init__(self, text: str, found: list[Diagnostic]) -> None:
        self.text = text
        self.found = found
        self.source = Source(COMMAND_LINE, _FLAG + text)

    def span(self, start: int = 0, end: int | None = None) -> Span:
        """Return a span of the argument (offsets into `text`, not counting the flag)."""
        end = len(self.text) if end is None else end
        return Span(self.source, len(_FLAG) + start, len(_FLAG) + end)

    def report(self, code: str, message: str, span: Span, help: str | None = None) -> None:
        self.found.append(diag(code, message, span, help))

    def apply(self, program: Program) -> Program:
        path, eq, _ = self.text.partition("=")
        parts = path.split(".")
        if not eq or not path.strip():
            self.report("DT002", "`--set` takes `path=value`", self.span(), "write e.g. `--set strategy.nodes=4`")
            return program
        spec = BLOCKS.get(parts[0])
        # A block's label is any text (`target.juwels-booster.partition`); keys are names.
        label_at = 1 if spec is not None and spec.label is not None and spec.multiple else None
        self.parts: list[Span] = []
        offset = 0
        for i, part in enumerate(parts):
            self.parts.append(self.span(offset, offset + len(part)))
            if not (part.strip() if i == label_at else _KEY.fullmatch(part)):
                what = "a label" if i == label_at else "a key"
                self.report("DT002", f"`{part}` is not {what}", self.parts[-1], "keys are names joined by `.`, e.g. `train.epochs`")
                return program
            offset += len(part) + 1
        if spec is None and len(parts) == 1:
            self.report("DT002", f"`{path}` names no block", self.span(0, len(path)), _owner_hint(path))
            return program
        if spec is None:
            self.report("DT100", f"unknown block `{parts[0]}`", self.span(0, len(parts[0])), did_you_mean(parts[0], BLOCKS) or _owner_hint(parts[0]))
            return program
        labelled = spec.label is not None and spec.multiple
        if labelled and len(parts) < 3:
            self.report("DT111", f"`{parts[0]}` blocks have labels", self.span(0, len(path)), f"write `--set {parts[0]}.<name>.{parts[-1]}=…`")
            return program
        if len(parts) < 2:
            self.report("DT002", f"`{path}` names a block, not a value", self.span(0, len(path)), f"write `--set {path}.<key>=…`")
            return program
        label = parts[1] if labelled else None
        keys = parts[2:] if labelled else parts[1:]
        types = _types(spec, keys)
        value = self.value(len(path) + 1, types[-1])
        if value is None:
            return program
        documents = list(program.documents)
        for i, doc in enumerate(documents):
            for j, item in enumerate(doc.items):
                if isinstance(item, ast.Block) and item.kind == parts[0] and (label is None or item.label == label):
                    body = self.put(item.body, keys, types, value)
                    if body is None:
                        return program
                    items = (*doc.items[:j], replace(item, body=body), *doc.items[j + 1 :])
                    documents[i] = replace(doc, items=items)
                    return replace(program, documents=tuple(documents))
        # The block is absent: create it in the main file, so `--set strategy.nodes=4` works anywhere.
        whole = self.span()
        body = self.put((), keys, types, value)
        if body is None:
            return program
        block = ast.Block(parts[0], label, body, whole, whole if label else None, whole)
        documents[0] = replace(documents[0], items=(*documents[0].items, block))
        return replace(program, documents=tuple(documents))

    def value(self, start: int, type_: t.Type | None) -> ast.Expr | None:
        """Parse the value as a .twin expression; a bare word where a string is expected is that string."""
        raw = self.text[start:]
        # The path becomes one name of the same length, so offsets in the parsed text are the argument's.
        document, errors = parse(Source(COMMAND_LINE, "_" * (len(_FLAG) + start - 1) + "=" + raw + "\n"))
        parsed = document.items[0].value if document is not None and not errors and document.items else None  # type: ignore[union-attr]
        if _takes_string(type_) and raw.strip() and not _is_string(parsed):
            begin = start + len(raw) - len(raw.lstrip())
            return ast.Str(raw.strip(), self.span(begin, begin + len(raw.strip())))
        if parsed is None:
            self.found.extend(_rebase(e, self.source) for e in errors)
            return None
        return _rebase(parsed, self.source)

    def put(self, members: tuple, keys: list[str], types: list[t.Type | None], value: ast.Expr) -> tuple | None:
        """Return block members, map entries or call arguments with `keys` set to `value`."""
        key, rest = keys[0], keys[1:]
        members = list(members)
        for i, member in enumerate(members):
            if rest and isinstance(member, ast.Block) and member.kind == key:
                body = self.put(member.body, rest, types[1:], value)
                if body is None:
                    return None
                members[i] = replace(member, body=body)
                return tuple(members)
            if isinstance(member, ast.Attribute) and member.key == key:
                inner = self.descend(member.value, rest, types, value) if rest else value
                if inner is None:
                    return None
                members[i] = replace(member, value=inner)
                return tuple(members)
        if not rest:
            return (*members, ast.Attribute(key, value, self.parts[-1], value.span))
        if isinstance(types[0], t.Type) and not isinstance(types[0], (t.Record, t.Call)):
            return self.not_a_container(rest)
        container = _empty(types[0], key, rest[0], self.span())
        if isinstance(container, ast.Block):
            body = self.put((), rest, types[1:], value)
            return None if body is None else (*members, replace(container, body=body))
        inner = self.descend(container, rest, types, value)
        at = self.parts[-len(keys)]
        return None if inner is None else (*members, ast.Attribute(key, inner, at, at))

    def descend(self, expr: ast.Expr, keys: list[str], types: list[t.Type | None], value: ast.Expr) -> ast.Expr | None:
        """Set `keys` inside a map or a call (a bare function name becomes a call)."""
        if isinstance(expr, ast.Symbol) and isinstance(types[0], t.Call):
            expr = ast.Call(expr.name, (), (), expr.span, expr.span)
        if isinstance(expr, ast.MapExpr):
            entries = self.put(expr.entries, keys, types[1:], value)
            return None if entries is None else replace(expr, entries=entries)
        if isinstance(expr, ast.Call):
            function = types[0].functions.get(expr.name) if isinstance(types[0], t.Call) else None
            params = list(function.params) if function is not None else []
            position = params.index(keys[0]) if keys[0] in params else len(expr.args)
            if len(keys) == 1 and position < len(expr.args):
                args = (*expr.args[:position], value, *expr.args[position + 1 :])
                return replace(expr, args=args)
            kwargs = self.put(expr.kwargs, keys, types[1:], value)
            return None if kwargs is None else replace(expr, kwargs=kwargs)
        return self.not_a_container(keys)

    def not_a_container(self, keys: list[str]) -> None:
        at = self.parts[-len(keys)]
        self.report("DT002", f"`{keys[0]}` cannot be set inside a value that is neither a map nor a call", at, "set the whole value instead")


def _types(spec: t.BlockSpec, keys: list[str]) -> list[t.Type | t.BlockSpec | None]:
    """Return the vocabulary's type for each key of a path below a block (None where unknown)."""
    found: list[Any] = []
    node: Any = spec
    for key in keys:
        if isinstance(node, t.BlockSpec):
            node = node.blocks.get(key) or (node.fields[key].type if key in node.fields else None)
        elif isinstance(node, t.Record):
            node = node.fields[key].type if key in node.fields else None
        elif isinstance(node, t.Call):
            node = next((f.params[key].type for f in node.functions.values() if key in f.params), None)
        else:
            node = None
        found.append(node)
    return found


def _empty(type_: Any, key: str, inner: str, at: Span) -> ast.Expr | ast.Block:
    """Return an empty container for a key the blueprint does not set yet, to hold `inner`."""
    if isinstance(type_, t.Record):
        return ast.MapExpr((), at)
    if isinstance(type_, t.Call):
        # The first function taking the argument: the vocabulary lists the default first.
        name = next((n for n, f in type_.functions.items() if inner in f.params), next(iter(type_.functions)))
        return ast.Call(name, (), (), at, at)
    return ast.Block(key, None, (), at, None, at)  # a nested block, or an unknown key the checker reports


def _takes_string(type_: Any) -> bool:
    if isinstance(type_, t.OneOf):
        return any(_takes_string(o) for o in type_.options)
    return isinstance(type_, t.Str)


def _is_string(expr: ast.Expr | None) -> bool:
    return isinstance(expr, ast.Str) or (isinstance(expr, ast.Call) and expr.name == "env")


def _owner_hint(key: str) -> str:
    """Suggest `block.key` for a key given without its block (`--set epochs=3`)."""
    owners = [kind for kind, spec in BLOCKS.items() if key in spec.fields]
    if owners:
        return "did you mean " + " or ".join(f"`{kind}.{key}`" for kind in owners) + "?"
    return "blocks are " + ", ".join(f"`{k}`" for k in BLOCKS)


def _rebase(node: Any, source: Source) -> Any:
    """Return `node` (an AST node or diagnostic) with every span moved into `source`."""
    if isinstance(node, Span):
        return node._replace(source=source)
    if isinstance(node, tuple):
        return tuple(_rebase(n, source) for n in node)
    if is_dataclass(node) and not isinstance(node, type):
        return replace(node, **{f.name: _rebase(getattr(node, f.name), source) for f in fields(node) if f.init})
    return node
