"""The time `dtec report` takes for a scaling study of 8 points x 1,000 measured steps.

A synthetic study folder is written in the layout a real study leaves (docs/scaling.md): the
study's run/run.json (kind "study", its points), and per point points/rN/run/ with run.json,
scaling.json (as train/phases.py.jinja writes it, a per-step row of each phase for every measured
step), summary.json and metrics.jsonl (a step record at every step: the worst case, log_every 1).
The numbers are made up but shaped like a real strong-scaling study (step time falling with the
ranks, communication rising). The report writer (dtec/report.py `write`) is then called in
process, round after round (the first, which imports matplotlib, untimed; wall and CPU seconds of
each), and `python -m dtec report` is timed as whole processes too (interpreter start and imports
included).

    python -m benchmarks.report_time          # or: python -m benchmarks.run --only report_time
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import ROOT, log, summary, target

PHASES = ("data", "compute", "comm", "optimizer", "rest")
BATCH = 64  # per rank at the first point; strong scaling keeps the global batch


def _json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def point_record(name: str, ranks: int, steps: int, warmup: int, rng: random.Random) -> tuple[dict, list[str]]:
    """A point's scaling.json and its metrics.jsonl lines."""
    base = {"data": 0.002, "compute": 0.040 / ranks, "comm": 0.0 if ranks == 1 else 0.001 * ranks ** 0.5,
            "optimizer": 0.003, "rest": 0.0005}
    per_step = {p: [round(v * rng.uniform(0.9, 1.1), 7) for _ in range(steps)] for p, v in base.items()}
    phases = {p: sum(values) / steps for p, values in per_step.items()}
    step_time = sum(phases.values())
    global_batch = BATCH
    scaling = {
        "ranks": ranks, "nodes": 1, "mode": "strong", "device": "cpu",
        "batch_per_rank": global_batch // ranks, "global_batch": global_batch,
        "warmup": warmup, "steps": steps, "step_time_s": step_time, "step_time_median_s": step_time,
        "window_s": step_time * steps, "phases_s": phases,
        "comm_share": phases["comm"] / step_time,
        "comm_method": "none: one rank" if ranks == 1 else "ddp-hook",
        "comm_check": "none: one rank" if ranks == 1 else "no_sync",
        "nosync_step_time_s": None if ranks == 1 else step_time - phases["comm"],
        "comm_nosync_s": None if ranks == 1 else phases["comm"],
        "per_step_nosync": [] if ranks == 1 else [round(step_time - phases["comm"], 7)] * 5,
        "samples_per_s": global_batch / step_time,
        "peak_memory_bytes": 300_000_000 + 1_000_000 * ranks,
        "cpu_utilisation_percent": 95.0,
        "gpu": {"available": False, "reason": "no GPU: the ranks ran on CPUs"},
        "energy": {"available": False, "reason": "no energy counter (synthetic study)"},
        "per_step": per_step,
        "software": {"python": sys.version.split()[0], "torch": "synthetic", "host": "bench"},
    }
    lines, now, loss = [], 1.7e9, 1.0
    for step in range(1, warmup + steps + 1):
        loss *= rng.uniform(0.995, 1.0)
        iter_time = step_time * rng.uniform(0.95, 1.05)
        lines.append(json.dumps({"kind": "step", "time": round(now + step * iter_time, 3), "step": step, "epoch": 1,
                                 "loss": loss, "lr": 0.001, "iter_time": iter_time, "data_time": phases["data"],
                                 "compute_time": iter_time - phases["data"],
                                 "samples_per_s": global_batch / iter_time}))
    return scaling, lines


def make_study(folder: Path, points: int = 8, steps: int = 1000, warmup: int = 20, seed: int = 0) -> Path:
    """Write a synthetic strong-scaling study of `points` points (1, 2, 4, ... ranks) into `folder`."""
    rng = random.Random(seed)
    names = [f"r{2 ** i}" for i in range(points)]
    common = {"twin": "bench", "target": "local", "scheduler": "local", "sets": [], "launches": []}
    scaling_block = {"ranks": [2 ** i for i in range(points)], "mode": "strong", "steps": steps,
                     "warmup": warmup, "repeats": 1}
    _json(folder / "run" / "run.json", {**common, "id": folder.name, "folder": str(folder), "started": time.time(),
                                        "kind": "study", "points": names, "scaling": scaling_block})
    for i, name in enumerate(names):
        ranks = 2 ** i
        point = folder / "points" / name
        scaling, lines = point_record(name, ranks, steps, warmup, rng)
        _json(point / "run" / "run.json", {**common, "id": f"{folder.name}-{name}", "folder": str(point),
                                           "started": time.time(), "launches": [{"kind": "local", "pid": 0,
                                                                                 "exit_code": 0, "at": 0}]})
        _json(point / "run" / "scaling.json", scaling)
        _json(point / "run" / "summary.json", {"status": "completed", "world_size": ranks, "steps": warmup + steps,
                                               "samples_per_s": scaling["samples_per_s"]})
        (point / "run" / "metrics.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def run(out: Path, *, points: int = 8, steps: int = 1000, rounds: int = 5, processes: int = 3) -> dict:
    """Seconds of `dtec report` on a synthetic study: in process (median of `rounds`) and as processes."""
    from dtec.report import write

    study = make_study(out / "study", points, steps)
    log(f"report_time: {points} points x {steps} steps, {rounds} rounds in process, {processes} processes")
    report_dir = out / "report"
    page = write([study], report_dir)  # also imports matplotlib: untimed
    seconds, cpu = [], []  # wall and CPU seconds: on a shared machine the wall time waits for the CPU
    for _ in range(rounds):
        wall0, cpu0 = time.perf_counter(), time.process_time()
        write([study], report_dir)
        seconds.append(time.perf_counter() - wall0)
        cpu.append(time.process_time() - cpu0)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    whole, failures = [], []
    for _ in range(processes):
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "dtec", "report", str(study), "-o", str(out / "report-cli")],
                              env=env, capture_output=True, text=True, timeout=300, check=False)
        whole.append(time.perf_counter() - start)
        if done.returncode != 0:
            failures.append(done.stderr[-2000:])
    result = {
        "points": points,
        "steps": steps,
        "study_bytes": sum(p.stat().st_size for p in study.rglob("*") if p.is_file()),
        "report_files": sorted(p.name for p in report_dir.iterdir()),
        "page_bytes": page.stat().st_size,
        "in_process_seconds": summary(seconds),
        "in_process_cpu_seconds": summary(cpu),
        "process_seconds": summary(whole),
        "process_failures": failures,
    }
    note = (f"in process {result['in_process_seconds']['median']:.2f} s (median of {rounds}; CPU "
            f"{result['in_process_cpu_seconds']['median']:.2f} s); "
            f"`python -m dtec report` as a process {result['process_seconds']['median'] or 0:.2f} s")
    result["targets"] = [target(f"dtec report of a study of {points} points x {steps} steps",
                                result["in_process_seconds"]["median"], 3.0, "s", note=note)]
    return result


if __name__ == "__main__":
    print(json.dumps(run(Path("/tmp/dtec-bench-report-time")), indent=1))
