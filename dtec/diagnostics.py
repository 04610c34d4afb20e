"""Diagnostics: what every pass returns when something is wrong with a blueprint."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from dtec.rules import Rule, rule
from dtec.source import Span


class Severity(str, Enum):
    """How bad a diagnostic is; errors make `lint` fail and `compile` refuse."""

    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


@dataclass(frozen=True, slots=True)
class Related:
    """A secondary place that explains the primary one (the other duplicate, the cycle's start)."""

    span: Span
    message: str


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """One problem: a rule, a terse message, where it is, and what to do about it."""

    rule: Rule
    message: str
    span: Span | None
    help: str | None = None
    related: tuple[Related, ...] = ()

    @property
    def code(self) -> str:
        """Return the rule's code, e.g. `DT101`."""
        return self.rule.code

    @property
    def severity(self) -> Severity:
        """Return the rule's severity."""
        return Severity(self.rule.severity)

    @property
    def sort_key(self) -> tuple:
        """Order by file, then position, then code, so output is deterministic."""
        if self.span is None:
            return ("", 0, 0, self.code, self.message)
        return (self.span.path, self.span.start, self.span.end, self.code, self.message)


def diag(
    code: str,
    message: str,
    span: Span | None,
    help: str | None = None,
    related: tuple[Related, ...] | list[Related] = (),
) -> Diagnostic:
    """Build a diagnostic for the rule with this code."""
    return Diagnostic(rule(code), message, span, help, tuple(related))


def has_errors(diagnostics: list[Diagnostic]) -> bool:
    """Return whether any diagnostic is an error."""
    return any(d.severity is Severity.ERROR for d in diagnostics)
