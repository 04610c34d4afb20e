"""Lint throughput: many realistic blueprints linted in one process (in-process and `dtec lint DIR`)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from benchmarks.blueprint_gen import realistic
from benchmarks.common import dtec_executable, log, python_executable, summary, target


def run(out: Path, *, count: int = 1000, repeat: int = 5) -> dict:
    """Lint `count` generated blueprints: `repeat` in-process passes and `repeat` whole processes."""
    from dtec.analysis import analyse
    from dtec.host import cpu_count

    log(f"lint throughput: {count} blueprints, x{repeat}")
    folder = Path(tempfile.mkdtemp(prefix="dtec-bench-lint-"))
    try:
        paths = realistic(count, folder)
        lines = sum(len(p.read_text().splitlines()) for p in paths)
        diagnostics = errors = 0
        in_process = []
        for r in range(repeat + 1):  # the first pass warms up (imports, machine catalogue)
            start = time.perf_counter()
            results = [analyse(path) for path in paths]
            if r:
                in_process.append(time.perf_counter() - start)
            diagnostics = sum(len(res.diagnostics) for res in results)
            errors = sum(not res.ok for res in results)
        dtec = dtec_executable()
        base_command = [dtec, "lint"] if dtec else [python_executable(), "-m", "dtec", "lint"]
        commands = {
            "lint": [*base_command, str(folder)],  # the default: one process per CPU for many files
            "lint_j1": [*base_command, "--jobs", "1", str(folder)],
            "pass": [python_executable(), "-c", "pass"],
        }
        times: dict[str, list[float]] = {name: [] for name in commands}
        codes = set()
        subprocess.run(commands["lint"], capture_output=True, check=False)
        for r in range(repeat):
            names = list(commands) if r % 2 == 0 else list(reversed(commands))
            for name in names:
                start = time.perf_counter()
                code = subprocess.run(commands[name], capture_output=True, check=False).returncode
                times[name].append(time.perf_counter() - start)
                if name != "pass":
                    codes.add(code)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    result = {
        "blueprints": count,
        "mean_lines": lines / count,
        "diagnostics": diagnostics,
        "files_with_errors": errors,
        "in_process_seconds": summary(in_process),
        "in_process_ms_per_file": summary([1000 * t / count for t in in_process]),
        "process_seconds": summary(times["lint"]),
        "process_one_job_seconds": summary(times["lint_j1"]),
        "python_pass_seconds": summary(times["pass"]),
        "cpus": cpu_count(),
        "process_command": "dtec lint DIR" if dtec else "python -m dtec lint DIR",
        "process_exit_codes": sorted(codes),
    }
    result["targets"] = [
        target(
            f"lint {count} blueprints in one process (`{result['process_command']} --jobs 1`)",
            result["process_one_job_seconds"]["median"],
            2.0,
            "s",
            note=(
                f"default, {result['cpus']} processes: "
                f"{result['process_seconds']['median']:.2f} s; "
                f"in-process {result['in_process_seconds']['median']:.2f} s"
            ),
        ),
    ]
    return result
