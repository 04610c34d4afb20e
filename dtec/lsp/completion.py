"""Completion: block kinds, keys, values, functions and arguments, labels, machines, partitions and units."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from lsprotocol import types

from dtec.lang import types as t
from dtec.lang.schema import BLOCKS
from dtec.lsp import describe
from dtec.lsp.cursor import Cursor, Frame, functions, ref_kinds, scan, symbols, unit_kinds
from dtec.lsp.positions import offset, position
from dtec.source import Source
from dtec.units import DURATIONS, SIZES

_Kind = types.CompletionItemKind
TRIGGERS = [".", '"', "=", "(", "[", ",", " "]
# Keys of a target block whose string values name something of its machine.
_MACHINE_KEYS = ("profile", "partition", "qos")


def complete(text: str, path: str | None, at: types.Position, environ: Mapping[str, str] | None = None) -> types.CompletionList:
    """Return the completions at `at` in a blueprint's text (half-typed text included)."""
    source = Source(path or "", text)
    cursor = scan(text, offset(source, at))
    replace = types.Range(position(source, cursor.start), at)
    before = text[cursor.start - 1 : cursor.start] if cursor.start else ""
    items = [
        _with_edit(item, replace, spaced=before in ("=", ",") and not cursor.in_string)
        for item in _items(cursor, path, environ)
    ]
    return types.CompletionList(is_incomplete=False, items=items)


def _with_edit(item: types.CompletionItem, at: types.Range, spaced: bool) -> types.CompletionItem:
    text = item.insert_text or item.label
    item.text_edit = types.TextEdit(at, " " + text if spaced else text)
    item.insert_text = None
    return item


def _items(cursor: Cursor, path: str | None, environ: Mapping[str, str] | None) -> list[types.CompletionItem]:
    frame = cursor.frame
    if cursor.in_comment:
        return []
    if cursor.in_string:
        return _string_items(cursor)
    if cursor.number is not None:
        return _units(unit_kinds(frame.type)) if frame.state == "value" else []
    if frame.state == "vdot" and frame.value is not None:
        return _labels(cursor, (frame.value.text,), path, environ, dotted=False)
    if frame.state == "value":
        return _values(cursor, frame.type, path, environ)
    if frame.state != "start":
        return []
    if frame.kind == "list":
        return _values(cursor, frame.item, path, environ)
    if frame.kind == "body" and not frame.block:
        return _block_kinds(BLOCKS, frame, top=True)
    if frame.kind == "body":
        nested = _block_kinds(frame.spec.blocks, frame) if frame.spec else []
        return _keys(frame, _Kind.Property) + nested
    if frame.kind == "map":
        return _keys(frame, _Kind.Property)
    if frame.kind == "call":
        names = list(frame.fields or ())
        following = frame.fields[names[frame.positional]].type if frame.fields and frame.positional < len(names) else None
        return _keys(frame, _Kind.Field) + _values(cursor, following, path, environ)
    return []


def _item(label: str, kind: _Kind, detail: str, doc: str, order: int, insert: str | None = None) -> types.CompletionItem:
    return types.CompletionItem(
        label=label,
        kind=kind,
        detail=detail,
        documentation=types.MarkupContent(types.MarkupKind.Markdown, doc),
        sort_text=f"{order:04d}",
        insert_text=insert,
    )


def _block_kinds(blocks: Mapping[str, t.BlockSpec], frame: Frame, top: bool = False) -> list[types.CompletionItem]:
    items = [
        _item(kind, _Kind.Module, describe.block_detail(kind, spec), describe.block_markdown(kind, spec), i)
        for i, (kind, spec) in enumerate(blocks.items())
        if spec.multiple or kind not in frame.seen
    ]
    if top:
        doc = "`import \"relative/path.twin\"`: the blocks of another blueprint join this one."
        items.append(_item("import", _Kind.Keyword, 'import "…"', doc, len(items)))
    return items


def _keys(frame: Frame, kind: _Kind) -> list[types.CompletionItem]:
    fields = frame.fields or {}
    given = set(frame.seen) | set(list(fields)[: frame.positional])
    return [
        _item(key, kind, describe.field_detail(f), describe.field_markdown(key, f), i + (0 if f.required else 1000), f"{key} = ")
        for i, (key, f) in enumerate(fields.items())
        if key not in given
    ]


def _values(cursor: Cursor, type_: t.Type | None, path: str | None, environ: Mapping[str, str] | None) -> list[types.CompletionItem]:
    frame = cursor.frame
    owner = (frame.fields or {}).get(frame.key or "")
    about = owner.doc if owner is not None else ""
    items = [_item(name, _Kind.EnumMember, f"`{name}`", about, i) for i, name in enumerate(symbols(type_))]
    items += [
        _item(name, _Kind.Function, describe.function_detail(name, fn), describe.function_markdown(name, fn), 100 + i)
        for i, (name, fn) in enumerate(functions(type_).items())
    ]
    kinds = ref_kinds(type_)
    if kinds:
        items += _labels(cursor, kinds, path, environ, dotted=True)
    return items


def _labels(cursor: Cursor, kinds: Iterable[str], path: str | None, environ: Mapping[str, str] | None, dotted: bool) -> list[types.CompletionItem]:
    kinds = tuple(kinds)
    found = [(kind, label, "this file") for kind, label in cursor.declared]
    found += imported_blocks(path, cursor.imports, environ)
    items, shown = [], set()
    for kind, label, where in found:
        if kind in kinds and (kind, label) not in shown and kind in BLOCKS:
            shown.add((kind, label))
            text = f"{kind}.{label}" if dotted else label
            doc = f'`{kind} "{label}"` ({where}): {BLOCKS[kind].doc}'
            items.append(_item(text, _Kind.Reference, f'{kind} "{label}"', doc, len(items)))
    return items


def imported_blocks(path: str | None, imports: tuple[str, ...], environ: Mapping[str, str] | None) -> list[tuple[str, str, str]]:
    """Return (kind, label, file) of the labelled blocks in the files a blueprint imports, as `dtec lint` reads them."""
    if not imports or not path:
        return []
    from dtec.lang.loader import load
    from dtec.syntax import ast

    # The loader follows the imports (inside the project, cycles and all) of a text of only them.
    program, _ = load(Path(path), "\n".join(f"import {written}" for written in imports), environ)
    return [
        (item.kind, item.label, Path(document.source.path).name)
        for document in program.documents[1:]
        for item in document.items
        if isinstance(item, ast.Block) and item.label is not None
    ]


def target_machine(cursor: Cursor):
    """Return the machine of the target block around the position (its `profile`, else its label), if known."""
    from dtec.machines import load_machines

    frame = cursor.block()
    if frame is None or frame.block[:1] != ("target",):
        return None
    target = next(f for f in cursor.frames if f.block == ("target",))
    name = target.seen.get("profile") or target.label
    return load_machines().get(name) if name else None


def _string_items(cursor: Cursor) -> list[types.CompletionItem]:
    frame = cursor.frame
    naming_target = frame.kind == "body" and not frame.block and frame.state == "name" and frame.name and frame.name.text == "target"
    in_target = frame.kind == "body" and frame.block == ("target",) and frame.state == "value"
    if naming_target or (in_target and frame.key == "profile"):
        return _machines()
    if not in_target or frame.key not in _MACHINE_KEYS:
        return []
    machine = target_machine(cursor)
    if machine is None:
        return []
    if frame.key == "partition":
        return [_item(p.name, _Kind.Value, describe.partition_line(p), f"`{p.name}` of {machine.name}: {describe.partition_line(p)}", i)
                for i, p in enumerate(machine.partitions)]
    return [_item(p.qos, _Kind.Value, describe.partition_line(p), f"QoS `{p.qos}` of {machine.name}: {describe.partition_line(p)}", i)
            for i, p in enumerate(machine.partitions) if p.qos]


def _machines() -> list[types.CompletionItem]:
    from dtec.machines import load_machines

    return [
        _item(m.name, _Kind.Value, describe.machine_line(m), describe.machine_markdown(m), i)
        for i, m in enumerate(load_machines())
    ]


def _units(kinds: tuple[str, ...]) -> list[types.CompletionItem]:
    units = [*(DURATIONS if "duration" in kinds else ()), *(SIZES if "size" in kinds else ())]
    return [_item(u, _Kind.Unit, describe.unit_detail(u), describe.unit_detail(u), i) for i, u in enumerate(units)]


def register(server) -> None:
    """Answer `textDocument/completion` from the open document's text."""
    import os

    @server.feature(types.TEXT_DOCUMENT_COMPLETION, types.CompletionOptions(trigger_characters=TRIGGERS))
    def completion(ls, params: types.CompletionParams) -> types.CompletionList:
        document = ls.workspace.get_text_document(params.text_document.uri)
        return complete(document.source, document.path, params.position, os.environ)
