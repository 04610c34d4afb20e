"""Lint many blueprints (dtec.analysis for each, shared among processes), with no heavy import."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from dtec.analysis import analyse
from dtec.diagnostics import Diagnostic
from dtec.host import cpu_count


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
