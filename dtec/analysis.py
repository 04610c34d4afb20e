"""The front end of lint and compile: load, `--set`, check, cross-block checks, plan, suppress."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from dtec.diagnostics import Diagnostic, diag, has_errors
from dtec.lang.blueprint import Blueprint
from dtec.lang.check import check
from dtec.lang.codefolders import BundledCode
from dtec.lang.files import check_files
from dtec.lang.loader import Reader, load, project_root
from dtec.lang.semantics import check_semantics
from dtec.lang.sets import apply_sets
from dtec.lang.sweep import check_sweep, has_sweep
from dtec.lang.weights import check_weights
from dtec.lang.suppress import apply_suppressions
from dtec.plan import Plan, plan
from dtec.source import Source, Span, read_source
from dtec.syntax import ast


@dataclass(frozen=True)
class FileResult:
    """The outcome of analysing one file: the blueprint, its plans per target, and diagnostics."""

    path: Path
    blueprint: Blueprint | None
    diagnostics: tuple[Diagnostic, ...]
    plans: dict[str, Plan] = field(default_factory=dict)
    code: BundledCode = field(default_factory=BundledCode)  # the code folders, read for the bundle

    @property
    def ok(self) -> bool:
        """Return whether there is no error."""
        return not has_errors(list(self.diagnostics))


def analyse(
    path: Path,
    text: str | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    targets: Sequence[str] | None = None,
    sets: Sequence[str] = (),
    machine_dirs: Sequence[Path] = (),
    sweep: bool = True,
    sharing: int = 1,
    read: Reader = read_source,
) -> FileResult:
    """Check one blueprint and plan it onto `targets` (None: every target it declares).

    `sweep=False` checks the blueprint without its `sweep` block: what one trial (or a probe of
    the sweep's values) compiles, as one of `sharing` trials running at once (the study's own
    plan is no trial's, so its id does not change with `parallel`). `read` reads imported files
    (an editor's unsaved buffers).
    """
    environ = os.environ if environ is None else environ
    program, diagnostics = load(path, text, environ, read)
    if not program.documents:
        return FileResult(path, None, tuple(diagnostics))
    loaded = len(diagnostics)
    program, found = apply_sets(program, list(sets))
    diagnostics += found
    if not sweep:
        program = _without_sweep(program)
    blueprint, found = check(program, environ, targets)
    diagnostics += found
    root = project_root(path, environ)
    found, facts, code = check_files(blueprint, root)
    diagnostics += found
    diagnostics += check_weights(blueprint, root, environ)
    diagnostics += check_semantics(blueprint, errors_so_far=has_errors(diagnostics), facts=facts)
    plans: dict[str, Plan] = {}
    if not has_errors(diagnostics):
        from dtec.machines import load_machines

        catalog = load_machines(tuple(machine_dirs))
        diagnostics += [
            diag("DT214", f"machine profile ignored: {e.message}", Span(Source(str(e.path), ""), 0, 0) if e.path else None, "fix or remove the file")
            for e in catalog.errors
        ]
        names = list(blueprint.get("target") or {}) if targets is None else list(targets)
        for name in names:
            planned, found = plan(blueprint, name, catalog, facts, sharing)
            diagnostics += found
            if planned is not None:
                plans[name] = planned
    if sweep and has_sweep(blueprint) and not has_errors(diagnostics):

        def probe(extra: Sequence[str]) -> tuple[Diagnostic, ...]:
            return analyse(
                path, text, environ, targets=targets, sets=[*sets, *extra], machine_dirs=machine_dirs, sweep=False,
                sharing=blueprint.get("sweep", "parallel") or 1, read=read,
            ).diagnostics

        diagnostics += check_sweep(blueprint, plans, probe)
    if program.documents[0].recovered:
        # The checks saw a file without its broken items: keep what they found inside the items
        # they saw, not what the missing ones would settle (a required block, a reference).
        main = program.documents[0]
        items = [i.span for i in main.items]
        diagnostics = diagnostics[:loaded] + [d for d in diagnostics[loaded:] if _inside(d, main.source.path, items)]
    diagnostics = apply_suppressions(program.documents, diagnostics)
    return FileResult(path, blueprint, tuple(sorted(diagnostics, key=lambda d: d.sort_key)), plans, code)


def _inside(d: Diagnostic, main: str, spans: Sequence[Span]) -> bool:
    """Return whether a diagnostic of a file with a syntax error stands without its broken items:
    in another file, or on text inside one of `spans` and not an unresolved reference.

    An empty span marks something missing (a required block is reported at the first item), and a
    reference may name a block in the text that does not parse.
    """
    if d.span is None or d.code == "DT112":
        return False
    start, end = d.span.start, d.span.end
    return d.span.path != main or (start < end and any(s.start <= start and end <= s.end for s in spans))


def _without_sweep(program):
    """Return the program without its `sweep` blocks."""
    documents = tuple(replace(d, items=tuple(i for i in d.items if not (isinstance(i, ast.Block) and i.kind == "sweep"))) for d in program.documents)
    return replace(program, documents=documents)
