"""Code actions: apply a did-you-mean, add a missing required key, suppress a warning with `# dtec: ignore[…]`."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from difflib import SequenceMatcher
from pathlib import Path

from lsprotocol import types

from dtec.diagnostics import Diagnostic, Severity
from dtec.lang import types as t
from dtec.lang.suppress import is_suppression
from dtec.lsp.cursor import comment_start, functions, scan
from dtec.lsp.positions import lsp_range, position
from dtec.source import Source, Span
from dtec.syntax import ast

_MEANT = re.compile(r"did you mean ([`\"])(.+?)\1\?")
_NEEDS = re.compile(r"needs `([A-Za-z_][A-Za-z0-9_]*)`")
# Pieces of a span's text a suggestion may replace: a whole word (`data.gauge`) or a part of one
# (`nte` of `model.nte`, `Surogate` of `"models:Surogate"`).
_PIECES = (re.compile(r'[^\s"]+'), re.compile(r'[^\s".:/]+'))
# The suppression rules themselves cannot be suppressed usefully.
_NOT_SUPPRESSIBLE = ("DT120", "DT121")


def code_actions(
    text: str,
    path: str,
    uri: str,
    requested: Sequence[types.Diagnostic],
    found: Sequence[Diagnostic] | None = None,
    environ: Mapping[str, str] | None = None,
) -> list[types.CodeAction]:
    """Return the fixes for the client's diagnostics `requested`, matched to dtec's (`found`, else analysed now)."""
    if not requested:
        return []
    if found is None:
        from dtec.analysis import analyse

        found = analyse(Path(path), text, os.environ if environ is None else environ).diagnostics
    here = str(Path(path))
    by_place = {(d.code, _key(lsp_range(d.span))): d for d in found if d.span is not None and d.span.path == here}
    actions = []
    for wanted in requested:
        d = by_place.get((str(wanted.code), _key(wanted.range)))
        if d is None or d.span is None:
            continue
        source = d.span.source
        for title, edit, preferred in _fixes(d, source):
            actions.append(
                types.CodeAction(
                    title,
                    kind=types.CodeActionKind.QuickFix,
                    diagnostics=[wanted],
                    edit=types.WorkspaceEdit(changes={uri: [edit]}),
                    is_preferred=preferred or None,
                )
            )
    return actions


def _key(r: types.Range) -> tuple[int, int, int, int]:
    return (r.start.line, r.start.character, r.end.line, r.end.character)


def _fixes(d: Diagnostic, source: Source) -> list[tuple[str, types.TextEdit, bool]]:
    assert d.span is not None
    out = []
    meant = _MEANT.search(d.help or "")
    if meant is not None:
        edit = did_you_mean(d.span, meant.group(2))
        if edit is not None:
            out.append((f"Replace with `{meant.group(2)}`", edit, True))
    needs = _NEEDS.search(d.message) if d.code == "DT107" else None
    if needs is not None:
        edit = add_key(d.span, needs.group(1))
        if edit is not None:
            out.append((f"Add `{edit.new_text.strip(' ,').splitlines()[-1].strip()}`", edit, False))
    if d.severity is not Severity.ERROR and d.code not in _NOT_SUPPRESSIBLE:
        out.append((f"Suppress {d.code} on this line (`# dtec: ignore[{d.code}]`)", suppress(d.span, d.code), False))
    return out


def did_you_mean(span: Span, suggestion: str) -> types.TextEdit | None:
    """Return the edit that puts `suggestion` in place of the piece of the span's text nearest to it."""
    written = span.source.text[span.start : span.end]
    pieces = {(m.start(), m.end()) for pattern in _PIECES for m in pattern.finditer(written)}
    if not pieces:
        return None
    start, end = max(pieces, key=lambda p: (SequenceMatcher(None, written[p[0] : p[1]], suggestion).ratio(), p[1] - p[0]))
    if written[start:end] == suggestion:
        return None
    quoted = written[:start].count('"') % 2 == 1
    new = suggestion.replace("\\", "\\\\").replace('"', '\\"') if quoted else suggestion
    return types.TextEdit(lsp_range(Span(span.source, span.start + start, span.start + end)), new)


def add_key(span: Span, key: str) -> types.TextEdit | None:
    """Return the edit that adds `key = <placeholder>` to the block, call or map at `span`."""
    text = span.source.text
    written = text[span.start : span.end]
    if written.endswith(")") or written.startswith("{"):  # a call or a map: before its closing bracket
        opener = span.start + written.index("(" if written.endswith(")") else "{")
        close = span.end - 1
    else:  # a block's head: the block opens at the next `{`
        opener = text.find("{", span.end)
        if opener < 0:
            return None
        close = None
    field = (scan(text, opener + 1).frame.fields or {}).get(key)
    if field is None:
        return None
    entry = f"{key} = {placeholder(field.type)}"
    if close is not None:
        last = len(text[:close].rstrip())
        before = text[last - 1]
        new = entry if before in "({" else f" {entry}" if before == "," else f", {entry}"
        return types.TextEdit(_point(span.source, last), new)
    line_end = text.find("\n", opener)
    line_end = len(text) if line_end < 0 else line_end
    rest = text[opener + 1 : line_end]
    start_line = span.source.line_text(span.start_pos[0])
    indent = start_line[: len(start_line) - len(start_line.lstrip())]
    if not rest.strip() or rest.lstrip().startswith("#"):  # `{` ends its line: a line of its own
        return types.TextEdit(_point(span.source, line_end), f"\n{indent}  {entry}")
    return types.TextEdit(_point(span.source, opener + 1), f" {entry}" + (" " if rest.lstrip().startswith("}") else ","))


def _point(source: Source, at: int) -> types.Range:
    return types.Range(position(source, at), position(source, at))


def placeholder(type_: t.Type) -> str:
    """Return a value of the type that parses and says what goes there (`""`, `1`, `mse`, `1h`)."""
    if isinstance(type_, t.OneOf):
        return placeholder(type_.options[0])
    if isinstance(type_, t.Sym):
        return type_.choices[0]
    if isinstance(type_, t.Call):
        for name, function in functions(type_).items():
            if not any(f.required for f in function.params.values()):
                return name
        name, function = next(iter(type_.functions.items()))
        args = ", ".join(f"{k} = {placeholder(f.type)}" for k, f in function.params.items() if f.required)
        return f"{name}({args})"
    if isinstance(type_, t.ListOf):
        return f"[{placeholder(type_.item)}]" if type_.min_len else "[]"
    simple = {
        t.Bool: "false", t.Int: str(getattr(type_, "min", None) or 1), t.Float: "1.0", t.Duration: "1h", t.Size: "1GB",
        t.Record: "{}", t.Dict: "{}", t.Name: "name", t.Ref: f"{getattr(type_, 'kind', '')}.name",
    }
    return simple.get(type(type_), '""')


def suppress(span: Span, code: str) -> types.TextEdit:
    """Return the edit that suppresses `code` on the span's line: a new comment line above it, or the code added to the directive there."""
    source = span.source
    line = span.start_pos[0]
    for number, own in ((line, False), (line - 1, True)):
        text = source.line_text(number)
        at = comment_start(text) if number >= 1 else None
        if at is None or (own and text[:at].strip()) or (not own and not text[:at].strip()):
            continue
        begin = source.line_start(number) + at
        comment = ast.Comment(text[at:], Span(source, begin, begin + len(text) - at))
        closing = text.rfind("]")
        if is_suppression(comment) and closing > at:
            return types.TextEdit(_point(source, source.line_start(number) + closing), f", {code}")
    text = source.line_text(line)
    indent = text[: len(text) - len(text.lstrip())]
    return types.TextEdit(_point(source, source.line_start(line)), f"{indent}# dtec: ignore[{code}]\n")


def register(server) -> None:
    """Answer `textDocument/codeAction` for the diagnostics the client sends in its context."""

    @server.feature(types.TEXT_DOCUMENT_CODE_ACTION, types.CodeActionOptions(code_action_kinds=[types.CodeActionKind.QuickFix]))
    def on_code_action(ls, params: types.CodeActionParams) -> list[types.CodeAction]:
        document = ls.workspace.get_text_document(params.text_document.uri)
        if not document.path:
            return []
        return code_actions(document.source, document.path, params.text_document.uri, params.context.diagnostics)
