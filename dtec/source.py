"""Source files and spans: offsets stored, lines and columns computed on demand."""

from __future__ import annotations

import re
import stat
from bisect import bisect_right
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from dtec.units import MIB

MAX_BYTES = 16 * MIB


# A CR not followed by LF: a line break in old Mac files, and in every editor, but not in the grammar.
_LONE_CR = re.compile(r"\r(?!\n)")


@dataclass(frozen=True, slots=True)
class Source:
    """One blueprint's text with a line index; columns count Unicode code points.

    A lone CR (CR-only line endings) becomes LF, as editors show it: one character for another,
    so every offset and column stays that of the file.
    """

    path: str
    text: str
    _line_starts: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if "\r" in self.text:
            object.__setattr__(self, "text", _LONE_CR.sub("\n", self.text))
        starts = [0]
        find = self.text.find
        pos = find("\n")
        while pos != -1:
            starts.append(pos + 1)
            pos = find("\n", pos + 1)
        object.__setattr__(self, "_line_starts", tuple(starts))

    def position(self, offset: int) -> tuple[int, int]:
        """Return the 1-based (line, column) of a character offset."""
        offset = max(0, min(offset, len(self.text)))
        line = bisect_right(self._line_starts, offset)
        return line, offset - self._line_starts[line - 1] + 1

    def line_start(self, line: int) -> int:
        """Return the offset of line `line`'s first character (1-based; clamped to the text)."""
        line = max(1, min(line, len(self._line_starts)))
        return self._line_starts[line - 1]

    def line_text(self, line: int) -> str:
        """Return line `line` (1-based) without its newline."""
        if not 1 <= line <= len(self._line_starts):
            return ""
        start = self._line_starts[line - 1]
        end = self.text.find("\n", start)
        return self.text[start : end if end != -1 else len(self.text)].rstrip("\r")

    @property
    def line_count(self) -> int:
        """Return the number of lines."""
        return len(self._line_starts)


class Span(NamedTuple):
    """A half-open range of character offsets in one source (a tuple: the parser makes hundreds per file)."""

    source: Source
    start: int
    end: int

    @property
    def path(self) -> str:
        """Return the file the span is in."""
        return self.source.path

    @property
    def start_pos(self) -> tuple[int, int]:
        """Return the 1-based (line, column) of the first character."""
        return self.source.position(self.start)

    @property
    def end_pos(self) -> tuple[int, int]:
        """Return the 1-based (line, column) just past the last character."""
        return self.source.position(self.end)

    def __repr__(self) -> str:
        line, col = self.start_pos
        return f"Span({Path(self.path).name}:{line}:{col})"


def read_source(path: Path, name: str | None = None) -> Source | str:
    """Read a blueprint (shown as `name`, by default its path), or return why it cannot be read (a sentence for a diagnostic)."""
    try:
        info = path.stat()
        if stat.S_ISDIR(info.st_mode):
            return "is a folder, not a file"
        # A FIFO or a device (`/dev/zero`) would block or never end.
        if not stat.S_ISREG(info.st_mode):
            return "not a regular file"
        if info.st_size > MAX_BYTES:
            return f"too large ({info.st_size:,} bytes; blueprints are at most {MAX_BYTES:,})"
        data = path.read_bytes()
    except FileNotFoundError:
        return "file not found"
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
        return f"cannot read file: {getattr(exc, 'strerror', None) or exc}"
    if b"\0" in data:
        return "binary file (contains NUL bytes)"
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return f"not valid UTF-8 (byte {exc.start})"
    return Source(str(path) if name is None else name, text)


COMMAND_LINE = "command line"  # where diagnostics about a command-line argument are shown


def argument_span(flag: str, value: str) -> Span:
    """Return the span of `value` in the argument `flag value`, shown as typed on the command line."""
    text = f"{flag} {value}" if flag else value
    return Span(Source(COMMAND_LINE, text), len(text) - len(value), len(text))
