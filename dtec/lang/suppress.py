"""`# dtec: ignore[DTnnn]` comments: drop the warnings they name and report the unused ones."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from dtec.diagnostics import Diagnostic, Severity, diag
from dtec.rules import RULES
from dtec.source import Span
from dtec.syntax import ast

_DIRECTIVE = re.compile(r"#\s*dtec\s*:\s*ignore\b(.*)$")
_CODES = re.compile(r"\[([^\]]*)\]\s*$")


@dataclass
class _Suppression:
    line: int
    codes: dict[str, bool]  # code → used
    span: Span
    path: str = field(default="")


def apply_suppressions(
    documents: tuple[ast.Document, ...], diagnostics: list[Diagnostic]
) -> list[Diagnostic]:
    """Return the diagnostics with suppressed warnings removed and suppression problems added."""
    found: list[Diagnostic] = []
    suppressions: dict[tuple[str, int], _Suppression] = {}
    for document in documents:
        for comment in document.comments:
            parsed = _parse(document, comment, found)
            if parsed is not None:
                suppressions[(comment.span.path, parsed.line)] = parsed
    if not suppressions:
        return diagnostics + found
    kept: list[Diagnostic] = []
    for d in diagnostics:
        if d.span is not None and d.severity is not Severity.ERROR:
            entry = suppressions.get((d.span.path, d.span.start_pos[0]))
            if entry is not None and d.code in entry.codes:
                entry.codes[d.code] = True
                continue
        kept.append(d)
    for entry in suppressions.values():
        for code, used in entry.codes.items():
            if not used:
                found.append(
                    diag(
                        "DT120",
                        f"`{code}` is suppressed here but not reported",
                        entry.span,
                        f"remove `{code}` from the comment",
                    )
                )
    return kept + found


def _parse(document: ast.Document, comment: ast.Comment, found: list[Diagnostic]) -> _Suppression | None:
    match = _DIRECTIVE.match(comment.text)
    if match is None:
        return None
    codes = _CODES.match(match.group(1).strip()) if match.group(1).strip() else None
    if codes is None:
        found.append(
            diag(
                "DT121",
                "suppression without codes",
                comment.span,
                "name the rules: `# dtec: ignore[DT115]`; errors cannot be suppressed",
            )
        )
        return None
    names = [c.strip().upper() for c in codes.group(1).split(",") if c.strip()]
    valid: dict[str, bool] = {}
    for name in names:
        rule = RULES.get(name)
        if rule is None:
            found.append(diag("DT121", f"`{name}` is not a dtec rule", comment.span, "run `dtec explain` to list the rules"))
        elif rule.severity == "error":
            found.append(diag("DT121", f"`{name}` is an error and cannot be suppressed", comment.span, "fix the error instead"))
        else:
            valid[name] = False
    if not valid:
        return None
    return _Suppression(target_line(document, comment), valid, comment.span)


def is_suppression(comment: ast.Comment) -> bool:
    """Tell whether a comment is a `# dtec: ignore` directive (valid or not)."""
    return _DIRECTIVE.match(comment.text) is not None


def target_line(document: ast.Document, comment: ast.Comment) -> int:
    """Return the line a suppression comment applies to."""
    line, column = comment.span.start_pos
    # A comment alone on its line applies to the next line; a trailing one to its own line.
    before = document.source.line_text(line)[: column - 1]
    return line + 1 if not before.strip() else line
