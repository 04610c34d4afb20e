"""Property tests: no input crashes the linter or the formatter; formatting keeps meaning and comments."""

from __future__ import annotations

from pathlib import Path

from dtec.source import Source
from dtec.syntax.parser import parse


def test_block_members_separated_by_commas_parse() -> None:
    document, diagnostics = parse(Source("x.twin", 'b "l" { a = 1, c = 2, }'))
    assert diagnostics == []
    assert [m.key for m in document.items[0].body] == ["a", "c"]
