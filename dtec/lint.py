"""Lint blueprints: load, check, and plan onto each target, with no heavy import."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from dtec.diagnostics import Diagnostic, diag, has_errors
from dtec.lang.blueprint import Blueprint
from dtec.lang.check import check
from dtec.lang.files import check_files
from dtec.lang.loader import load, project_root
from dtec.lang.overrides import apply_sets
from dtec.lang.semantics import check_semantics
from dtec.lang.suppress import apply_suppressions
from dtec.plan import Plan, plan
from dtec.source import Source, Span


@dataclass(frozen=True)
class FileResult:
    """The outcome of analysing one file: the blueprint, its plans per target, and diagnostics."""

    path: Path
    blueprint: Blueprint | None
    diagnostics: tuple[Diagnostic, ...]
    plans: dict[str, Plan] = field(default_factory=dict)

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
) -> FileResult:
    """Check one blueprint and plan it onto `targets` (None: every target it declares)."""
    environ = os.environ if environ is None else environ
    program, diagnostics = load(path, text, environ)
    if not program.documents:
        return FileResult(path, None, tuple(diagnostics))
    program, found = apply_sets(program, list(sets))
    diagnostics += found
    blueprint, found = check(program, environ)
    diagnostics += found
    found, facts = check_files(blueprint, project_root(path, environ))
    diagnostics += found
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
            planned, found = plan(blueprint, name, catalog)
            diagnostics += found
            if planned is not None:
                plans[name] = planned
    diagnostics = apply_suppressions(program.documents, diagnostics)
    return FileResult(path, blueprint, tuple(sorted(diagnostics, key=lambda d: d.sort_key)), plans)


@dataclass(frozen=True)
class Crash:
    """A file whose analysis raised an exception dtec did not expect: a bug, reported apart."""

    path: Path
    error: str


# Below this many files a pool costs more (forking, pickling diagnostics) than it saves.
_POOL_MIN_FILES = 48


def lint_files(
    paths: Sequence[Path],
    *,
    jobs: int = 0,
    targets: Sequence[str] | None = None,
    machine_dirs: Sequence[Path] = (),
) -> list[tuple[Diagnostic, ...] | Crash]:
    """Return each file's diagnostics (or its crash), in order, sharing many files among `jobs` processes (0: one per CPU)."""
    check = partial(_diagnostics, targets=targets, machine_dirs=tuple(machine_dirs))
    jobs = jobs or cpu_count()
    if jobs < 2 or len(paths) < _POOL_MIN_FILES:
        return [check(path) for path in paths]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    if "fork" not in multiprocessing.get_all_start_methods():
        return [check(path) for path in paths]
    # The first file loads what every file needs (parse tables, machine catalogue) before the
    # fork, so the workers inherit it instead of each loading it.
    first = check(paths[0])
    chunk = max(1, len(paths) // (jobs * 4))
    try:
        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("fork")) as pool:
            return [first, *pool.map(check, paths[1:], chunksize=chunk)]
    except BrokenProcessPool:  # a worker died (out of memory, killed): do it here instead
        return [first, *(check(path) for path in paths[1:])]


def cpu_count() -> int:
    """Return the CPUs this process may run on (its affinity, where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _diagnostics(
    path: Path, *, targets: Sequence[str] | None, machine_dirs: Sequence[Path]
) -> tuple[Diagnostic, ...] | Crash:
    try:
        return analyse(path, targets=targets, machine_dirs=machine_dirs).diagnostics
    except Exception as exc:  # noqa: BLE001 - one file's bug must not hide the other files' reports
        return Crash(path, f"{type(exc).__name__}: {exc}")


def expand(paths: Iterable[Path]) -> list[Path]:
    """Expand folders into the `.twin` files below them, sorted; files are kept as given."""
    result: list[Path] = []
    for path in paths:
        if path.is_dir():
            result.extend(sorted(p for p in path.rglob("*.twin") if p.is_file()))
        else:
            result.append(path)
    return result
