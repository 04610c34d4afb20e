"""Compile latency: in-process per shipped blueprint and target; whole processes next to `python -c pass`."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from benchmarks.blueprint_gen import shipped
from benchmarks.common import (
    ROOT,
    dtec_executable,
    log,
    python_executable,
    summary,
    target,
    time_calls,
)

QUICKSTART = ROOT / "blueprints" / "quickstart.twin"


def declared_targets(text: str) -> list[str]:
    return re.findall(r'^\s*target\s+"([^"]+)"', text, flags=re.M)


def in_process(repeat: int) -> dict:
    """Median compile time per (blueprint, target): its declared targets and `local`."""
    from dtec.compiler import compile_blueprint

    rows = []
    for path in shipped():
        text = path.read_text()
        for name in declared_targets(text) + ["local"]:
            bundle, diagnostics = compile_blueprint(
                path, name, text=text, environ={}
            )  # also warms up
            row = {"blueprint": path.name, "target": name, "compiled": bundle is not None}
            if bundle is None:
                row["errors"] = sorted(
                    {d.code for d in diagnostics if str(d.severity).lower().endswith("error")}
                )
            times = time_calls(
                lambda: compile_blueprint(path, name, text=text, environ={}), repeat, warmup=0
            )
            row["ms"] = summary([1000 * t for t in times])
            rows.append(row)
    return {"repeat": repeat, "rows": rows}


def phases(repeat: int) -> dict:
    """Where the quickstart's in-process compile for `local` goes: check+plan, IR, generation."""
    from dtec.compiler import build, compile_blueprint
    from dtec.analysis import analyse
    from dtec.syntax.parser import parse
    from dtec.source import Source

    text = QUICKSTART.read_text()
    steps = {
        "parse": lambda: parse(Source(str(QUICKSTART), text)),
        "lint (analyse: load, check, plan)": lambda: analyse(
            QUICKSTART, text, {}, targets=["local"]
        ),
        "build (analyse + IR)": lambda: build(QUICKSTART, "local", text=text, environ={}),
        "compile (build + generate)": lambda: compile_blueprint(
            QUICKSTART, "local", text=text, environ={}
        ),
    }
    out = {}
    for name, fn in steps.items():
        try:
            out[name] = summary([1000 * t for t in time_calls(fn, repeat, warmup=2)])
        except Exception as exc:  # noqa: BLE001 - an internal API may move; report, do not fail
            out[name] = {"error": f"{type(exc).__name__}: {exc}"}
    return out


def processes(rounds: int) -> dict:
    """Wall time of whole processes, alternated round by round so drift hits all alike.

    `dtec ...` is the console script, which imports the installed dtec (its path is recorded:
    a wheel install has its bytecode compiled at install time). `python -m dtec ...` runs from
    the checkout (the working directory is the repository), as this environment runs it, and
    again with a bytecode cache (a private `PYTHONPYCACHEPREFIX` folder, PYTHONDONTWRITEBYTECODE
    unset): under PYTHONDONTWRITEBYTECODE=1 a checkout compiles every dtec module from source in
    every process.
    """
    python, dtec = python_executable(), dtec_executable()
    out_dir = Path(tempfile.mkdtemp(prefix="dtec-bench-compile-"))
    cache_env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    cache_env["PYTHONPYCACHEPREFIX"] = str(out_dir / "pycache")
    lint_args = ["lint", str(QUICKSTART)]
    compile_args = ["compile", str(QUICKSTART), "-t", "local", "-o", str(out_dir / "bundle")]
    module = [python, "-m", "dtec"]
    commands: dict[str, tuple[list[str], dict | None]] = {
        "python -c pass": ([python, "-c", "pass"], None)
    }
    if dtec:
        commands["dtec lint"] = ([dtec, *lint_args], None)
        commands["dtec compile"] = ([dtec, *compile_args], None)
    commands["python -m dtec lint"] = ([*module, *lint_args], None)
    commands["python -m dtec lint, bytecode cache"] = ([*module, *lint_args], cache_env)
    commands["python -m dtec compile, bytecode cache"] = ([*module, *compile_args], cache_env)
    installed = subprocess.run(
        [python, "-c", "import dtec; print(dtec.__file__)"],
        capture_output=True,
        text=True,
        cwd=tempfile.gettempdir(),
    ).stdout.strip()
    times: dict[str, list[float]] = {name: [] for name in commands}
    failures: dict[str, str] = {}
    for command, env in commands.values():  # one untimed run each: page cache, the bytecode cache
        subprocess.run(command, capture_output=True, env=env, cwd=ROOT)
    for r in range(rounds):
        order = list(commands) if r % 2 == 0 else list(reversed(commands))
        for name in order:
            command, env = commands[name]
            start = time.perf_counter()
            done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT)
            times[name].append(time.perf_counter() - start)
            if done.returncode != 0:
                failures[name] = (done.stdout + done.stderr)[-500:]
    shutil.rmtree(out_dir, ignore_errors=True)
    result = {
        "rounds": rounds,
        "seconds": {name: summary(values) for name, values in times.items()},
    }
    base = times["python -c pass"]
    result["minus_python_seconds"] = {
        name: summary([t - b for t, b in zip(values, base)])
        for name, values in times.items()
        if name != "python -c pass"
    }
    result["failures"] = failures
    result["lint_command"] = "dtec lint" if dtec else "python -m dtec lint"
    result["console_script_imports"] = installed
    result["console_script_is_checkout"] = (
        Path(installed).resolve().is_relative_to(ROOT) if installed else None
    )
    result["environment"] = {"PYTHONDONTWRITEBYTECODE": os.environ.get("PYTHONDONTWRITEBYTECODE")}
    return result


def check(rounds: int) -> dict:
    """Wall time of `python -m dtec check` of the quickstart: compile, then train.py --check."""
    command = [python_executable(), "-m", "dtec", "check", str(QUICKSTART)]
    times, failure = [], None
    for _ in range(rounds):
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
        times.append(time.perf_counter() - start)
        if done.returncode != 0:
            failure = (done.stdout + done.stderr)[-500:]
    return {"rounds": rounds, "seconds": summary(times), "failure": failure}


def run(out: Path, *, repeat: int = 30, rounds: int = 15) -> dict:
    log(f"compile latency: in-process x{repeat}, processes x{rounds}, dtec check x{min(rounds, 3)}")
    result = {
        "in_process": in_process(repeat),
        "phases": phases(repeat),
        "processes": processes(rounds),
        "check": check(min(rounds, 3)),  # seconds each: a few rounds say enough
    }
    quick = next(
        (
            r
            for r in result["in_process"]["rows"]
            if r["blueprint"] == "quickstart.twin" and r["target"] == "local"
        ),
        None,
    )
    lint_name = result["processes"]["lint_command"]
    lint = result["processes"]["seconds"][lint_name]
    cached = result["processes"]["seconds"]["python -m dtec lint, bytecode cache"]
    result["targets"] = [
        target(
            "compile quickstart in-process (local)",
            quick and quick["ms"]["median"],
            10.0,
            "ms",
            note=quick and f"min {quick['ms']['min']:.1f}, max {quick['ms']['max']:.1f}",
        ),
        target(
            f"`{lint_name} quickstart.twin`, whole process",
            lint["median"],
            0.25,
            "s",
            note=f"min {lint['min']:.3f}, max {lint['max']:.3f}; python -c pass "
            f"{result['processes']['seconds']['python -c pass']['median']:.3f}; checkout with a bytecode cache "
            f"{cached['median']:.3f}",
        ),
        target(
            "`python -m dtec check quickstart.twin`, whole process",
            result["check"]["seconds"]["median"],
            5.0,
            "s",
            note=f"min {result['check']['seconds']['min']:.2f}, max {result['check']['seconds']['max']:.2f}",
        ),
    ]
    return result
