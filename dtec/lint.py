"""Lint blueprints: load, check, and run every pass that needs no heavy import."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from dtec.diagnostics import Diagnostic
from dtec.lang.blueprint import Blueprint
from dtec.lang.check import check
from dtec.lang.loader import load
from dtec.lang.semantics import check_semantics
from dtec.lang.suppress import apply_suppressions


@dataclass(frozen=True)
class FileResult:
    """The outcome of linting one file."""

    path: Path
    blueprint: Blueprint | None
    diagnostics: tuple[Diagnostic, ...]


def analyse(
    path: Path, text: str | None = None, environ: Mapping[str, str] | None = None
) -> FileResult:
    """Load and check one blueprint (syntax, vocabulary, types, references, semantics)."""
    program, diagnostics = load(path, text)
    blueprint = None
    if program.documents:
        blueprint, found = check(program, os.environ if environ is None else environ)
        diagnostics += found
        diagnostics += check_semantics(blueprint)
        diagnostics = apply_suppressions(program.documents, diagnostics)
    return FileResult(path, blueprint, tuple(sorted(diagnostics, key=lambda d: d.sort_key)))


def expand(paths: Iterable[Path]) -> list[Path]:
    """Expand folders into the `.twin` files below them, sorted; files are kept as given."""
    result: list[Path] = []
    for path in paths:
        if path.is_dir():
            result.extend(sorted(p for p in path.rglob("*.twin") if p.is_file()))
        else:
            result.append(path)
    return result
