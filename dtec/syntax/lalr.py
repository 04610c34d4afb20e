"""Run the LALR table that lark builds from twin.lark in one tight loop, building nodes on each reduction.

lark's own loop creates a Token and a Tree per step and lexes with a contextual lexer, which was
most of a lint's time (docs/benchmarks.md, "Lint and compile"). This loop takes the grammar, the terminals and the table
from lark (twin.lark stays the one definition of the language) and leaves lark to explain errors:
when `run` returns None the caller re-parses with lark for its UnexpectedInput.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lark import Lark

OPENERS = frozenset({"LBRACE", "LBRACKET", "LPAREN"})
CLOSERS = frozenset({"RBRACE", "RBRACKET", "RPAREN"})

# A reduction's handler gets the rule's children (inlined `_rules` spliced in, `_TERMINALS` left out)
# and the number of brackets open around the node.
Handler = Callable[[list[Any], int], Any]


class Token:
    """One lexed terminal: its type, text and character offsets."""

    __slots__ = ("end", "start", "text", "type")

    def __init__(self, type: str, text: str, start: int, end: int) -> None:
        self.type = type
        self.text = text
        self.start = start
        self.end = end

    def __repr__(self) -> str:
        return f"Token({self.type}, {self.text!r}, {self.start})"


class _Inline(list):  # type: ignore[type-arg]
    """The children of an inlined `_rule`, spliced into the parent's."""


@dataclass(frozen=True)
class Tables:
    """What the loop needs: one regex over every terminal, keywords, and integer-coded actions."""

    lexer: re.Pattern[str]
    keywords: Mapping[str, Mapping[str, str]]  # regex terminal -> its text -> keyword terminal
    kept: frozenset[str]  # ignored terminals handed to the caller
    dropped: frozenset[str]  # terminals lark filters out of trees (named `_X`)
    actions: tuple[Mapping[str, int], ...]  # >= 0: shift to that state; < 0: reduce rule ~n
    rules: tuple[tuple[int, str, bool], ...]  # (size, name, inlined)
    start: int
    end: int

    def to_json(self, grammar_sha256: str) -> str:
        """Return the tables as stable JSON, stamped with the grammar they were built from."""
        document = {
            "grammar_sha256": grammar_sha256,
            "lexer": self.lexer.pattern,
            "keywords": self.keywords,
            "kept": sorted(self.kept),
            "dropped": sorted(self.dropped),
            "actions": self.actions,
            "rules": self.rules,
            "start": self.start,
            "end": self.end,
        }
        return json.dumps(document, indent=1, sort_keys=True) + "\n"


def from_json(text: str, grammar_sha256: str) -> Tables | None:
    """Return the tables in `text`, or None when they were built from another grammar."""
    document = json.loads(text)
    if document.get("grammar_sha256") != grammar_sha256:
        return None
    return Tables(
        re.compile(document["lexer"]),
        document["keywords"],
        frozenset(document["kept"]),
        frozenset(document["dropped"]),
        tuple(document["actions"]),
        tuple((n, name, inlined) for n, name, inlined in document["rules"]),
        document["start"],
        document["end"],
    )


def from_lark(lark: Lark, keep: Collection[str] = ()) -> Tables:
    """Take the terminals, rules and LALR table from a lark parser built with parser='lalr'.

    Ignored terminals are skipped, except those in `keep` (comments, for the formatter). States
    and rules are numbered in a canonical order, so the same grammar always gives the same tables.
    """
    from lark.lexer import PatternRE, PatternStr
    from lark.parsers.lalr_analysis import Shift

    terminals = list(lark.terminals)
    # lark's order: a regex alternation takes the first match, so the widest patterns go first.
    terminals.sort(key=lambda t: (-t.priority, -t.pattern.max_width, -len(t.pattern.value), t.name))
    strings = [t for t in terminals if isinstance(t.pattern, PatternStr)]
    keywords: dict[str, dict[str, str]] = {}
    embedded: set[str] = set()
    for regex in (t for t in terminals if isinstance(t.pattern, PatternRE)):
        for word in strings:
            if re.fullmatch(regex.pattern.to_regexp(), word.pattern.value) and word.priority == regex.priority:
                keywords.setdefault(regex.name, {})[word.pattern.value] = word.name
                embedded.add(word.name)
    skipped = set(lark.lexer_conf.ignore) - set(keep)
    blanks = "|".join(t.pattern.to_regexp() for t in terminals if t.name in skipped)
    tokens = "|".join(
        f"(?P<{t.name}>{t.pattern.to_regexp()})" for t in terminals if t.name not in embedded | skipped
    )
    # Blanks are skipped inside the token's match (possessive, so a stray character never backtracks);
    # an empty match at the end of the text ends it.
    lexer = re.compile(f"(?:{blanks})*+(?:{tokens}|\\Z)")

    # lark numbers states in set order, which changes with Python's hash seed: renumber them in the
    # order a walk from the start state finds them, and the rules by name and expansion.
    table = lark.parser.parser.parser.parse_table
    start = table.start_states["start"]
    order = [start]
    number = {start: 0}
    for state in order:  # grows while it is walked
        for symbol in sorted(table.states[state]):
            action, arg = table.states[state][symbol]
            if action is Shift and arg not in number:
                number[arg] = len(order)
                order.append(arg)
    reduced = {arg for row in table.states.values() for action, arg in row.values() if action is not Shift}
    rules = sorted(reduced, key=lambda r: (r.origin.name, [s.name for s in r.expansion]))
    rule_number = {rule: i for i, rule in enumerate(rules)}
    actions: list[dict[str, int]] = [{} for _ in number]
    for state, row in table.states.items():
        actions[number[state]] = {
            symbol: number[arg] if action is Shift else ~rule_number[arg]
            for symbol, (action, arg) in sorted(row.items())
        }
    shapes = tuple((len(r.expansion), r.origin.name, r.origin.name.startswith("_")) for r in rules)
    _skip_unit_states(actions, shapes)
    return Tables(
        lexer,
        keywords,
        frozenset(keep),
        frozenset(t.name for t in terminals if t.name.startswith("_")),
        tuple(actions),
        shapes,
        0,
        number[table.end_states["start"]],
    )


def _skip_unit_states(actions: list[dict[str, int]], rules: tuple[tuple[int, str, bool], ...]) -> None:
    """Send every shift and goto into a state whose one action is to reduce an inlined unit rule
    (`_expr: string`, `_nl: _NL+`) straight to where that reduction would go.

    Half of a blueprint's reductions are such renamings; they build nothing and cost a loop turn
    each. A state only reached for its reduction has no lookahead of its own to check (LALR
    lookaheads are merged, so the state it leads to accepts no more than it would have).
    """
    unit = {}
    for state, row in enumerate(actions):
        codes = set(row.values())
        if len(codes) == 1 and (code := codes.pop()) < 0 and rules[~code][0] == 1 and rules[~code][2]:
            unit[state] = rules[~code][1]
    changed = True
    while changed:  # chains (`_NL` -> `___nl_plus_6` -> `_nl` -> `_sep`) take a few rounds
        changed = False
        for row in actions:
            for symbol, code in row.items():
                if code in unit and unit[code] in row:
                    row[symbol] = row[unit[code]]
                    changed = True


def run(
    t: Tables, text: str, handlers: Mapping[str, Handler], comments: list[Token], pos: int = 0, endpos: int | None = None
) -> Any | None:
    """Parse `text[pos:endpos]` (offsets stay those of `text`); return the start rule's node, or None when it is not in the language."""
    actions, rules, keywords, kept, dropped = t.actions, t.rules, t.keywords, t.kept, t.dropped
    states = [t.start]
    values: list[Any] = []
    level = 0
    endpos = len(text) if endpos is None else endpos
    match = t.lexer.match
    while True:
        m = match(text, pos, endpos)
        if m is None:
            return None
        kind = m.lastgroup
        pos = m.end()
        if kind is None:  # nothing but blanks left
            kind, token = "$END", None
        else:
            word = m.group(kind)
            start = m.start(kind)
            if kind in kept:
                comments.append(Token(kind, word, start, pos))
                continue
            if kind in keywords:
                kind = keywords[kind].get(word, kind)
            token = Token(kind, word, start, pos)
        while True:
            action = actions[states[-1]].get(kind)
            if action is None:
                return None
            if action >= 0:
                break
            n, name, inlined = rules[~action]
            if inlined and n == 1:  # a unit `_rule` passes its one child up as it is
                del states[-1]
            else:
                if n:
                    popped = values[-n:]
                    del values[-n:]
                    del states[-n:]
                else:
                    popped = []
                children: list[Any] = _Inline() if inlined else []
                for value in popped:
                    if value.__class__ is _Inline:
                        if inlined and not children:
                            children = value  # a left-recursive list grows in place, not copied per item
                        else:
                            children.extend(value)
                    elif value is not None:
                        children.append(value)
                values.append(children if inlined else handlers[name](children, level))
            states.append(actions[states[-1]][name])
            if token is None and states[-1] == t.end:
                return values[-1]
        if token is None:
            return None
        states.append(action)
        values.append(None if kind in dropped else token)
        if kind in OPENERS:
            level += 1
        elif kind in CLOSERS:
            level -= 1
