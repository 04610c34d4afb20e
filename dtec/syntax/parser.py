"""Parse .twin text into the AST; when the text is not in the language, lark says why, as a coded diagnostic."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator
from functools import cache
from typing import TYPE_CHECKING

from dtec.diagnostics import Diagnostic, Related, diag
from dtec.resources import data_path
from dtec.source import Source, Span
from dtec.suggest import did_you_mean
from dtec.syntax import ast, lalr
from dtec.units import UNITS

if TYPE_CHECKING:
    from lark import Lark, Token
    from lark.exceptions import UnexpectedCharacters, UnexpectedInput

_NUMBER = re.compile(r"([-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?)([A-Za-z]*)")
_ESCAPE = re.compile(r"\\(.)")
_ESCAPES = {'"': '"', "\\": "\\", "n": "\n", "t": "\t"}
# Bounds that keep every later pass (checker, formatter) far from Python's recursion limit.
MAX_DEPTH = 64
MAX_DIGITS = 100

# Friendly names for terminals in "expected ..." messages.
_TERMINALS = {
    "NAME": "a name",
    "STRING": "a string",
    "NUMBER": "a number",
    "TRUE": "`true`",
    "FALSE": "`false`",
    "IMPORT": "`import`",
    "LBRACE": "`{`",
    "RBRACE": "`}`",
    "LBRACKET": "`[`",
    "RBRACKET": "`]`",
    "LPAREN": "`(`",
    "RPAREN": "`)`",
    "EQUALS": "`=`",
    "COMMA": "`,`",
    "DOT": "`.`",
    "_NL": "a new line",
    "$END": "the end of the file",
}
_CLOSERS = {"{": "}", "[": "]", "(": ")"}


_KEPT = ("COMMENT",)  # ignored by the grammar, kept for the formatter and suppressions


@cache
def _lark() -> Lark:
    # Imported here: lark is needed to build the tables and to explain syntax errors, not to parse.
    from lark import Lark

    return Lark.open(str(data_path("grammars", "twin.lark")), parser="lalr", maybe_placeholders=False, cache=True)


def grammar_sha256() -> str:
    """Return the hash of twin.lark that its generated tables are stamped with."""
    return hashlib.sha256(data_path("grammars", "twin.lark").read_bytes()).hexdigest()


def tables_from_lark() -> lalr.Tables:
    """Build the parse tables from twin.lark with lark (what scripts/gen_parse_tables.py writes)."""
    return lalr.from_lark(_lark(), keep=_KEPT)


@cache
def _tables() -> lalr.Tables:
    # grammars/twin.tables.json spares every run lark's import; stale tables are rebuilt, not trusted.
    saved = data_path("grammars", "twin.tables.json")
    found = lalr.from_json(saved.read_text(encoding="utf-8"), grammar_sha256()) if saved.is_file() else None
    return found or tables_from_lark()


def parse(source: Source, *, recover: bool = False) -> tuple[ast.Document | None, list[Diagnostic]]:
    """Parse one source; return the document and diagnostics.

    On a syntax error the document is None, or with `recover` the top-level items that parse on
    their own (`recovered`), so that one half-typed block does not hide the rest of the file.
    """
    builder = _Builder(source)
    comments: list[lalr.Token] = []
    items = lalr.run(_tables(), source.text, builder.handlers, comments)
    if items is None:
        error = _syntax_error(source)
        if not recover:
            return None, [error]
        document, found = _recover(source)
        return document, [error, *found]
    document = ast.Document(
        tuple(items), tuple(ast.Comment(c.text, Span(source, c.start, c.end)) for c in comments), source
    )
    return document, builder.diagnostics


def _syntax_error(source: Source) -> Diagnostic:
    """Ask lark why the text is not in the language, and say it in the user's terms."""
    from lark.exceptions import UnexpectedInput

    try:
        _lark().parse(source.text)
    except UnexpectedInput as exc:
        return _syntax_diagnostic(source, exc)
    raise AssertionError("dtec's LALR loop rejected a text that lark accepts")


class _Builder:
    """Build AST nodes on each reduction, collecting diagnostics for bad literals and deep nesting."""

    def __init__(self, source: Source) -> None:
        self.source = source
        self.diagnostics: list[Diagnostic] = []
        self.handlers: dict[str, lalr.Handler] = {
            "start": lambda children, level: children,
            "body": lambda children, level: _nodes(children),
            "import_stmt": self.import_stmt,
            "block": self.block,
            "attribute": self.attribute,
            "string": self.expr(lambda c, span: ast.Str(self.string(c[0]), span)),
            "number": self.expr(lambda c, span: self.number(c[0])),
            "boolean": self.expr(lambda c, span: ast.Bool(c[0].type == "TRUE", span)),
            "symbol": self.expr(lambda c, span: ast.Symbol(c[0].text, span)),
            "reference": self.expr(lambda c, span: ast.Ref(tuple(t.text for t in c if t.type == "NAME"), span)),
            "list": self.expr(lambda c, span: ast.ListExpr(_nodes(c), span)),
            "map": self.expr(lambda c, span: ast.MapExpr(_nodes(c), span)),
            "call": self.expr(self.call),
        }

    def span(self, first: lalr.Token, last: lalr.Token | ast.Expr) -> Span:
        return Span(self.source, first.start, last.end if last.__class__ is lalr.Token else last.span.end)  # type: ignore[union-attr]

    def import_stmt(self, children: list, level: int) -> ast.Import:
        keyword, path = children
        return ast.Import(self.string(path), self.span(path, path), self.span(keyword, path))

    def block(self, children: list, level: int) -> ast.Block:
        kind, *rest = children
        label = rest[0] if rest[0].type == "STRING" else None
        span = self.span(kind, rest[-1])
        members: tuple[ast.Block | ast.Attribute, ...] = rest[-2]
        if level >= MAX_DEPTH:  # the block sits at depth level + 1
            members = ()
            if level == MAX_DEPTH:
                self.diagnostics.append(
                    diag("DT002", f"blocks nested more than {MAX_DEPTH} levels deep", span, "flatten the blocks")
                )
        return ast.Block(
            kind.text,
            self.string(label) if label is not None and level <= MAX_DEPTH else None,
            members,
            self.span(kind, kind),
            self.span(label, label) if label is not None else None,
            span,
        )

    def attribute(self, children: list, level: int) -> ast.Attribute:
        key, _, value = children
        return ast.Attribute(key.text, value, self.span(key, key), self.span(key, value))

    def expr(self, build: Callable[[list, Span], ast.Expr]) -> lalr.Handler:
        """Wrap a value's builder with the depth bound: values past it become `_`, reported once."""

        def handler(children: list, level: int) -> ast.Expr:
            span = self.span(children[0], children[-1])
            if level < MAX_DEPTH:
                return build(children, span)
            if level == MAX_DEPTH:
                self.diagnostics.append(
                    diag("DT002", f"values nested more than {MAX_DEPTH} levels deep", span, "flatten the value")
                )
            return ast.Symbol("_", span)

        return handler

    def call(self, children: list, span: Span) -> ast.Call:
        name = children[0]
        args = _nodes(children)
        return ast.Call(
            name.text,
            tuple(a for a in args if a.__class__ is not ast.Attribute),
            tuple(a for a in args if a.__class__ is ast.Attribute),
            self.span(name, name),
            span,
        )

    def number(self, token: lalr.Token) -> ast.Number:
        text = token.text
        digits, unit = _NUMBER.fullmatch(text).groups()  # type: ignore[union-attr]
        is_int = digits.lstrip("+-").isdigit()
        span = self.span(token, token)
        if len(digits) > MAX_DIGITS:
            self.diagnostics.append(
                diag("DT106", f"a number of {len(digits)} digits", span, f"numbers take at most {MAX_DIGITS} digits")
            )
            return ast.Number(None, unit or None, text, span)
        value: int | float = int(digits) if is_int else float(digits)
        if unit and unit not in UNITS:
            self.diagnostics.append(
                diag(
                    "DT005",
                    f"unknown unit `{unit}` in `{text}`",
                    Span(self.source, span.end - len(unit), span.end),
                    did_you_mean(unit, UNITS)
                    or "durations take ms, s, min, h, d; sizes take B, KB, MB, GB, KiB, MiB, GiB (or Gi)",
                )
            )
        return ast.Number(value, unit or None, text, span)

    def string(self, token: lalr.Token) -> str:
        raw = token.text[1:-1]
        if "\\" not in raw:
            return raw
        start = token.start + 1

        def unescape(match: re.Match[str]) -> str:
            char = match.group(1)
            if char in _ESCAPES:
                return _ESCAPES[char]
            self.diagnostics.append(
                diag(
                    "DT004",
                    f"unknown escape `\\{char}` in string",
                    Span(self.source, start + match.start(), start + match.end()),
                    "strings take \\\" \\\\ \\n and \\t; write a backslash as \\\\",
                )
            )
            return match.group(0)

        return _ESCAPE.sub(unescape, raw)


def _nodes(children: list) -> tuple:
    """Return the children that are AST nodes, not punctuation."""
    return tuple(c for c in children if c.__class__ is not lalr.Token)


def _syntax_diagnostic(source: Source, exc: UnexpectedInput) -> Diagnostic:
    """Describe a lark error in the user's terms, with a hint for the usual mistakes."""
    from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedToken

    if isinstance(exc, UnexpectedCharacters):
        return _bad_character(source, exc)
    if isinstance(exc, UnexpectedEOF) or (
        isinstance(exc, UnexpectedToken) and exc.token.type == "$END"
    ):
        return _unexpected_end(source)
    assert isinstance(exc, UnexpectedToken)
    token = exc.token
    span = Span(source, token.start_pos, max(token.end_pos, token.start_pos + 1))
    if token.type == "IMPORT":
        return diag("DT006", "`import` inside a block", span, "move the `import` line to the top level of the file")
    shown = "a new line" if token.type == "_NL" else f"`{token}`"
    expected = sorted({_TERMINALS.get(t, t) for t in exc.accepts or exc.expected})
    hint = _hint_for(token, set(exc.accepts or exc.expected))
    return diag(
        "DT002",
        f"unexpected {shown}",
        span,
        hint or f"expected {_join(expected)}",
    )


def _hint_for(token: Token, expected: set[str]) -> str | None:
    if "EQUALS" in expected and token.type in {"NUMBER", "STRING", "NAME", "TRUE", "FALSE"}:
        return "write `key = value`: an `=` is missing"
    if token.type == "_NL" and expected & {"STRING", "NUMBER", "NAME", "LBRACKET"}:
        return "the value is missing after `=`"
    if token.type in {"NAME", "STRING", "NUMBER"} and "_NL" in expected:
        return "put each attribute on its own line, or separate them with `,`"
    if token.type == "LBRACE" and "EQUALS" in expected:
        return "a block label must be a quoted string: `kind \"label\" { ... }`"
    return None


def _bad_character(source: Source, exc: UnexpectedCharacters) -> Diagnostic:
    char = source.text[exc.pos_in_stream]
    span = Span(source, exc.pos_in_stream, exc.pos_in_stream + 1)
    if char == '"':
        end = source.text.find("\n", exc.pos_in_stream)
        end = len(source.text) if end == -1 else end
        return diag(
            "DT003",
            "unterminated string",
            Span(source, exc.pos_in_stream, end),
            'close the string with `"` on the same line; write a new line as \\n',
        )
    hints = {
        ":": "attributes are written `key = value`, not `key: value`",
        "'": 'strings use double quotes: "text"',
        ";": "separate attributes with a new line or `,`",
    }
    # A digit the lexer did not take is not ASCII (`３２`, `١٠٠`).
    hint = "write numbers with the ASCII digits 0-9" if char.isdigit() else hints.get(char, "remove it, or quote the value as a string")
    printable = char if char.isprintable() else repr(char)
    return diag("DT002", f"unexpected character `{printable}`", span, hint)


def _unexpected_end(source: Source) -> Diagnostic:
    opener = _unclosed_bracket(source.text)
    end = len(source.text)
    if opener is not None:
        char = source.text[opener]
        return diag(
            "DT002",
            f"`{char}` is never closed",
            Span(source, opener, opener + 1),
            f"add the matching `{_CLOSERS[char]}`",
            [Related(Span(source, end, end), "the file ends here")],
        )
    return diag("DT002", "unexpected end of file", Span(source, end, end), "the last item is incomplete")


def _unclosed_bracket(text: str) -> int | None:
    """Return the offset of the innermost bracket left open at the end, skipping strings and comments."""
    stack: list[int] = []
    for i in _brackets(text):
        if text[i] in _CLOSERS:
            stack.append(i)
        elif stack:
            stack.pop()
    return stack[-1] if stack else None


def _brackets(text: str) -> Iterator[int]:
    """Yield the offset of each bracket, skipping strings and comments."""
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "#":
            nl = text.find("\n", i)
            i = n if nl == -1 else nl
            continue
        if ch == '"':
            i += 1
            while i < n and text[i] not in '"\n':
                i += 2 if text[i] == "\\" else 1
        elif ch in "{[()]}":
            yield i
        i += 1


def _recover(source: Source) -> tuple[ast.Document, list[Diagnostic]]:
    """Return the document of the top-level chunks that parse alone, and their diagnostics."""
    items: list = []
    comments: list[lalr.Token] = []
    diagnostics: list[Diagnostic] = []
    for start, end in _chunks(source.text):
        builder = _Builder(source)
        found: list[lalr.Token] = []
        parsed = lalr.run(_tables(), source.text, builder.handlers, found, start, end)
        if parsed is not None:
            items.extend(parsed)
            comments.extend(found)
            diagnostics.extend(builder.diagnostics)
    comment_nodes = tuple(ast.Comment(c.text, Span(source, c.start, c.end)) for c in comments)
    return ast.Document(tuple(items), comment_nodes, source, recovered=True), diagnostics


# A line that opens a top-level item: where recovery starts a chunk even inside an unclosed bracket.
_TOP_LEVEL_HEAD = re.compile(r'import\b|[A-Za-z_]\w*[ \t]*(?:"(?:[^"\\\n]|\\.)*"[ \t]*)?\{')


def _chunks(text: str) -> list[tuple[int, int]]:
    """Split a text into its top-level items: at each line that starts outside brackets, and at each
    line opening a block in column 0 (canonical layout indents nested blocks, so a bracket left open
    above it ends there)."""
    chunks: list[tuple[int, int]] = []
    start = depth = 0
    for line in re.finditer(r"[^\n]*\n?", text):
        if line.start() > start and (depth <= 0 or _TOP_LEVEL_HEAD.match(line.group())):
            chunks.append((start, line.start()))
            start, depth = line.start(), 0
        depth += sum(1 if line.group()[i] in _CLOSERS else -1 for i in _brackets(line.group()))
    if start < len(text):
        chunks.append((start, len(text)))
    return chunks


def _join(words: list[str]) -> str:
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + " or " + words[-1]
