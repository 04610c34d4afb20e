"""Where the time goes: import times of `dtec lint`, cProfile of linting and compiling in-process.

Not a timed benchmark with a target, the evidence behind the findings in docs/benchmarks.md:

- `imports`: `python -X importtime -m dtec lint quickstart.twin`, the modules with the largest
  self and cumulative import times (importtime itself inflates them by ~10-30 %), and the process
  wall time next to `python -c pass`;
- `lint`: cProfile of `analyse()` over N generated blueprints, the top functions;
- `compile`: cProfile of `compile_blueprint(quickstart, local)` repeated.
"""

from __future__ import annotations

import cProfile
import os
import pstats
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from benchmarks.blueprint_gen import realistic
from benchmarks.common import ROOT, log, python_executable

QUICKSTART = ROOT / "blueprints" / "quickstart.twin"
_LINE = re.compile(r"^import time:\s+(\d+)\s+\|\s+(\d+)\s+\|(\s*)(\S+)")


def importtime(top: int = 20) -> dict:
    """Parse `-X importtime` of a whole `dtec lint` process, with a warm bytecode cache.

    The cache is a private `PYTHONPYCACHEPREFIX` folder, warmed by one run first; `uncached_ms`
    is the same total as this environment runs it (with PYTHONDONTWRITEBYTECODE=1 an editable
    install compiles every dtec module from source in every process).
    """
    folder = Path(tempfile.mkdtemp(prefix="dtec-bench-pyc-"))
    command = [python_executable(), "-X", "importtime", "-m", "dtec", "lint", str(QUICKSTART)]
    cached = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    cached["PYTHONPYCACHEPREFIX"] = str(folder)
    try:
        subprocess.run(command, env=cached, capture_output=True)  # fills the cache
        rows = _parse(subprocess.run(command, env=cached, capture_output=True, text=True).stderr)
        uncached = _parse(subprocess.run(command, capture_output=True, text=True).stderr)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    top_level = sorted((r for r in rows if r["depth"] == 0), key=lambda r: -r["cumulative_ms"])
    return {
        "total_ms": sum(r["self_ms"] for r in rows),
        "uncached_ms": sum(r["self_ms"] for r in uncached),
        "environment": {"PYTHONDONTWRITEBYTECODE": os.environ.get("PYTHONDONTWRITEBYTECODE")},
        "modules": len(rows),
        "top_self": sorted(rows, key=lambda r: -r["self_ms"])[:top],
        "top_level_cumulative": top_level[:top],
        "dtec_self_ms": sum(r["self_ms"] for r in rows if r["module"].split(".")[0] == "dtec"),
        "third_party_loaded": sorted(
            {r["module"].split(".")[0] for r in rows}
            & {
                "lark",
                "regex",
                "typer",
                "click",
                "rich",
                "pydantic",
                "jinja2",
                "networkx",
                "yaml",
                "torch",
                "certifi",
            }
        ),
    }


def _parse(stderr: str) -> list[dict]:
    rows = []
    for line in stderr.splitlines():
        match = _LINE.match(line)
        if match:
            self_us, cumulative_us, indent, name = match.groups()
            rows.append(
                {
                    "module": name,
                    "self_ms": int(self_us) / 1000,
                    "cumulative_ms": int(cumulative_us) / 1000,
                    "depth": len(indent) // 2,
                }
            )
    return rows


def _top(profile: cProfile.Profile, key: str, top: int) -> list[dict]:
    stats = pstats.Stats(profile)
    rows = []
    for (filename, line, function), (cc, nc, tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        rows.append(
            {
                "function": f"{_short(filename)}:{line}({function})",
                "calls": nc,
                "tottime_s": tt,
                "cumtime_s": ct,
            }
        )
    total = sum(r["tottime_s"] for r in rows)
    rows.sort(key=lambda r: -r[key])
    for r in rows:
        r["tottime_share"] = r["tottime_s"] / total if total else None
    return rows[:top]


def _short(filename: str) -> str:
    for marker in ("site-packages/", "/lib/python3"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    try:
        return str(Path(filename).resolve().relative_to(ROOT))
    except ValueError:
        return filename


def profile_calls(fn, top: int) -> dict:
    profile = cProfile.Profile()
    profile.enable()
    fn()
    profile.disable()
    total = sum(s[2] for s in pstats.Stats(profile).stats.values())  # type: ignore[attr-defined]
    return {
        "total_s": total,
        "by_tottime": _top(profile, "tottime_s", top),
        "by_cumtime": _top(profile, "cumtime_s", top),
    }


def run(out: Path, *, lint_count: int = 1000, compile_repeat: int = 100, top: int = 25) -> dict:
    from dtec.compiler import compile_blueprint
    from dtec.analysis import analyse

    log(f"profiles: importtime, cProfile lint x{lint_count}, compile x{compile_repeat}")
    folder = Path(tempfile.mkdtemp(prefix="dtec-bench-profile-"))
    try:
        paths = realistic(lint_count, folder)
        analyse(paths[0])  # imports and caches outside the profile
        lint = profile_calls(lambda: [analyse(p) for p in paths], top)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    text = QUICKSTART.read_text()
    compile_blueprint(QUICKSTART, "local", text=text, environ={})
    compiled = profile_calls(
        lambda: [
            compile_blueprint(QUICKSTART, "local", text=text, environ={})
            for _ in range(compile_repeat)
        ],
        top,
    )
    return {
        "imports": importtime(top),
        "lint": dict(lint, files=lint_count),
        "compile": dict(compiled, repeat=compile_repeat),
        "targets": [],
    }
