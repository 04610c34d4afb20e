"""A blueprint's shell words (`setup` lines, a `venv` path): `$NAME` expands, nothing else does.

A target's `setup` line is a simple command: words split at spaces, grouped by '…' or "…".
Outside single quotes `$NAME` and `${NAME}` expand; every other character a shell would
interpret (`;`, `|`, `&`, `<`, `>`, `(`, `)`, backticks, `$(…)`, `\\`, globs, `~`, `#`) is refused
unless it stands inside quotes, where it is text. The launcher writes each word double-quoted
with its variables as `${NAME}`: a colleague's blueprint can name variables, never run code.
Light on purpose (the lint path).
"""

from __future__ import annotations

import re
from typing import NamedTuple

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PLAIN = re.compile(r"[A-Za-z0-9_@%+=:,./-]")  # unquoted characters that mean themselves
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class Part(NamedTuple):
    """Text, or (when `variable`) the name of a variable to expand."""

    text: str
    variable: bool = False


class WordError(ValueError):
    """A line that is not a sequence of plain words; the message says what the shell would do."""


def split_words(line: str) -> list[tuple[Part, ...]]:
    """Return the words of a setup line as parts, or raise WordError naming what is refused."""
    bad = _CONTROL.search(line)
    if bad is not None:
        what = "a line break" if bad.group() == "\n" else f"the control character U+{ord(bad.group()):04X}"
        raise WordError(f"holds {what}; write one command per list entry")
    words: list[tuple[Part, ...]] = []
    parts: list[Part] = []
    started = False
    i = 0
    while i < len(line):
        char = line[i]
        if char == " ":
            if started:
                words.append(_merge(parts))
                parts, started = [], False
            i += 1
        elif char == "'":
            end = line.find("'", i + 1)
            if end < 0:
                raise WordError("has an unclosed `'`")
            parts.append(Part(line[i + 1:end]))
            started, i = True, end + 1
        elif char == '"':
            i = _double(line, i + 1, parts)
            started = True
        elif char == "$":
            i = _variable(line, i, parts)
            started = True
        elif _PLAIN.match(char):
            parts.append(Part(char))
            started, i = True, i + 1
        else:
            raise WordError(f"holds {_describe(char)}, which the shell would interpret; quote it to mean the character itself")
    if started:
        words.append(_merge(parts))
    if not words:
        raise WordError("is empty")
    return words


def _double(line: str, i: int, parts: list[Part]) -> int:
    start = i
    while i < len(line) and line[i] != '"':
        char = line[i]
        if char == "$":
            parts.append(Part(line[start:i]))
            i = _variable(line, i, parts)
            start = i
            continue
        if char in "`\\":
            raise WordError(f"holds {_describe(char)} inside double quotes; use single quotes for text")
        i += 1
    if i >= len(line):
        raise WordError('has an unclosed `"`')
    parts.append(Part(line[start:i]))
    return i + 1


def _variable(line: str, i: int, parts: list[Part]) -> int:
    """Read `$NAME` or `${NAME}` at `line[i]`; anything else after `$` is refused."""
    braced = line.startswith("${", i)
    match = _NAME.match(line, i + (2 if braced else 1))
    if match is None or (braced and not line.startswith("}", match.end())):
        shown = line[i:i + 2] if braced or line.startswith("$(", i) else "$"
        raise WordError(f"holds `{shown}` not followed by a variable name: only `$NAME` and `${{NAME}}` expand; put a `$` meant as text in single quotes")
    parts.append(Part(match.group(), variable=True))
    return match.end() + (1 if braced else 0)


def _merge(parts: list[Part]) -> tuple[Part, ...]:
    out: list[Part] = []
    for part in parts:
        if out and not part.variable and not out[-1].variable:
            out[-1] = Part(out[-1].text + part.text)
        elif part.variable or part.text:
            out.append(part)
    return tuple(out) or (Part(""),)


def _describe(char: str) -> str:
    return {"\t": "a tab", "`": "a backtick", "\\": "a backslash"}.get(char, f"`{char}`")


def word_variables(words: list[tuple[Part, ...]]) -> list[str]:
    """Return the variables the words expand, in order."""
    return [p.text for word in words for p in word if p.variable]


def render_word(word: tuple[Part, ...]) -> str:
    """Return a word for bash: bare when plain, else double-quoted with `${NAME}` for variables."""
    word = _merge(list(word))
    if all(not p.variable for p in word) and word[0].text and all(_PLAIN.match(c) for c in word[0].text):
        return word[0].text
    out = []
    for part in word:
        out.append("${" + part.text + "}" if part.variable else re.sub(r'([$`"\\])', r"\\\1", part.text))
    return '"' + "".join(out) + '"'


def render_line(line: str) -> str:
    """Return a checked setup line as bash reads it: its words, each quoted by render_word."""
    return " ".join(render_word(w) for w in split_words(line))
