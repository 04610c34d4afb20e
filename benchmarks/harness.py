#!/usr/bin/env python3
"""Run one training script (generated or hand-written) as one rank, and time its optimizer steps.

    RANK=0 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=29500 \
        python benchmarks/harness.py --out DIR [--stub stop-flag] [--time NAME ...] SCRIPT -- ARGS

The script is imported as a module (as `python SCRIPT` would see it: its folder first on
`sys.path`) and its `main(ARGS)` is called. A global optimizer step post-hook appends
`time.perf_counter()` after every optimizer step, for every strategy alike (DeepSpeed's ZeRO
optimizers step the wrapped torch optimizer, which fires the hook). The hook costs one list append
per step, the same on both sides of a comparison; it also records the process's CPU time, which
other processes on a shared machine disturb much less than wall time. This rank's timestamps go to `DIR/rank-N.json`.

Interleaving (set by `benchmarks/training.py`): with `DTEC_BENCH_GATE=K:GO_FD:ACK_FD` the hook
stops the rank after every K-th optimizer step, writes one byte to ACK_FD and blocks (no CPU) until
it reads one byte from GO_FD. The driver runs several jobs at once and lets one job at a time
advance K steps, so that the load of a shared machine falls on all of them alike. Each resume
time goes into `resumes`, so a chunk of K steps is timed from its resume to its last step.

`--sync-at N` synchronises CUDA before timestamping step N (the window's ends on a GPU, where
the optimizer step returns before its kernels ran). `--time NAME` wraps the module-level function (or `Class.method`) NAME with a timer: how often it
ran and for how long (e.g. `save_checkpoint`, `evaluate`). `--stub stop-flag` replaces the
generated script's per-step pre-emption check (`StopFlag.agreed`, one all-reduce per step) by
`False`, to measure what that check costs; it is a measurement device, not a change to dtec.

Standalone on purpose (only the standard library and torch), so that `benchmarks/gpu.sh` can
run it on a machine that has nothing but a bundle and this folder.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import os
import resource
import sys
import time
from pathlib import Path

STUBS = ("stop-flag",)


def load_script(path: Path, name: str = "__bench_target__"):
    """Import `path` as a module without running its `__main__` block."""
    sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is created
    spec.loader.exec_module(module)
    return module


def add_timer(module, dotted: str, timers: dict) -> None:
    """Wrap `module.dotted` so every call adds its duration to `timers[dotted]`."""
    *owner_path, attr = dotted.split(".")
    owner = module
    for part in owner_path:
        owner = getattr(owner, part)
    original = getattr(owner, attr)
    record = timers.setdefault(dotted, {"calls": 0, "seconds": 0.0})

    @functools.wraps(original)
    def timed(*args, **kwargs):
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            record["calls"] += 1
            record["seconds"] += time.perf_counter() - start

    setattr(owner, attr, timed)


def apply_stub(module, stub: str) -> None:
    if stub == "stop-flag":
        module.StopFlag.agreed = lambda self, rt: False
    else:  # pragma: no cover - argparse limits the choices
        raise ValueError(stub)


def main() -> int:
    here = str(Path(__file__).resolve().parent)
    sys.path[:] = [p for p in sys.path if p not in ("", here)]  # only the script's own folder
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for rank-N.json")
    parser.add_argument("--stub", action="append", default=[], choices=STUBS)
    parser.add_argument("--time", action="append", default=[], metavar="NAME")
    parser.add_argument(
        "--sync-at",
        action="append",
        type=int,
        default=[],
        metavar="STEP",
        help="torch.cuda.synchronize() before timestamping this step (1-based)",
    )
    parser.add_argument("script", type=Path)
    parser.add_argument("args", nargs=argparse.REMAINDER)
    options = parser.parse_args()
    argv = options.args[1:] if options.args[:1] == ["--"] else options.args

    import torch
    from torch.optim.optimizer import register_optimizer_step_post_hook

    steps: list[float] = []  # perf_counter() after each optimizer step
    cpu: list[float] = []  # process_time() (CPU seconds of all this process's threads) likewise
    faults: list[int] = []  # minor page faults so far (fresh memory from the kernel) likewise
    resumes: list[list[float]] = []  # [steps done, perf_counter(), process_time()] at each gate
    sync_at = set(options.sync_at) if torch.cuda.is_available() else set()
    gate = os.environ.get("DTEC_BENCH_GATE")
    every, go_fd, ack_fd = (int(part) for part in gate.split(":")) if gate else (0, -1, -1)

    def hook(optimizer, args, kwargs) -> None:
        if len(steps) + 1 in sync_at:
            torch.cuda.synchronize()  # the queued GPU work belongs to this step
        steps.append(time.perf_counter())
        cpu.append(time.process_time())
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt)
        if every and len(steps) % every == 0:
            os.write(ack_fd, b"a")
            if os.read(go_fd, 1) != b"g":
                raise RuntimeError("benchmark driver went away")
            resumes.append([len(steps), time.perf_counter(), time.process_time()])

    register_optimizer_step_post_hook(hook)

    module = load_script(options.script.resolve())
    timers: dict = {}
    for name in options.time:
        add_timer(module, name, timers)
    for stub in options.stub:
        apply_stub(module, stub)

    rank = int(os.environ.get("RANK", "0"))
    started = time.perf_counter()
    code, error = 1, None
    try:
        code = module.main(argv) or 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
        error = None if code == 0 else f"SystemExit: {exc.code}"
    except BaseException as exc:  # reported in the JSON, then re-raised
        error = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        options.out.mkdir(parents=True, exist_ok=True)
        report = {
            "rank": rank,
            "world_size": int(os.environ.get("WORLD_SIZE", "1")),
            "script": str(options.script),
            "argv": argv,
            "stubs": options.stub,
            "exit": code,
            "error": error,
            "main_seconds": time.perf_counter() - started,
            "steps": steps,
            "cpu": cpu,
            "minor_faults": faults,
            "resumes": resumes,
            "timers": timers,
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
        }
        (options.out / f"rank-{rank}.json").write_text(json.dumps(report) + "\n")
    return code


if __name__ == "__main__":
    sys.exit(main())
