"""Where a position lies in a blueprint: a tolerant scan of the tokens around it, half-typed text included.

Completion and hover need the enclosing block, key, call and argument while the text is being
typed, when the parser rejects the file: this scan keeps a stack of open blocks, maps, calls and
lists, recovers at every closing bracket and line break, and never fails.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import NamedTuple

from dtec.lang import types as t
from dtec.lang.schema import BLOCKS

# The tokens that matter to the scan (a string may lack its closing quote: it is being typed).
_PARTS = r"""(?P<nl>\n)|(?P<string>"(?:[^"\\\n]|\\.)*(?P<closed>")?)
    |(?P<number>[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?[A-Za-z]*)
    |(?P<name>[A-Za-z_][A-Za-z0-9_]*)|(?P<punct>[{}\[\]()=,.])|(?P<other>.)"""
_TOKEN = re.compile(r"(?P<ws>[ \t\f\r]+)|(?P<comment>\#[^\n]*)|" + _PARTS, re.X)
# The same with blanks and comments skipped inside each match: a loop turn per token, not per blank.
_SIGNIFICANT = re.compile(r"(?:[ \t\f\r]+|\#[^\n]*)*+(?:" + _PARTS + ")", re.X)
# A line that starts a top-level block at its first column (as `dtec fmt` writes blueprints), or an
# import: where the scan starts (the block around the position), and what is declared elsewhere.
_TOP = re.compile(r'^(?:import[ \t]+("(?:[^"\\\n]|\\.)*")|([A-Za-z_][A-Za-z0-9_]*)[ \t]*(?:"((?:[^"\\\n]|\\.)*)"[ \t]*)?\{)', re.M)
# A number being typed at the cursor, and the unit letters typed after it so far.
_NUMBER_AT_END = re.compile(r"(?<![A-Za-z0-9_.])([-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))([A-Za-z]*)$")
_WORD_AT_END = re.compile(r"[A-Za-z_][A-Za-z0-9_]*$")
_CLOSERS = {"}": "{", ")": "(", "]": "["}


class Token(NamedTuple):
    """A scanned token: `name`, `string`, `number`, `nl`, or a punctuation character as its kind."""

    kind: str
    text: str
    start: int
    end: int
    closed: bool = True  # a string with its closing quote

    def unquoted(self) -> str:
        """Return a string token's text without its quotes (escapes kept)."""
        return self.text[1 : -1 if self.closed else None]


def tokens(text: str, start: int = 0) -> list[Token]:
    """Return the tokens of `text` from `start`, blanks and comments left out."""
    return list(iter_tokens(text, start))


def iter_tokens(text: str, start: int = 0) -> Iterator[Token]:
    """Yield the tokens of `text` from `start`, blanks and comments left out."""
    for m in _SIGNIFICANT.finditer(text, start):
        kind = m.lastgroup
        if kind is None:  # blanks at the end
            continue
        begin = m.start(kind)
        if kind == "string":
            yield Token("string", m.group(kind), begin, m.end(), m.group("closed") is not None)
        elif kind in ("punct", "other"):
            yield Token(m.group(kind), m.group(kind), begin, m.end())
        else:
            yield Token(kind, m.group(kind), begin, m.end())


@dataclass
class Frame:
    """An open body (the file, a block), map, call or list, and the element being written in it."""

    kind: str  # "body", "map", "call" or "list"
    opener: str = ""  # "{", "(" or "[" ("" for the file)
    block: tuple[str, ...] = ()  # a body's block kinds from the top, e.g. ("target", "machine")
    label: str | None = None
    spec: t.BlockSpec | None = None  # a body's block, when known
    fields: dict[str, t.Field] | None = None  # the keys or arguments it takes, when known
    item: t.Type | None = None  # a list's item type
    function: str | None = None  # a call's function name
    signature: t.Function | None = None  # the called function, when known
    seen: dict[str, str | None] = field(default_factory=dict)  # keys given → a plain string value
    positional: int = 0  # positional arguments given (calls)
    # The element being written: "start", "name" (a name read), "label" (`kind "label"` read),
    # "value" (after `=`, or a call's positional argument), "vname" (a name as a value),
    # "vdot" (`name.`), "import", "after" (complete, waiting for a separator).
    state: str = "start"
    name: Token | None = None
    key: str | None = None
    type: t.Type | None = None
    value: Token | None = None  # the name a value started with (`data` of `data.gauges`)
    is_positional: bool = False


@dataclass(frozen=True)
class Cursor:
    """The scan's picture at a position: the open frames (innermost last) and what is typed there."""

    frames: tuple[Frame, ...]
    declared: tuple[tuple[str, str], ...]  # top-level (kind, label) of the whole text
    imports: tuple[str, ...]  # import paths as written, quotes included
    start: int  # where the text being completed starts (a word, a string's content, a unit)
    typed: str  # that text, up to the position
    in_string: bool = False
    in_comment: bool = False
    number: str | None = None  # a number before the position, when a unit is being typed

    @property
    def frame(self) -> Frame:
        """Return the innermost frame."""
        return self.frames[-1]

    def block(self) -> Frame | None:
        """Return the innermost body frame of a block (None at top level)."""
        return next((f for f in reversed(self.frames) if f.kind == "body" and f.block), None)


class _Scanner:
    def __init__(self) -> None:
        self.stack = [Frame("body")]
        self.declared: list[tuple[str, str]] = []
        self.imports: list[str] = []

    def top_level(self, text: str, start: int, end: int) -> None:
        """Take the imports and top-level blocks of `text[start:end]` from their first lines."""
        top = self.stack[0]
        for m in _TOP.finditer(text, start, end):
            if m.group(1):
                self.imports.append(m.group(1))
            else:
                top.seen[m.group(2)] = None
                if m.group(3) is not None:
                    self.declared.append((m.group(2), m.group(3)))

    def feed(self, tok: Token) -> None:
        f = self.stack[-1]
        kind = tok.kind
        if kind == "nl":
            if f.kind in ("body", "map"):
                self.end_element(f)
            return
        if kind == ",":
            self.end_element(f)
            return
        if kind in _CLOSERS:
            self.close(_CLOSERS[kind])
            return
        getattr(self, "s_" + f.state)(f, tok)

    def s_start(self, f: Frame, tok: Token) -> None:
        if f.kind == "list" or (f.kind == "call" and tok.kind != "name"):
            self.begin_positional(f)
            self.s_value(f, tok)
        elif tok.kind == "name":
            f.state, f.name = ("import" if f.kind == "body" and tok.text == "import" and not f.block else "name"), tok
        else:
            f.state = "after"

    def s_name(self, f: Frame, tok: Token) -> None:
        assert f.name is not None
        if tok.kind == "=":
            f.key, f.state = f.name.text, "value"
            f.seen[f.key] = None
            if f.fields is not None and f.key in f.fields:
                f.type = f.fields[f.key].type
            elif f.kind == "map":  # free keys (`env = { ... }`): the one value type
                f.type = f.item
        elif f.kind == "body" and tok.kind == "string":
            f.state, f.value = "label", tok
        elif f.kind == "body" and tok.kind == "{":
            self.open_block(f, f.name.text, None)
        elif f.kind == "call":  # the name was a positional value: a symbol, a call or a reference
            name = f.name
            self.begin_positional(f)
            self.s_value(f, name)
            self.feed(tok)
        else:
            f.state = "after"

    def s_label(self, f: Frame, tok: Token) -> None:
        if tok.kind == "{" and f.name is not None and f.value is not None:
            self.open_block(f, f.name.text, f.value.unquoted())
        else:
            f.state = "after"

    def s_value(self, f: Frame, tok: Token) -> None:
        if tok.kind == "name":
            f.state, f.value = "vname", tok
        elif tok.kind == "[":
            f.state = "after"
            self.stack.append(Frame("list", "[", item=list_item(f.type)))
        elif tok.kind == "{":
            f.state = "after"
            fields = record_fields(f.type)
            self.stack.append(Frame("map", "{", fields=fields, item=dict_value(f.type)))
        else:
            if tok.kind == "string" and f.key is not None:
                f.seen[f.key] = tok.unquoted()
            f.state = "after"

    def s_vname(self, f: Frame, tok: Token) -> None:
        assert f.value is not None
        if tok.kind == "(":
            f.state = "after"
            name = f.value.text
            function = functions(f.type).get(name)
            params = dict(function.params) if function is not None else None
            self.stack.append(Frame("call", "(", function=name, signature=function, fields=params))
        elif tok.kind == ".":
            f.state = "vdot"
        else:
            f.state = "after"

    def s_vdot(self, f: Frame, tok: Token) -> None:
        f.state = "vname" if tok.kind == "name" else "after"

    def s_import(self, f: Frame, tok: Token) -> None:
        if tok.kind == "string" and tok.closed:
            self.imports.append(tok.text)
        f.state = "after"

    def s_after(self, f: Frame, tok: Token) -> None:
        pass

    def begin_positional(self, f: Frame) -> None:
        f.state, f.is_positional = "value", True
        if f.kind == "list":
            f.key, f.type = None, f.item
            return
        names = list(f.fields or ())
        f.key = names[f.positional] if f.positional < len(names) else None
        f.type = f.fields[f.key].type if f.key is not None and f.fields else None
        if f.key is not None:
            f.seen[f.key] = None

    def end_element(self, f: Frame) -> None:
        if f.kind == "call" and (f.is_positional or f.state == "name"):
            f.positional += 1
        f.state, f.name, f.key, f.type, f.value, f.is_positional = "start", None, None, None, None, False

    def open_block(self, f: Frame, kind: str, label: str | None) -> None:
        f.seen[kind] = None
        if f.block:
            spec = f.spec.blocks.get(kind) if f.spec is not None else None
        else:
            spec = BLOCKS.get(kind)
            if label is not None:
                self.declared.append((kind, label))
        f.state = "after"
        self.stack.append(Frame("body", "{", (*f.block, kind), label, spec, dict(spec.fields) if spec else None))

    def close(self, opener: str) -> None:
        for depth in range(len(self.stack) - 1, 0, -1):
            if self.stack[depth].opener == opener:
                del self.stack[depth:]
                self.stack[-1].state = "after"
                return


def scan(text: str, offset: int) -> Cursor:
    """Return the picture at `offset`: the frames open there and the word, string or unit being typed."""
    prefix = text[:offset]
    if comment_start(prefix[prefix.rfind("\n") + 1 :]) is not None:  # the position is in a comment
        return Cursor((Frame("body"),), (), (), offset, "", in_comment=True)
    # Only the top-level block around the position is scanned; the others are read off their first lines.
    begin = 0
    for m in _TOP.finditer(prefix):
        begin = m.start() if m.group(2) else begin
    found = tokens(prefix, begin)
    in_string, number = False, None
    last = found[-1] if found else None
    resume = offset
    if last is not None and last.kind == "string" and not last.closed and last.end == offset:
        found.pop()
        in_string, start = True, last.start + 1
        closing = _closing_quote(text, offset)
        resume = closing if closing is not None else offset
    elif (m := _NUMBER_AT_END.search(prefix)) is not None:
        found = [tok for tok in found if tok.start < m.start()]
        number, start = m.group(1), m.start(2)
    else:
        m = _WORD_AT_END.search(prefix)
        start = m.start() if m is not None else offset
        found = [tok for tok in found if tok.start < start]
        if m is not None:  # the rest of the word under the position is not a new token
            resume = offset + len(re.match(r"[A-Za-z0-9_]*", text[offset:]).group())  # type: ignore[union-attr]
    scanner = _Scanner()
    scanner.top_level(text, 0, begin)
    for tok in found:
        scanner.feed(tok)
    # A copy of each frame's element, sharing the `seen` dicts: keys after the position still count.
    frames = tuple(replace(f) for f in scanner.stack)
    depth, rest = len(scanner.stack), resume
    if depth > 1:
        rest = len(text)
        for tok in iter_tokens(text, resume):
            scanner.feed(tok)
            if len(scanner.stack) < depth:  # the frame at the position closed
                rest = tok.end
                break
    scanner.top_level(text, rest, len(text))
    return Cursor(
        frames, tuple(scanner.declared), tuple(scanner.imports), start, text[start:offset], in_string=in_string, number=number
    )


def _closing_quote(text: str, offset: int) -> int | None:
    """Return the offset after the quote that closes the string the position is in, on its line."""
    m = re.compile(r'(?:[^"\\\n]|\\.)*"').match(text, offset)
    return m.end() if m is not None else None


def token_at(text: str, offset: int) -> Token | None:
    """Return the token under `offset` (or just before it), if any."""
    line_end = text.find("\n", offset)
    for tok in tokens(text[: len(text) if line_end < 0 else line_end], text.rfind("\n", 0, offset) + 1):
        if tok.start <= offset <= tok.end and tok.kind in ("name", "string", "number"):
            return tok
    return None


# ---- the vocabulary's types, seen from a position --------------------------------------------


def _options(type_: t.Type | None) -> tuple[t.Type, ...]:
    if isinstance(type_, t.OneOf):
        return type_.options
    return () if type_ is None else (type_,)


def functions(type_: t.Type | None) -> dict[str, t.Function]:
    """Return the functions a value of this type may call."""
    out: dict[str, t.Function] = {}
    for option in _options(type_):
        if isinstance(option, t.Call):
            out.update(option.functions)
    return out


def symbols(type_: t.Type | None) -> tuple[str, ...]:
    """Return the bare names a value of this type may be (symbols, `true`/`false`)."""
    out: list[str] = []
    for option in _options(type_):
        if isinstance(option, t.Sym):
            out += option.choices
        elif isinstance(option, t.Bool):
            out += ("true", "false")
    return tuple(out)


def ref_kinds(type_: t.Type | None) -> tuple[str, ...]:
    """Return the block kinds a value of this type may refer to (`data` for `data.gauges`)."""
    return tuple(o.kind for o in _options(type_) if isinstance(o, t.Ref))


def list_item(type_: t.Type | None) -> t.Type | None:
    """Return the item type of a list value of this type."""
    return next((o.item for o in _options(type_) if isinstance(o, t.ListOf)), None)


def record_fields(type_: t.Type | None) -> dict[str, t.Field] | None:
    """Return the keys a map value of this type takes (None: any key, or not a record)."""
    return next((dict(o.fields) for o in _options(type_) if isinstance(o, t.Record)), None)


def dict_value(type_: t.Type | None) -> t.Type | None:
    """Return the value type of a free-keyed map of this type."""
    return next((o.value for o in _options(type_) if isinstance(o, t.Dict)), None)


def unit_kinds(type_: t.Type | None) -> tuple[str, ...]:
    """Return `duration` and/or `size` when a value of this type takes a unit."""
    return tuple(
        "duration" if isinstance(o, t.Duration) else "size"
        for o in _options(type_)
        if isinstance(o, (t.Duration, t.Size))
    )


def comment_start(line: str) -> int | None:
    """Return where the comment of a line starts (a `#` outside strings), if it has one."""
    last = None
    for last in _TOKEN.finditer(line):
        pass
    return last.start() if last is not None and last.lastgroup == "comment" else None
