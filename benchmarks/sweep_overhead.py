"""A sweep's machinery per trial, dtec's own part apart from Optuna's, early and late in a study."""

from __future__ import annotations

import os
import tempfile
import time
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


def run(out: Path, *, trials: int = 300, window: int = 20) -> dict:
    """Milliseconds per trial of a worker's own path, at the start and the end of a `trials`-trial study.

    Each trial goes through what a worker does (study.next_trial: reap, count, ask under the lock;
    study.compile_trial: compile with the trial's values, write the bundle, start its run record;
    then tell), without training. Optuna's `ask` and `tell` are timed apart from dtec's own part,
    which is set against what `dtec run` does before it trains (compile, write, record) for the
    same blueprint, timed after each trial of both windows: the two alternate, so that a load
    that drifts during the run weighs on both alike.
    """
    import optuna

    from dtec import runs
    from dtec import study as studies
    from dtec.compiler import compile_blueprint
    from dtec.lang.sweep import dimensions
    from dtec.output import write_bundle

    window = max(1, min(window, trials // 2))
    log(f"sweep overhead: {trials} trials through a worker's path; windows of {window} at both ends")
    out.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="dtec-bench-sweep-", dir=out))
    path = root / "bp.twin"
    path.write_text(BLUEPRINT, encoding="utf-8")
    bundle, _ = compile_blueprint(path, "local", environ={})
    sweep = bundle.blueprint.get("sweep")
    dims = dimensions(sweep)
    folder = root / "study"
    folder.mkdir()
    spec = {"id": "bench", "sweep": sweep, "goal": "minimize", "storage": str(folder / "journal.log"), "sets": [],
            "target": "local", "machines": [], "blueprint": str(path)}
    here = Path.cwd()
    os.chdir(root)  # runs/ (the run records' index) goes there
    try:
        study = studies._load(spec)
        asked = _timed(study, "ask")
        told = _timed(study, "tell")

        def plain() -> None:  # a trial's blueprint run alone: its sweep block is not checked again
            done, _ = compile_blueprint(path, "local", environ={}, sweep=False)
            run_folder = root / "plain" / runs.new_id()
            write_bundle(done.files, run_folder)
            runs.start(run_folder, runs.new_id(), done, path, [])

        rows, baseline = [], {"first": [], "last": []}
        for number in range(trials):
            start = time.perf_counter()
            trial, _ = studies.next_trial(folder, study, spec, dims)
            middle = time.perf_counter()
            studies.compile_trial(folder, spec, dims, trial)
            end = time.perf_counter()
            study.tell(trial, 1.0 / (number + 1))
            rows.append({"dtec": 1000 * (end - start - asked[-1]), "ask": 1000 * asked[-1], "tell": 1000 * told[-1],
                         "next_trial": 1000 * (middle - start - asked[-1]), "compile_trial": 1000 * (end - middle)})
            if 0 < number <= window or number >= trials - window:  # trial 0 pays the imports
                baseline["first" if number <= window else "last"].extend(1000 * t for t in time_calls(plain, 1, warmup=0))
    finally:
        os.chdir(here)
    ends = {"first": rows[1:window + 1], "last": rows[-window:]}
    parts = ("dtec", "next_trial", "compile_trial", "ask", "tell")
    ms = {end: {k: summary([r[k] for r in chosen]) for k in parts} | {"dtec run": summary(baseline[end])}
          for end, chosen in ends.items()}
    ratio = {end: ms[end]["dtec"]["median"] / ms[end]["dtec run"]["median"] for end in ends}
    result = {"trials": trials, "window": window, "optuna": optuna.__version__, "ms": ms, "ratio": ratio,
              "growth": ratio["last"] / ratio["first"]}
    result["targets"] = [
        target(
            f"dtec's own cost per trial / `dtec run` before training: trials {trials - window}-{trials} against 1-{window}",
            result["growth"],
            1.5,  # flat: nothing of dtec's per trial grows with the history
            "x",
            note=f"ratio {ratio['first']:.2f} -> {ratio['last']:.2f} (dtec's own {ms['first']['dtec']['median']:.1f} -> "
            f"{ms['last']['dtec']['median']:.1f} ms, `dtec run` {ms['first']['dtec run']['median']:.1f} -> "
            f"{ms['last']['dtec run']['median']:.1f} ms); Optuna's ask {ms['first']['ask']['median']:.1f} -> "
            f"{ms['last']['ask']['median']:.1f} ms, tell {ms['first']['tell']['median']:.1f} -> "
            f"{ms['last']['tell']['median']:.1f} ms (TPE, journal file)",
        )
    ]
    return result


def _timed(study, name: str) -> list[float]:
    """Replace `study.<name>` by a call that records its seconds in the returned list."""
    calls: list[float] = []
    method = getattr(study, name)

    def timed(*args, **kwargs):
        start = time.perf_counter()
        try:
            return method(*args, **kwargs)
        finally:
            calls.append(time.perf_counter() - start)

    setattr(study, name, timed)
    return calls
