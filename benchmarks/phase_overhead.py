"""The per-phase instrumentation of a scaling study, timed side by side against a plain step.

The quickstart (DDP, 2 ranks, gloo, CPU) is compiled twice: `plain` as shipped, and `phased`
with a `scaling` block appended to a copy of it (a block cannot be added with --set), whose train.py carries train/phases.py.jinja: a `Phases` object whose
begin, lap("data"), lap("compute"), lap("optimizer") and end calls split every measured step,
and a DDP communication hook that notes when each gradient bucket is handed over. Two ranks
import both scripts and build one DDP model from each (same seed, same loaders): the plain model
as the plain script wraps it, the phased one with the `Phases` object and its hook attached. They
then time, interleaved (plain, phased, phased, plain, ... so that a change of load, and the
order, hit both alike; wall and CPU seconds),
`steps` training steps of each: the plain loop, and the same loop with the calls the generated
loop makes around it. The phased script's warm-up (its compute-only no_sync steps included) runs
first, untimed, and its window is made long enough never to close, so every timed step is a
measured one. The overhead is the median over rounds of the phased/plain per-step ratio, minus
one (paired round by round, so that a drift of the load cancels). On a busy machine that ratio is
noisy; the five calls are also timed alone, with nothing between them (their own cost, which the
hook's few microseconds per bucket add to).

    python -m benchmarks.phase_overhead       # or: python -m benchmarks.run --only phases
"""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.common import BLUEPRINTS, log, summary, target
from benchmarks.metrics import PRELUDE, run_probe

PROBE = PRELUDE + r"""
import torch
plain, phased = load(sys.argv[1], "plain_train"), load(sys.argv[2], "phased_train")
rt = phased.setup()
def build(m):
    m.seed_everything(m.TRAIN["seed"])
    train_set, val_set, _ = m.split(m.load_dataset(), m.TRAIN["seed"])
    train_loader, _, _ = m.make_loaders(train_set, val_set, rt)
    model = m.wrap(m.build_model(tuple(train_set[0][0].shape)), rt)
    return model, m.make_optimizer(model.parameters()), train_loader
p_model, p_opt, p_loader = build(plain)
f_model, f_opt, f_loader = build(phased)
global_batch = phased.DATA["batch"] * phased.TRAIN["grad_accum"] * rt.world_size
phases = phased.Phases(f_model, rt, global_batch, Path(tempfile.mkdtemp(prefix=f"dtec-phases-{rt.rank}-")))
def loop(m, model, optimizer, loader, n, timer=None):
    batches = iter(loader)
    m.all_sum(torch.zeros(1))  # start together
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(n):
        if timer: timer.begin()
        x, y = m.to_device(next(batches), rt)
        if timer: timer.lap("data")
        loss = m.training_loss(model, x, y, False); loss.backward()
        if timer: timer.lap("compute")
        optimizer.step(); optimizer.zero_grad(set_to_none=True)
        if timer: timer.lap("optimizer")
        if timer: timer.end()
    return (time.perf_counter() - start) / n, (time.process_time() - cpu) / n
# The phased script's warm-up, compute-only steps included, then a window that never closes.
loop(phased, f_model, f_opt, f_loader, phased.SCALING["warmup"], phases)
phased.SCALING["steps"] = 10 ** 9
assert phases.measuring() and phases.comm in ("ddp-hook", "none: one rank"), phases.comm
loop(plain, p_model, p_opt, p_loader, steps)  # warm-up of the plain model
out = {"plain": [], "phased": [], "plain_cpu": [], "phased_cpu": [], "comm_method": phases.comm}
for i in range(rounds):  # plain first in even rounds, phased first in odd ones: order cancels too
    for name in (("plain", "phased") if i % 2 == 0 else ("phased", "plain")):
        args = (plain, p_model, p_opt, p_loader, steps) if name == "plain" else (phased, f_model, f_opt, f_loader, steps, phases)
        wall, cpu = loop(*args)
        out[name].append(wall); out[name + "_cpu"].append(cpu)
out["measured_steps"] = len(phases.rows)
out["phase_sum_ms"] = 1e3 * sum(map(sum, phases.rows)) / max(len(phases.rows), 1)
calls = 1000  # the five calls alone, with nothing between them: their own cost, free of the load's noise
start = time.perf_counter()
for _ in range(calls):
    phases.begin(); phases.lap("data"); phases.lap("compute"); phases.lap("optimizer"); phases.end()
out["calls_alone_us"] = 1e6 * (time.perf_counter() - start) / calls
print(json.dumps(out))
"""


def measure(plain: Path, phased: Path, rounds: int, steps: int, ranks: int = 2) -> list[dict]:
    """Per rank: wall and CPU seconds per step of the plain and the phased loop, round by round."""
    return run_probe("phases", PROBE, [plain, phased, rounds, steps], ranks)


def run(out: Path, *, rounds: int = 30, steps: int = 20, warmup: int = 10) -> dict:
    """The per-step cost of the phase instrumentation, as a share of the plain step."""
    from benchmarks.training import build_bundles, workload_sets

    sets = ["strategy.kind=ddp", *workload_sets(2, warmup, steps)]
    quickstart = BLUEPRINTS / "quickstart.twin"
    studied = out / "quickstart-study.twin"  # a block cannot be added with --set
    out.mkdir(parents=True, exist_ok=True)
    studied.write_text(quickstart.read_text() + f"\nscaling {{\n  ranks = [2]\n  steps = {steps}\n  warmup = {warmup}\n}}\n")
    plain = build_bundles(out / "plain", quickstart, sets, ["dtec"])
    phased = build_bundles(out / "phased", studied, sets, ["dtec"])
    log(f"phases: {rounds} rounds of {steps} steps, plain and phased, on 2 ranks")
    ranks = measure(plain["folders"]["dtec"], phased["folders"]["dtec"], rounds, steps)
    r0 = ranks[0]  # the collectives keep the ranks in step
    extra = [f - p for f, p in zip(r0["phased"], r0["plain"])]  # paired, round by round
    ratios = [f / p for f, p in zip(r0["phased"], r0["plain"])]
    cpu_ratios = [f / p for f, p in zip(r0["phased_cpu"], r0["plain_cpu"])]
    result = {
        "rounds": rounds,
        "steps": steps,
        "comm_method": r0["comm_method"],
        "measured_steps": r0["measured_steps"],
        "plain_step_ms": summary([1e3 * s for s in r0["plain"]]),
        "phased_step_ms": summary([1e3 * s for s in r0["phased"]]),
        "extra_ms": summary([1e3 * s for s in extra]),
        "ratio": summary(ratios),
        "cpu_ratio": summary(cpu_ratios),  # CPU seconds of rank 0: less of the load's noise
        "fastest_ratio": min(r0["phased"]) / min(r0["plain"]),  # the least disturbed round of each
        "phase_sum_ms": r0["phase_sum_ms"],
    }
    share = result["ratio"]["median"] - 1  # paired round by round: a drift of the load cancels
    result["share"] = share
    result["calls_alone_us"] = r0["calls_alone_us"]
    result["calls_alone_share"] = 1e-3 * r0["calls_alone_us"] / result["plain_step_ms"]["median"]
    note = (f"phased/plain median ratio {result['ratio']['median']:.4f} ({rounds} rounds of {steps} steps "
            f"of {result['plain_step_ms']['median']:.1f} ms; CPU time ratio {result['cpu_ratio']['median']:.4f}, "
            f"fastest rounds {result['fastest_ratio']:.4f}); the five calls alone "
            f"{r0['calls_alone_us']:.1f} us a step ({100 * result['calls_alone_share']:.3f} %)")
    result["targets"] = [target("per-phase instrumentation, share of a quickstart DDP step (2 ranks)",
                                share, 0.02, "fraction", note=note)]
    return result


if __name__ == "__main__":
    print(json.dumps(run(Path("/tmp/dtec-bench-phases")), indent=1))
