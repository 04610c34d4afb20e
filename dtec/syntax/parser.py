"""Parse .twin text into the AST, turning every lark error into a coded diagnostic."""

from __future__ import annotations

import re
from functools import cache

from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from dtec.diagnostics import Diagnostic, Related, diag
from dtec.resources import data_path
from dtec.source import Source, Span
from dtec.syntax import ast
from dtec.syntax.units import UNITS
from dtec.suggest import did_you_mean

_NUMBER = re.compile(r"([-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)([A-Za-z]*)")
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


# Comments are %ignore'd by the grammar; the lexer hands them here so the formatter keeps them.
_comment_sink: list[Token] = []


def _keep_comment(token: Token) -> Token:
    _comment_sink.append(token)
    return token


@cache
def _lark() -> Lark:
    return Lark.open(
        str(data_path("grammars", "twin.lark")),
        parser="lalr",
        maybe_placeholders=False,
        lexer_callbacks={"COMMENT": _keep_comment},
        cache=True,
    )


def parse(source: Source) -> tuple[ast.Document | None, list[Diagnostic]]:
    """Parse one source; return the document (None on a syntax error) and diagnostics."""
    comments: list[Token] = []
    try:
        tree = _parse_tree(source, comments)
    except UnexpectedInput as exc:
        return None, [_syntax_diagnostic(source, exc)]
    builder = _Builder(source)
    items = tuple(builder.item(child) for child in tree.children)
    document = ast.Document(
        items,
        tuple(ast.Comment(str(c), Span(source, c.start_pos, c.end_pos)) for c in comments),
        source,
    )
    return document, builder.diagnostics


def _parse_tree(source: Source, comments: list[Token]) -> Tree:
    _comment_sink.clear()
    try:
        return _lark().parse(source.text)
    finally:
        comments.extend(_comment_sink)
        _comment_sink.clear()


class _Builder:
    """Turn lark trees into AST nodes, collecting diagnostics for bad literals."""

    def __init__(self, source: Source) -> None:
        self.source = source
        self.diagnostics: list[Diagnostic] = []
        self.depth = 0

    def span(self, node: Tree | Token) -> Span:
        # Every rule starts and ends with a token (brackets are named terminals, kept in the tree),
        # so spans come from the edge tokens; lark's propagate_positions would cost a third of a parse.
        first = last = node
        while isinstance(first, Tree):
            first = first.children[0]
        while isinstance(last, Tree):
            last = last.children[-1]
        return Span(self.source, first.start_pos, last.end_pos)

    def item(self, node: Tree) -> ast.Block | ast.Attribute | ast.Import:
        if node.data == "import_stmt":
            _, path = node.children
            return ast.Import(self.string(path), self.span(path), self.span(node))
        return self.member(node)

    def member(self, node: Tree) -> ast.Block | ast.Attribute:
        if node.data == "attribute":
            return self.attribute(node)
        self.depth += 1
        try:
            return self.block(node)
        finally:
            self.depth -= 1

    def block(self, node: Tree) -> ast.Block:
        kind, *rest = node.children
        label = rest[0] if rest[0].type == "STRING" else None
        members: tuple[ast.Block | ast.Attribute, ...] = ()
        if self.depth <= MAX_DEPTH:
            members = tuple(self.member(c) for c in rest[-2].children if isinstance(c, Tree))
        elif self.depth == MAX_DEPTH + 1:
            self.diagnostics.append(
                diag("DT002", f"blocks nested more than {MAX_DEPTH} levels deep", self.span(node), "flatten the blocks")
            )
        return ast.Block(
            str(kind),
            self.string(label) if label is not None else None,
            members,
            self.span(kind),
            self.span(label) if label is not None else None,
            self.span(node),
        )

    def attribute(self, node: Tree) -> ast.Attribute:
        key, _, value = node.children
        return ast.Attribute(str(key), self.expr(value), self.span(key), self.span(node))

    def expr(self, node: Tree) -> ast.Expr:
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                return self.too_deep(node)
            return self._expr(node)
        finally:
            self.depth -= 1

    def too_deep(self, node: Tree) -> ast.Expr:
        span = self.span(node)
        if self.depth == MAX_DEPTH + 1:
            self.diagnostics.append(
                diag("DT002", f"values nested more than {MAX_DEPTH} levels deep", span, "flatten the value")
            )
        return ast.Symbol("_", span)

    def _expr(self, node: Tree) -> ast.Expr:
        kind = node.data
        span = self.span(node)
        children = node.children
        if kind == "string":
            return ast.Str(self.string(children[0]), span)
        if kind == "number":
            return self.number(children[0])
        if kind == "boolean":
            return ast.Bool(children[0].type == "TRUE", span)
        if kind == "symbol":
            return ast.Symbol(str(children[0]), span)
        if kind == "reference":
            return ast.Ref(tuple(str(t) for t in children if t.type == "NAME"), span)
        if kind == "list":
            return ast.ListExpr(tuple(self.expr(c) for c in children if isinstance(c, Tree)), span)
        if kind == "map":
            entries = tuple(self.attribute(c) for c in children if isinstance(c, Tree))
            return ast.MapExpr(entries, span)
        name = children[0]
        args = [c for c in children[1:] if isinstance(c, Tree)]
        return ast.Call(
            str(name),
            tuple(self.expr(a) for a in args if a.data != "attribute"),
            tuple(self.attribute(a) for a in args if a.data == "attribute"),
            self.span(name),
            span,
        )

    def number(self, token: Token) -> ast.Number:
        text = str(token)
        digits, unit = _NUMBER.fullmatch(text).groups()  # type: ignore[union-attr]
        is_int = not any(ch in digits for ch in ".eE")
        span = self.span(token)
        if len(digits) > MAX_DIGITS:
            self.diagnostics.append(
                diag("DT106", f"a number of {len(digits)} digits", span, f"numbers take at most {MAX_DIGITS} digits")
            )
            return ast.Number(0, None, text, span)
        value: int | float = int(digits) if is_int else float(digits)
        if unit and unit not in UNITS:
            self.diagnostics.append(
                diag(
                    "DT005",
                    f"unknown unit `{unit}` in `{text}`",
                    Span(self.source, span.end - len(unit), span.end),
                    did_you_mean(unit, UNITS)
                    or "durations take ms, s, min, h, d; sizes take B, KB, MB, GB, KiB, MiB, GiB",
                )
            )
        return ast.Number(value, unit or None, text, span)

    def string(self, token: Token) -> str:
        raw = str(token)[1:-1]
        if "\\" not in raw:
            return raw
        start = token.start_pos + 1

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


def _syntax_diagnostic(source: Source, exc: UnexpectedInput) -> Diagnostic:
    """Describe a lark error in the user's terms, with a hint for the usual mistakes."""
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
    printable = char if char.isprintable() else repr(char)
    return diag(
        "DT002",
        f"unexpected character `{printable}`",
        span,
        hints.get(char, "remove it, or quote the value as a string"),
    )


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
        elif ch in _CLOSERS:
            stack.append(i)
        elif ch in "}])" and stack:
            stack.pop()
        i += 1
    return stack[-1] if stack else None


def _join(words: list[str]) -> str:
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + " or " + words[-1]
