"""A sweep's machinery per trial (ask, compile with the trial's values, tell) next to a plain compile."""

from __future__ import annotations

import tempfile
from pathlib import Path

from benchmarks.common import log, summary, target, time_calls

BLUEPRINT = """twin "flood" {
  description = "river levels"
}

data "gauges" {
  source = synthetic(samples = 256, shape = [8], targets = 1)
  batch = 16
}

model "net" {
  arch = mlp(input = 8, output = 1)
  input = data.gauges
}

train {
  loss = mse
  epochs = 2
  export = none
}

sweep {
  trials = 1000
  parallel = 1
  seed = 1
  space = [
    loguniform("train.optimizer.lr", 1e-5, 1e-1),
    choice("model.net.arch.hidden", [[8], [32, 32]]),
    int("data.gauges.batch", 8, 64, step = 8),
  ]
}
"""


def run(out: Path, *, trials: int = 50) -> dict:
    """Median milliseconds of each step, over `trials` trials of a journal-file study."""
    import optuna

    from dtec import study as studies
    from dtec.compiler import compile_blueprint
    from dtec.lang.sweep import dimensions

    log(f"sweep overhead: {trials} trials (ask + compile + tell) against {trials} plain compiles")
    out.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="dtec-bench-sweep-", dir=out))
    path = folder / "bp.twin"
    path.write_text(BLUEPRINT, encoding="utf-8")
    bundle, _ = compile_blueprint(path, "local", environ={})
    sweep = bundle.blueprint.get("sweep")
    dims = dimensions(sweep)
    spec = {"id": "bench", "sweep": sweep, "goal": "minimize", "storage": str(folder / "journal.log")}
    study = studies._load(spec)
    space = {d.key: studies._distribution(d) for d in dims}
    steps: dict[str, list[float]] = {"ask": [], "compile": [], "tell": []}

    def trial() -> None:
        (asked,) = time_calls(lambda: held.append(study.ask(space)), 1, warmup=0)
        sets = studies.trial_sets(dims, held[-1].params)
        (compiled,) = time_calls(lambda: compile_blueprint(path, "local", environ={}, sets=sets, sweep=False), 1, warmup=0)
        (told,) = time_calls(lambda: study.tell(held[-1], 1.0), 1, warmup=0)
        for name, seconds in zip(steps, (asked, compiled, told)):
            steps[name].append(1000 * seconds)

    held: list = []
    trial()  # warm-up: imports, the journal's first lines
    for values in steps.values():
        values.clear()
    whole = [1000 * t for t in time_calls(trial, trials, warmup=0)]
    plain = [1000 * t for t in time_calls(lambda: compile_blueprint(path, "local", environ={}, sweep=False), trials)]
    result = {
        "trials": trials,
        "ms": {"trial": summary(whole), "plain compile": summary(plain), **{k: summary(v) for k, v in steps.items()}},
        "optuna": optuna.__version__,
    }
    ratio = result["ms"]["trial"]["median"] / result["ms"]["plain compile"]["median"]
    result["ratio"] = ratio
    result["targets"] = [
        target(
            "sweep trial (ask + compile + tell) / plain compile",
            ratio,
            10.0,  # a few tens of ms: under 1 % of a 5 s trial
            "x",
            note=f"trial {result['ms']['trial']['median']:.1f} ms, plain compile "
            f"{result['ms']['plain compile']['median']:.1f} ms, ask {result['ms']['ask']['median']:.1f}, "
            f"tell {result['ms']['tell']['median']:.1f} (TPE, journal file)",
        )
    ]
    return result
