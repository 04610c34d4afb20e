"""Property tests: no input crashes lint or fmt; formatting keeps meaning and comments.

Set DTEC_FUZZ_EXAMPLES=20000 for a long bug hunt; the default keeps this file near 30 s on 2 cores.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lark import Tree
from lark.exceptions import UnexpectedInput

from dtec.diagnostics import diag
from dtec.format import FormatterError, format_source
from dtec.format.comments import comment_text
from dtec.analysis import analyse
from dtec.format.safety import span_starts
from dtec.lang.suppress import apply_suppressions
from dtec.source import Source, Span
from dtec.syntax import lalr, parser
from dtec.syntax.parser import parse
from dtec.units import UNITS

BLUEPRINTS = sorted((Path(__file__).resolve().parent.parent / "blueprints").glob("*.twin"))
TEXTS = {p.name: p.read_text(encoding="utf-8") for p in BLUEPRINTS}

# A profile of this module only (derandomized, so CI sees the same examples every run).
_EXAMPLES = int(os.environ.get("DTEC_FUZZ_EXAMPLES", "0"))
_SLOW = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]


def fuzz(examples: int) -> settings:
    return settings(
        max_examples=_EXAMPLES or examples,
        deadline=None,
        derandomize=not _EXAMPLES,
        suppress_health_check=_SLOW,
        print_blob=True,
    )


# Imports in fuzzed text resolve inside an empty folder, never into the checkout.
_HOME = Path(tempfile.mkdtemp(prefix="dtec-fuzz-"))


# ---- (a) any text: diagnostics, never an exception ---------------------------------------------

_TOKEN = re.compile(
    r'"(?:[^"\\\n]|\\.)*"|#[^\n]*|[-+]?[\d.]+(?:[eE][-+]?\d+)?[A-Za-z]*|\w+|\r?\n|[ \t]+|.'
)
_WORDS = sorted({t for text in TEXTS.values() for t in _TOKEN.findall(text) if t.strip()})
_PIECES = [
    *'{}[]()=,."#\\',
    "\n",
    "\r\n",
    " ",
    "  ",
    "\t",
    "import",
    "true",
    "false",
    '"x"',
    "1",
    "-2.5e3",
    "30mins",
    "# dtec: ignore[DT101]",
    "# dtec: ignore",
    *_WORDS,
]

grammar_text = st.lists(st.sampled_from(_PIECES), max_size=60).map("".join)
any_text = st.one_of(
    st.text(max_size=200), st.text(alphabet='{}[]()=,."#\n abc1\\', max_size=80), grammar_text
)


def assert_no_crash(text: str) -> None:
    """Lint and format `text`; every diagnostic must point inside its own source."""
    result = analyse(_HOME / "x.twin", text=text)
    spans = [d.span for d in result.diagnostics] + [
        r.span for d in result.diagnostics for r in d.related
    ]
    for span in spans:
        if span is None:
            continue
        assert 0 <= span.start <= span.end <= len(span.source.text), span
        for line, column in (span.start_pos, span.end_pos):
            assert line >= 1 and column >= 1, span
    formatted, diagnostics = format_source(Source("x.twin", text))
    assert (formatted is None) == bool(diagnostics)


@fuzz(1500)
@given(any_text)
def test_any_text_never_crashes(text: str) -> None:
    assert_no_crash(text)


# ---- (b) random valid blueprints: the formatter keeps meaning, comments, and is idempotent -----

_KEYWORDS = {"true", "false", "import"}
_HEAD, _TAIL = "abcxyzABZ_", "abcxyzABZ_019"
# Cheaper than st.from_regex, which dominated the run time.
names = st.builds(
    str.__add__, st.sampled_from(_HEAD), st.text(st.sampled_from(_TAIL), max_size=6)
).filter(lambda n: n not in _KEYWORDS) | st.sampled_from(
    ["data", "model", "train", "lr", "env", "k" * 30]
)
_MANTISSAS = ["0", "1", "42", "1.", "1.5", ".5", "0.01", "4096", "007"]
numbers = st.builds(
    lambda sign, m, exp, unit: sign + m + exp + unit,
    st.sampled_from(["", "", "-", "+"]),
    st.sampled_from(_MANTISSAS) | st.integers(0, 10**30).map(str),
    st.sampled_from(["", "", "e3", "E-2", "e+10", "e999"]),
    st.sampled_from(["", "", *sorted(UNITS)]),
)
# A raw CR ends a line (and so a string), like LF; strings have no escape for it.
chars = st.characters(blacklist_categories=("Cs",), blacklist_characters="\r")
# Long strings and keys now and then, so that lines overflow 100 columns and calls/lists explode.
strings = st.text(chars, max_size=12) | st.integers(20, 110).map(lambda n: "s" * n)
comment_bodies = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=20
) | st.just(" dtec: ignore[DT213]")

# Nodes are tuples ("kind", ...); spaces, new lines, commas and comments are drawn when printing.
atoms = st.one_of(
    st.tuples(st.just("str"), strings),
    st.tuples(st.just("num"), numbers),
    st.tuples(st.just("bool"), st.sampled_from(["true", "false"])),
    st.tuples(st.just("sym"), names),
    st.tuples(st.just("ref"), st.lists(names, min_size=2, max_size=3)),
)


def _containers(inner: st.SearchStrategy) -> st.SearchStrategy:
    attrs = st.lists(st.tuples(st.just("attr"), names, inner), max_size=4)
    return st.one_of(
        st.tuples(st.just("list"), st.lists(inner, max_size=4)),
        st.tuples(st.just("map"), attrs),
        st.tuples(
            st.just("call"),
            names,
            st.lists(st.one_of(inner, st.tuples(st.just("attr"), names, inner)), max_size=4),
        ),
    )


exprs = st.recursive(atoms, _containers, max_leaves=12)
attributes = st.tuples(st.just("attr"), names, exprs)
blocks = st.recursive(
    st.tuples(st.just("block"), names, st.none() | strings, st.lists(attributes, max_size=4)),
    lambda inner: st.tuples(
        st.just("block"),
        names,
        st.none() | strings,
        st.lists(st.one_of(attributes, inner), max_size=5),
    ),
    max_leaves=6,
)
documents = st.lists(
    st.one_of(blocks, attributes, st.tuples(st.just("import"), strings)), max_size=6
)


class Layout:
    """Print a generated tree with random spacing, new lines, trailing commas and comments."""

    def __init__(self, data: st.DataObject) -> None:
        self.draw = data.draw

    def ws(self) -> str:
        # \f is a blank to the lexer too (a lone \r ends a line, as in editors).
        return self.draw(st.sampled_from(["", " ", " ", "  ", "\t", " \t ", "\f"]))

    def gap(self) -> str:
        """Space between two tokens that would otherwise run together."""
        return self.draw(st.sampled_from([" ", "  ", "\t"]))

    def newlines(self) -> str:
        """One or more new lines (`_nl`), each possibly after a comment."""
        out = ""
        for _ in range(self.draw(st.integers(1, 3))):
            if self.draw(st.booleans()):
                out += self.ws() + "#" + self.draw(comment_bodies)
            out += self.ws() + self.draw(st.sampled_from(["\n", "\n", "\r\n", "\r"]))
        return out + self.ws()

    def maybe_newlines(self) -> str:
        return self.newlines() if self.draw(st.booleans()) else self.ws()

    def string(self, value: str) -> str:
        out = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        if self.draw(st.booleans()):
            out = out.replace("\t", "\\t")
        return f'"{out}"'

    def expr(self, node: tuple) -> str:
        kind = node[0]
        if kind == "str":
            return self.string(node[1])
        if kind in {"num", "bool", "sym"}:
            return node[1]
        if kind == "ref":
            return (
                ".".join(node[1])
                if self.draw(st.booleans())
                else (self.ws() + "." + self.ws()).join(node[1])
            )
        if kind == "list":
            return "[" + self.separated(node[1], self.expr) + "]"
        if kind == "map":
            return "{" + self.members(node[1]) + "}"
        return node[1] + self.ws() + "(" + self.separated(node[2], self.arg) + ")"

    def arg(self, node: tuple) -> str:
        return self.attribute(node) if node[0] == "attr" else self.expr(node)

    def attribute(self, node: tuple) -> str:
        return node[1] + self.ws() + "=" + self.ws() + self.expr(node[2])

    def separated(self, items: list, show) -> str:
        """Items of a list or call: `_nl? (x (, _nl? x)* ,? _nl?)?`."""
        out = self.maybe_newlines()
        for i, item in enumerate(items):
            if i:
                out += self.ws() + "," + self.maybe_newlines()
            out += show(item)
        if items and self.draw(st.booleans()):
            out += self.ws() + ","
        return out + (self.maybe_newlines() if items else "")

    def members(self, items: list) -> str:
        """Members of a block or map: `_nl? (m (_sep m)* _sep?)?`, `_sep` a new line or a comma."""
        out = self.maybe_newlines()
        for i, item in enumerate(items):
            if i:
                out += self.sep()
            out += self.member(item)
        if items and self.draw(st.booleans()):
            out += self.sep()
        return out + self.ws()

    def sep(self) -> str:
        if self.draw(st.booleans()):
            return self.ws() + "," + self.maybe_newlines()
        return self.newlines()

    def member(self, node: tuple) -> str:
        if node[0] == "attr":
            return self.attribute(node)
        if node[0] == "import":
            return "import" + self.ws() + self.string(node[1])
        _, kind, label, body = node
        head = kind + (self.gap() + self.string(label) if label is not None else "")
        return head + self.ws() + "{" + self.members(body) + "}"

    def document(self, items: list) -> str:
        out = self.maybe_newlines()
        for i, item in enumerate(items):
            if i:
                out += self.newlines()
            out += self.member(item)
        return out + self.maybe_newlines()


def suppressed(text: str) -> set[str]:
    """Return the places in the tree whose warnings the suppression comments drop.

    A DT213 warning at every place a span starts, filtered by the real suppression code.
    """
    document, _ = parse(Source("x.twin", text))
    assert document is not None
    warnings = [
        diag("DT213", place, Span(document.source, at, at)) for place, at in span_starts(document)
    ]
    kept = {d.message for d in apply_suppressions((document,), warnings)}
    return {w.message for w in warnings} - kept


def assert_formats_safely(text: str) -> str:
    original, diagnostics = parse(Source("in.twin", text))
    assert original is not None and diagnostics == [], diagnostics
    try:
        formatted, diagnostics = format_source(Source("in.twin", text))
    except FormatterError as exc:
        # Some layouts leave no canonical one with a suppression's items alone on its line.
        assert exc.problem.startswith("cannot keep what the `# dtec: ignore`"), exc.problem
        return assert_formats_safely(text.replace("dtec: ignore", "dtec- ignore"))
    assert formatted is not None and diagnostics == []
    assert suppressed(formatted) == suppressed(text)
    again, diagnostics = parse(Source("out.twin", formatted))
    assert again == original and diagnostics == []
    assert format_source(Source("out.twin", formatted))[0] == formatted
    assert [comment_text(c) for c in again.comments] == [comment_text(c) for c in original.comments]
    assert not re.search(r"[ \t]$", formatted, re.MULTILINE), "trailing whitespace"
    return formatted


@fuzz(300)
@given(documents, st.data())
def test_random_blueprints_format_safely(items: list, data: st.DataObject) -> None:
    assert_formats_safely(Layout(data).document(items))


# ---- (c) mutated shipped blueprints: diagnostics, never an exception ---------------------------


@st.composite
def mutated(draw: st.DrawFn) -> str:
    text = TEXTS[draw(st.sampled_from(sorted(TEXTS)))]
    by_token = draw(st.booleans())
    units = _TOKEN.findall(text) if by_token else list(text)
    for _ in range(draw(st.integers(1, 4))):
        if not units:
            break
        i = draw(st.integers(0, len(units) - 1))
        j = draw(st.integers(i, min(len(units), i + 3)))
        op = draw(st.sampled_from(["delete", "duplicate", "swap", "insert"]))
        if op == "delete":
            del units[i:j]
        elif op == "duplicate":
            units[i:i] = units[i:j]
        elif op == "swap":
            k = draw(st.integers(0, len(units) - 1))
            units[i], units[k] = units[k], units[i]
        else:
            units.insert(i, draw(st.sampled_from(_PIECES)))
    return "".join(units)


@fuzz(400)
@given(mutated())
def test_mutated_blueprints_never_crash(text: str) -> None:
    assert_no_crash(text)


# ---- (d) dtec's LALR loop and lark's own parser accept the same texts, with the same trees -------


def _lark_shape(text: str) -> object:
    """Return lark's parse tree as nested tuples, or None when lark rejects the text."""
    try:
        tree = parser._lark().parse(text)
    except UnexpectedInput:
        return None

    def shape(node: object) -> object:
        if isinstance(node, Tree):
            return (node.data, [shape(c) for c in node.children])
        return (node.type, str(node), node.start_pos)  # type: ignore[attr-defined]

    return shape(tree)


def _loop_shape(text: str) -> object:
    """Return what dtec's LALR loop builds, as the same nested tuples."""
    tables = parser._tables()

    def handler(name: str):
        return lambda children, level: (
            name,
            [c if isinstance(c, tuple) else (c.type, c.text, c.start) for c in children],
        )

    handlers = {name: handler(name) for _, name, inlined in tables.rules if not inlined}
    return lalr.run(tables, text, handlers, [])


@fuzz(1500)
@given(st.one_of(any_text, mutated()))
def test_lalr_loop_matches_lark(text: str) -> None:
    assert _loop_shape(text) == _lark_shape(text)


def test_saved_parse_tables_are_fresh(repo_root: Path) -> None:
    saved = (repo_root / "grammars" / "twin.tables.json").read_text(encoding="utf-8")
    assert saved == parser.tables_from_lark().to_json(parser.grammar_sha256()), (
        "run `python scripts/gen_parse_tables.py`"
    )
    assert lalr.from_json(saved, "the hash of another grammar") is None


@pytest.mark.parametrize("name", sorted(TEXTS))
def test_lalr_loop_matches_lark_on_shipped_blueprints(name: str) -> None:
    assert _loop_shape(TEXTS[name]) == _lark_shape(TEXTS[name]) is not None


@pytest.mark.parametrize("name", sorted(TEXTS))
def test_shipped_blueprints_lint_and_format(name: str) -> None:
    assert_no_crash(TEXTS[name])
    assert_formats_safely(TEXTS[name])


# ---- crashes found by the properties, kept as plain regression tests ---------------------------


def test_block_members_separated_by_commas_parse() -> None:
    document, diagnostics = parse(Source("x.twin", 'b "l" { a = 1, c = 2, }'))
    assert diagnostics == []
    assert [m.key for m in document.items[0].body] == ["a", "c"]


def test_huge_integer_literal_gives_a_diagnostic_not_a_crash() -> None:
    _, diagnostics = parse(Source("x.twin", "x = " + "1" * 5000 + "\n"))
    assert [(d.code, d.span.start_pos) for d in diagnostics] == [("DT106", (1, 5))]


@pytest.mark.parametrize(
    "text",
    ["x = " + "[" * 600 + "]" * 600 + "\n", "a {\n" * 600 + "}\n" * 600, "x = f(" * 300 + ")" * 300],
    ids=["lists", "blocks", "calls"],
)
def test_deep_nesting_gives_a_diagnostic_not_a_crash(text: str) -> None:
    result = analyse(Path("x.twin"), text=text, environ={})
    assert "DT002" in {d.code for d in result.diagnostics}
    assert any("nested more than" in d.message for d in result.diagnostics)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_import_of_a_fifo_does_not_hang(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.twin")
    code = (
        "import sys; from pathlib import Path; from dtec.analysis import analyse; "
        "analyse(Path(sys.argv[1]) / 'main.twin', text='import \"pipe.twin\"')"
    )
    # In a child process: the bug blocks forever on open(); a FIFO costs no memory, /dev/zero would.
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], timeout=5, check=True)


@pytest.mark.parametrize(
    "make",
    [
        lambda n: "x = {" + ", ".join(f"k{i} = {i}" for i in range(n)) + "}\n",
        lambda n: "x = [" + ", ".join(str(i) for i in range(n)) + "]\n",
        lambda n: "".join(f'b "{i}" {{\n  a = {i}\n}}\n' for i in range(n)),
    ],
    ids=["map", "list", "blocks"],
)
def test_long_sequences_are_parsed_in_linear_work(make, monkeypatch) -> None:
    copied: list[int] = []

    class Counting(lalr._Inline):
        def extend(self, items) -> None:
            copied.append(len(items))
            super().extend(items)

    monkeypatch.setattr(lalr, "_Inline", Counting)
    n = 2000
    document, diagnostics = parse(Source("x.twin", make(n)))
    assert document is not None and diagnostics == []
    assert sum(copied) < 5 * n  # copying the list per item would be n * n / 2
