"""Validation metrics and best-checkpoint tracking, timed side by side against a plain script.

The quickstart (DDP, 2 ranks, gloo, CPU) is compiled twice: `plain` as shipped (the loss only),
and `tracked` with `metrics = [mae, rmse, r2]` and `checkpoint = { best = min(val_rmse) }`. Both
cost nothing inside the step loop: their work is once per epoch, in `evaluate` (the metric sums,
added across ranks in the same all-reduce as the loss) and, when the epoch is the best so far,
one more checkpoint (`best.pt`). So two ranks import both scripts and time, interleaved (plain,
tracked, plain, ... so that a change of load hits both alike), on the same model and loaders:
each script's `evaluate`, the best checkpoint's save, and the training steps of one epoch. The
share is the extra time per epoch over the epoch's steps, with the best checkpoint saved every
epoch (the worst case: a run whose validation improves every epoch).

    python -m benchmarks.metrics              # or: python -m benchmarks.run --only metrics
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from benchmarks.common import BLUEPRINTS, log, summary, target

TRACKED = ["train.metrics=[mae, rmse, r2]",
           "train.checkpoint={ every = 1, keep = 2, best = min(val_rmse) }"]

# How every probe run_probe runs begins: `load(folder, name)` imports a bundle's train.py as a
# module; the arguments are the two bundles' folders, then rounds and steps.
PRELUDE = r"""
import importlib.util, json, os, sys, tempfile, time
from pathlib import Path
def load(folder, name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(folder, "train.py"))
    m = importlib.util.module_from_spec(spec); sys.modules[name] = m; spec.loader.exec_module(m)
    return m
rounds, steps = int(sys.argv[3]), int(sys.argv[4])
"""

PROBE = PRELUDE + r"""
plain, tracked = load(sys.argv[1], "plain_train"), load(sys.argv[2], "tracked_train")
m = tracked
rt = m.setup()
m.seed_everything(m.TRAIN["seed"])
train_set, val_set, _ = m.split(m.load_dataset(), m.TRAIN["seed"])
train_loader, sampler, val_loader = m.make_loaders(train_set, val_set, rt)
model = m.wrap(m.build_model(tuple(train_set[0][0].shape)), rt)
optimizer = m.make_optimizer(model.parameters())
parts = {"model": model, "optimizer": optimizer}
state = m.TrainState(world_size=rt.world_size)
folder = Path(tempfile.mkdtemp(prefix=f"dtec-metrics-{rt.rank}-"))
def step_time():
    batches = iter(train_loader)
    m.all_sum(__import__("torch").zeros(1))  # start together
    start = time.perf_counter()
    for _ in range(steps):
        x, y = m.to_device(next(batches), rt)
        m.training_loss(model, x, y, False).backward()
        optimizer.step(); optimizer.zero_grad(set_to_none=True)
    return (time.perf_counter() - start) / steps
def timed(call):
    m.all_sum(__import__("torch").zeros(1))
    start = time.perf_counter(); call(); return time.perf_counter() - start
out = {"plain": [], "tracked": [], "best": [], "step": [], "steps_per_epoch": len(train_loader)}
step_time()  # warm-up
for _ in range(rounds):
    out["step"].append(step_time())
    out["plain"].append(timed(lambda: plain.evaluate(model, val_loader, rt)))
    out["tracked"].append(timed(lambda: tracked.evaluate(model, val_loader, rt)))
    out["best"].append(timed(lambda: m.save_checkpoint(parts, state, folder, rt, name=m.BEST_CHECKPOINT)))
print(json.dumps(out))
"""


def measure(plain: Path, tracked: Path, rounds: int, steps: int, ranks: int = 2) -> list[dict]:
    """Per rank: seconds of each evaluate, best save and training step, round by round."""
    return run_probe("metrics", PROBE, [plain, tracked, rounds, steps], ranks)


def run_probe(name: str, probe: str, args: list, ranks: int) -> list[dict]:
    """Run `probe` (Python source) on `ranks` gloo ranks with `args`; each rank's last stdout line as JSON."""
    from benchmarks.training import FIXED_MALLOC, free_port

    port = free_port()
    procs = []
    for rank in range(ranks):
        env = dict(os.environ, RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(ranks),
                   MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), OMP_NUM_THREADS="1",
                   DTEC_DATA_ROOT=".", **FIXED_MALLOC)
        command = [sys.executable, "-c", probe, *map(str, args)]
        procs.append(subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    out = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=900)
        if proc.returncode != 0:
            raise RuntimeError(f"{name} probe failed: {stderr[-2000:]}")
        out.append(json.loads(stdout.strip().splitlines()[-1]))
    return out


def run(out: Path, *, rounds: int = 30, steps: int = 10) -> dict:
    """The extra time per epoch of metrics and best tracking, as a share of the epoch's steps."""
    from benchmarks.training import build_bundles

    sets = ["strategy.kind=ddp", "strategy.procs_per_node=2"]
    plain = build_bundles(out / "plain", BLUEPRINTS / "quickstart.twin", sets, ["dtec"])
    tracked = build_bundles(out / "tracked", BLUEPRINTS / "quickstart.twin", sets + TRACKED, ["dtec"])
    log(f"metrics: {rounds} rounds of evaluate x 2 and {steps} steps on 2 ranks")
    ranks = measure(plain["folders"]["dtec"], tracked["folders"]["dtec"], rounds, steps)
    r0 = ranks[0]  # rank 0 writes the checkpoint; the collectives keep the ranks in step
    per_epoch = r0["steps_per_epoch"]
    metrics = [t - p for t, p in zip(r0["tracked"], r0["plain"])]  # paired, round by round
    result = {
        "rounds": rounds,
        "steps_per_epoch": per_epoch,
        "evaluate_plain_ms": summary([1e3 * s for s in r0["plain"]]),
        "evaluate_tracked_ms": summary([1e3 * s for s in r0["tracked"]]),
        "metrics_extra_ms": summary([1e3 * s for s in metrics]),
        "best_save_ms": summary([1e3 * s for s in r0["best"]]),
        "step_ms": summary([1e3 * s for s in r0["step"]]),
    }
    epoch_ms = per_epoch * result["step_ms"]["median"]
    metrics_share = result["metrics_extra_ms"]["median"] / epoch_ms
    best_share = result["best_save_ms"]["median"] / epoch_ms
    result |= {"metrics_share": metrics_share, "best_share": best_share,
               "share": metrics_share + best_share}
    note = (f"metrics {100 * metrics_share:.2f} % ({result['metrics_extra_ms']['median']:.2f} ms "
            f"per evaluate), best.pt saved every epoch {100 * best_share:.2f} %, of "
            f"{per_epoch} steps of {result['step_ms']['median']:.1f} ms")
    result["targets"] = [target("validation metrics and best tracking, share of a quickstart "
                                "DDP epoch's step time", result["share"], 0.02, "fraction", note=note)]
    return result


if __name__ == "__main__":
    r = run(Path("/tmp/dtec-bench-metrics"))
    print(json.dumps(r, indent=1))
