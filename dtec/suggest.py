"""Did-you-mean suggestions for unknown names."""

from __future__ import annotations

from collections.abc import Iterable
from difflib import get_close_matches


def closest(name: str, choices: Iterable[str]) -> str | None:
    """Return the choice closest to `name`, if any is close enough."""
    matches = get_close_matches(name, list(choices), n=1, cutoff=0.6)
    if not matches:
        lowered = {c.lower(): c for c in choices}
        return lowered.get(name.lower())
    return matches[0]


def did_you_mean(name: str, choices: Iterable[str], quote: str = "`") -> str | None:
    """Return `did you mean `x`?` for the closest choice, or None."""
    return suggestion(closest(name, choices), quote)


def suggestion(match: str | None, quote: str = "`") -> str | None:
    """Return `did you mean `x`?` for a match found otherwise (a machine by alias), or None."""
    return f"did you mean {quote}{match}{quote}?" if match else None
