"""Shared helpers: statistics, targets, the machine description, paths."""

from __future__ import annotations

import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BLUEPRINTS = ROOT / "blueprints"
HERE = Path(__file__).resolve().parent


def summary(values: Sequence[float]) -> dict:
    """Median, min, max, mean and count of `values` (empty: all None)."""
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return {"median": None, "min": None, "max": None, "mean": None, "n": 0}
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "mean": statistics.fmean(values),
        "n": len(values),
    }


def target(
    name: str, value: float | None, limit: float, unit: str, better: str = "lower", note: str = ""
) -> dict:
    """A target of the issue: `value` against `limit` (`better` is "lower" or "higher")."""
    if value is None:
        met = None
    else:
        met = value <= limit if better == "lower" else value >= limit
    return {
        "name": name,
        "value": value,
        "limit": limit,
        "unit": unit,
        "better": better,
        "met": met,
        "note": note,
    }


def time_calls(fn: Callable[[], object], repeat: int, warmup: int = 1) -> list[float]:
    """Seconds of `repeat` calls of `fn`, after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def fit_exponent(sizes: Sequence[float], times: Sequence[float]) -> float | None:
    """Least-squares slope of log(time) against log(size): t ~ size**k."""
    points = [(math.log(n), math.log(t)) for n, t in zip(sizes, times) if n > 0 and t and t > 0]
    if len(points) < 2:
        return None
    mx = statistics.fmean(x for x, _ in points)
    my = statistics.fmean(y for _, y in points)
    sxx = sum((x - mx) ** 2 for x, _ in points)
    if sxx == 0:
        return None
    return sum((x - mx) * (y - my) for x, y in points) / sxx


def machine() -> dict:
    """What the numbers ran on."""
    info = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": _cpu_model(),
        "cpus": os.cpu_count(),
        "memory_gib": _memory_gib(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
    for package in ("torch", "deepspeed", "lark", "pydantic", "jinja2"):
        try:
            from importlib.metadata import version

            info[package] = version(package)
        except Exception:  # noqa: BLE001 - absent is fine
            info[package] = None
    info["git_commit"] = _git("rev-parse", "HEAD")
    info["git_dirty"] = bool(_git("status", "--porcelain", "--", "dtec", "backends", "grammars"))
    return info


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def python_executable() -> str:
    """The interpreter itself (not a shim such as pyenv's, which adds ~0.1 s to every start)."""
    return sys.executable


def dtec_executable() -> str | None:
    """The `dtec` console script installed next to the interpreter, if any."""
    candidate = Path(sys.executable).parent / "dtec"
    return str(candidate) if candidate.exists() else None


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)
