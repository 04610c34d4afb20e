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
    from dtec.lint import analyse

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
        command = (
            [dtec, "lint", str(folder)]
            if dtec
            else [python_executable(), "-m", "dtec", "lint", str(folder)]
        )
        whole, base, codes = [], [], set()
        subprocess.run(command, capture_output=True)
        for r in range(repeat):
            for name in ("pass", "lint") if r % 2 == 0 else ("lint", "pass"):
                start = time.perf_counter()
                if name == "lint":
                    codes.add(subprocess.run(command, capture_output=True).returncode)
                    whole.append(time.perf_counter() - start)
                else:
                    subprocess.run([python_executable(), "-c", "pass"], capture_output=True)
                    base.append(time.perf_counter() - start)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    result = {
        "blueprints": count,
        "mean_lines": lines / count,
        "diagnostics": diagnostics,
        "files_with_errors": errors,
        "in_process_seconds": summary(in_process),
        "in_process_ms_per_file": summary([1000 * t / count for t in in_process]),
        "process_seconds": summary(whole),
        "python_pass_seconds": summary(base),
        "process_command": "dtec lint DIR" if dtec else "python -m dtec lint DIR",
        "process_exit_codes": sorted(codes),
    }
    result["targets"] = [
        target(
            f"lint {count} blueprints in one process (`{result['process_command']}`)",
            result["process_seconds"]["median"],
            2.0,
            "s",
            note=f"in-process {result['in_process_seconds']['median']:.2f} s",
        ),
    ]
    return result
