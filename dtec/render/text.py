"""Human-readable diagnostics like rustc and ruff: header, location, excerpt, carets, help."""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

from dtec.diagnostics import Diagnostic, Severity
from dtec.render.location import display_path
from dtec.source import Span

TAB_WIDTH = 4
_SEVERITY_COLOR = {Severity.ERROR: "1;31", Severity.WARNING: "1;33", Severity.INFO: "1;36"}
_GUTTER_COLOR = "1;34"
# C0 controls and DEL become their Unicode "control pictures" so that a blueprint cannot move the
# cursor or recolour the terminal through an excerpt or a message.
_PICTURES = {i: 0x2400 + i for i in range(32)} | {0x7F: 0x2421}


def render_text(diagnostics: Sequence[Diagnostic], *, color: bool = False) -> str:
    """Render diagnostics, separated by blank lines; an empty string when there are none."""
    return "\n".join(_Block(d, color).render() + "\n" for d in diagnostics)


class _Block:
    """One diagnostic's lines; the gutter width is shared by all its excerpts."""

    def __init__(self, d: Diagnostic, color: bool) -> None:
        self.d = d
        self.color = color
        spans = [s for s in (d.span, *(r.span for r in d.related)) if s is not None]
        self.width = max([1, *(len(str(n)) for s in spans for n in _excerpt_lines(s))])

    def paint(self, text: str, sgr: str) -> str:
        return f"\x1b[{sgr}m{text}\x1b[0m" if self.color and text else text

    def render(self) -> str:
        d = self.d
        severity = self.paint(d.severity.value, _SEVERITY_COLOR[d.severity])
        lines = [f"{severity}{self.paint(f'[{d.code}]', '1')}: {_clean(d.message)}"]
        if d.span is not None:
            lines += self.excerpt(d.span, "^", _SEVERITY_COLOR[d.severity])
        for related in d.related:
            lines.append(f"{self.paint('note', '1')}: {_clean(related.message)}")
            lines += self.excerpt(related.span, "-", _GUTTER_COLOR)
        if d.help:
            if d.span is not None or d.related:
                lines.append(self.gutter())
            equals = self.paint("=", _GUTTER_COLOR)
            lines.append(f"{' ' * self.width} {equals} {self.paint('help', '1')}: {_clean(d.help)}")
        return "\n".join(lines)

    def gutter(self, number: int | None = None) -> str:
        label = str(number).rjust(self.width) if number is not None else " " * self.width
        return self.paint(f"{label} |", _GUTTER_COLOR)

    def excerpt(self, span: Span, mark: str, sgr: str) -> list[str]:
        arrow = self.paint("-->", _GUTTER_COLOR)
        if not span.source.text:  # a file that could not be read: nothing to quote
            return [f"{' ' * self.width}{arrow} {_clean(display_path(span.path))}"]
        line, col = span.start_pos
        end_line, end_col = _visible_end(span)
        text = span.source.line_text(line)
        shown, _ = _expand(text)
        pad = _expand(text[: col - 1])[1]
        marked = text[col - 1 : end_col - 1] if end_line == line else text[col - 1 :]
        carets = mark * max(1, _expand(marked, pad)[1] - pad)
        # A span over several lines is underlined to the end of its first line; the end is named.
        tail = f" …to {end_line}:{end_col}" if end_line != line else ""
        return [
            f"{' ' * self.width}{arrow} {_clean(display_path(span.path))}:{line}:{col}",
            self.gutter(),
            f"{self.gutter(line)} {shown}".rstrip(),
            f"{self.gutter()} {' ' * pad}{self.paint(carets, sgr)}{tail}",
        ]


def _visible_end(span: Span) -> tuple[int, int]:
    """Return the end position, pulled back onto the previous line when it only adds the newline."""
    line, _ = span.start_pos
    end_line, end_col = span.end_pos
    if end_line > line and end_col == 1:
        end_line -= 1
        end_col = len(span.source.line_text(end_line)) + 1
    return end_line, end_col


def _excerpt_lines(span: Span) -> tuple[int, ...]:
    return (span.start_pos[0], _visible_end(span)[0])


def _expand(text: str, start: int = 0) -> tuple[str, int]:
    """Return `text` as a terminal shows it (tab stops of 4, controls pictured), and its width."""
    out: list[str] = []
    column = start
    for char in text:
        if char == "\t":
            spaces = TAB_WIDTH - column % TAB_WIDTH
            out.append(" " * spaces)
            column += spaces
            continue
        char = char.translate(_PICTURES)
        out.append(char)
        column += _width(char)
    return "".join(out), column


def _width(char: str) -> int:
    if unicodedata.combining(char) or unicodedata.category(char) in ("Mn", "Me", "Cf"):
        return 0
    return 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1


def _clean(text: str) -> str:
    return text.translate(_PICTURES)
