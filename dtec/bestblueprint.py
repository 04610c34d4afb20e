"""`best.twin`: the blueprint with a sweep's best values written in, as edits of its own text.

Each `key=value` (as `--set` writes it) replaces the value where the blueprint writes one, or is
added where the key took its default; the `sweep` block is left out (best.twin trains the best
trial, it does not sweep again). `dtec fmt` then lays it out; every comment outside the sweep stays.
"""

from __future__ import annotations

from pathlib import Path

from dtec.format import format_source
from dtec.lang import types as t
from dtec.lang.schema import BLOCKS
from dtec.source import Source
from dtec.syntax import ast
from dtec.syntax.parser import parse


_LINE = "\0"  # marks an insertion as a line of a block


def write_best(blueprint: Path, sets: list[str], out: Path) -> Path:
    """Write the blueprint with `sets` applied to `out`; return it."""
    text = blueprint.read_text(encoding="utf-8")
    document, _ = parse(Source(str(blueprint), text))
    edits: list[tuple[int, int, str]] = []
    for item in document.items:
        if isinstance(item, ast.Block) and item.kind == "sweep":
            edits.append((item.span.start, item.span.end, ""))
    tail: list[str] = []
    for entry in sets:
        key, _, value = entry.partition("=")
        edit = _edit(document, key.split("."), value)
        if edit is None:
            tail.append(_new_block(key.split("."), value))
        else:
            edits.append(edit)
    for start, end, new in sorted(edits, reverse=True):
        if new.startswith(_LINE):  # a line of its own before the block's `}`
            new = ("" if text[:start].rstrip(" \t").endswith("\n") else "\n") + new[len(_LINE):] + "\n"
        text = text[:start] + new + text[end:]
    text = text.rstrip("\n") + "\n" + "".join("\n" + block for block in tail)
    formatted, _ = format_source(Source(str(out), text))
    out.write_text(formatted if formatted is not None else text, encoding="utf-8")
    return out


def _edit(document: ast.Document, parts: list[str], value: str) -> tuple[int, int, str] | None:
    """The edit that sets `parts` to `value` in the document's block, or None without the block."""
    spec = BLOCKS[parts[0]]
    labelled = spec.label is not None and spec.multiple
    label, keys = (parts[1], parts[2:]) if labelled else (None, parts[1:])
    for item in document.items:
        if isinstance(item, ast.Block) and item.kind == parts[0] and item.label == label:
            return _in_members(item.body, keys, value, item.span.end - 1, "\n")
    return None


def _in_members(members, keys: list[str], value: str, end: int, separator: str) -> tuple[int, int, str]:
    """Set `keys` among block members, map entries or call arguments ending before `end`."""
    key, rest = keys[0], keys[1:]
    for member in members:
        if isinstance(member, ast.Block) and member.kind == key and rest:
            return _in_members(member.body, rest, value, member.span.end - 1, "\n")
        if isinstance(member, ast.Attribute) and member.key == key:
            if not rest:
                return member.value.span.start, member.value.span.end, value
            return _inside(member.value, rest, value)
    return end, end, (_LINE if separator == "\n" else separator) + _nested(keys, value)


def _inside(expr: ast.Expr, keys: list[str], value: str) -> tuple[int, int, str]:
    """Set `keys` inside a map or a call (a bare function name becomes a call)."""
    if isinstance(expr, ast.Symbol):
        return expr.span.start, expr.span.end, f"{expr.name}({_nested(keys, value)})"
    if isinstance(expr, ast.MapExpr):
        return _in_members(expr.entries, keys, value, expr.span.end - 1, ", " if expr.entries else " ")
    if isinstance(expr, ast.Call):
        return _in_members(expr.kwargs, keys, value, expr.span.end - 1, ", " if expr.args or expr.kwargs else "")
    return expr.span.start, expr.span.end, value  # the sweep's checks allow no other case


def _nested(keys: list[str], value: str) -> str:
    """`a = { b = value }`, or `a = fn(b = value)`, for keys the blueprint does not write yet."""
    inner = value
    for i in range(len(keys) - 1, 0, -1):
        inner = f"{keys[i]} = {inner}"
        fn = _WRAPPERS.get(keys[i - 1])
        inner = f"{fn}({inner})" if fn else f"{{ {inner} }}"
    return f"{keys[0]} = {inner}"


def _default_call(field: t.Field) -> str | None:
    if isinstance(field.type, t.Call):
        return (field.default or {}).get("fn") or next(iter(field.type.functions))
    return None


# The function a call-valued key the blueprint leaves out stands for (`optimizer`: `adamw`).
_WRAPPERS = {
    key: fn
    for spec in BLOCKS.values()
    for key, field in spec.fields.items()
    if (fn := _default_call(field)) is not None
}


def _new_block(parts: list[str], value: str) -> str:
    """A block the blueprint does not have, holding one key (`strategy { nodes = 2 }`)."""
    return f"{parts[0]} {{\n  {_nested(parts[1:], value)}\n}}\n"
