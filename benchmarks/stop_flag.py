"""The pre-emption check of the generated script, timed alone: `StopFlag.agreed`.

Every rank calls it every `STOP_CHECK_EVERY` optimizer steps (an all-reduce of one integer, so
that all ranks stop at the same step); it is the one piece of instrumentation in the step loop
that no blueprint switch turns off. Timed in isolation it is far more precise than as a
difference of two noisy training runs. Two ranks (gloo, CPU) import the generated DDP `train.py`
of the quickstart and call its `StopFlag().agreed(rt)` N times, back to back; wall and CPU time
per call on each rank, next to the same loop doing nothing (the floor of the timing itself).

    python -m benchmarks.stop_flag            # or: python -m benchmarks.run --only stopflag
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import BLUEPRINTS, log, summary, target

PROBE = r"""
import json, os, sys, time, types
sys.path.insert(0, sys.argv[1])
import importlib.util
spec = importlib.util.spec_from_file_location("bundle_train", os.path.join(sys.argv[1], "train.py"))
m = importlib.util.module_from_spec(spec); sys.modules[spec.name] = m; spec.loader.exec_module(m)
import torch.distributed as dist
dist.init_process_group("gloo")
rt = types.SimpleNamespace(world_size=dist.get_world_size(), control=None, rank=dist.get_rank())
n = int(sys.argv[2])
flag = m.StopFlag()
out = {}
for name, call in (("empty", lambda: False), ("agreed", lambda: flag.agreed(rt))):
    for _ in range(50):
        call()
    dist.barrier()
    w, c = time.perf_counter(), time.process_time()
    for _ in range(n):
        call()
    out[name] = {"wall_us": 1e6 * (time.perf_counter() - w) / n, "cpu_us": 1e6 * (time.process_time() - c) / n}
if hasattr(flag, "settle"):
    flag.settle()
out["every"] = getattr(m, "STOP_CHECK_EVERY", 1)
print(json.dumps(out))
dist.destroy_process_group()
"""


def measure(bundle: Path, ranks: int = 2, iterations: int = 2000) -> list[dict]:
    """Per-rank {"empty": ..., "agreed": ...} in microseconds per call."""
    from benchmarks.training import FIXED_MALLOC, free_port

    port = free_port()
    procs = []
    for rank in range(ranks):
        env = dict(
            os.environ,
            RANK=str(rank),
            LOCAL_RANK=str(rank),
            WORLD_SIZE=str(ranks),
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=str(port),
            OMP_NUM_THREADS="1",
            **FIXED_MALLOC,
        )
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", PROBE, str(bundle), str(iterations)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    out = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=600)
        if proc.returncode != 0:
            raise RuntimeError(f"stop-flag probe failed: {stderr[-2000:]}")
        out.append(json.loads(stdout.strip().splitlines()[-1]))
    return out


def run(
    out: Path, *, rounds: int = 5, iterations: int = 2000, step_ms: float | None = None
) -> dict:
    """`rounds` probes; the cost per step as a share of `step_ms` (default: the DDP training result)."""
    from benchmarks.training import build_bundles, workload_sets

    log(f"stop flag: {rounds} x {iterations} calls on 2 ranks")
    built = build_bundles(
        out / "bundle",
        BLUEPRINTS / "quickstart.twin",
        workload_sets(2, 20, 200) + ["strategy.kind=ddp"],
        ["dtec"],
    )
    rows = []
    every = 1
    for _ in range(rounds):
        started = time.perf_counter()
        ranks = measure(built["folders"]["dtec"], 2, iterations)
        every = ranks[0]["every"]
        rows.append(
            {
                "wall_us": max(r["agreed"]["wall_us"] - r["empty"]["wall_us"] for r in ranks),
                "cpu_us": sum(
                    r["agreed"]["cpu_us"] - r["empty"]["cpu_us"] for r in ranks
                ),  # both ranks
                "seconds": time.perf_counter() - started,
            }
        )
    result = {
        "iterations": iterations,
        "rounds": rows,
        "check_every": every,
        "wall_us_per_call": summary([r["wall_us"] for r in rows]),
        "cpu_us_per_call_all_ranks": summary([r["cpu_us"] for r in rows]),
        "step_cpu_ms_all_ranks": step_ms,
    }
    share = None
    if step_ms:
        share = result["cpu_us_per_call_all_ranks"]["median"] / every / 1000 / step_ms
    result["cpu_share_of_step"] = share
    result["targets"] = (
        [
            target(
                "stop-flag check, CPU share of a quickstart DDP step",
                share,
                0.02,
                "fraction",
                note=f"{result['cpu_us_per_call_all_ranks']['median']:.0f} µs CPU (both ranks), "
                f"{result['wall_us_per_call']['median']:.0f} µs wall per call, "
                f"one call every {every} steps",
            )
        ]
        if share is not None
        else []
    )
    return result


if __name__ == "__main__":
    r = run(Path("/tmp/dtec-bench-stopflag"))
    print(json.dumps({k: v for k, v in r.items() if k != "rounds"}, indent=1))
