"""A real local sweep through `dtec run`: how much of its wall the trials spend training, and each trial's start-up."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

from benchmarks.common import log, python_executable, summary, target

BLUEPRINT = """twin "flood" {{
  description = "river levels"
}}

data "gauges" {{
  source = synthetic(samples = {samples}, shape = [8], targets = 1)
  batch = 16
  workers = 0
}}

model "net" {{
  arch = mlp(input = 8, output = 1, hidden = [32, 32])
  input = data.gauges
}}

train {{
  loss = mse
  epochs = {epochs}
  export = none
}}
"""

# Only the learning rate varies, so that every trial does the same work; no pruner, so every trial trains fully.
SWEEP = """
sweep {{
  trials = {trials}
  parallel = {parallel}
  pruner = none
  seed = 1
  space = [
    loguniform("train.optimizer.lr", 1e-4, 1e-2),
  ]
}}
"""


def run(out: Path, *, trials: int = 16, parallel: int = 2, samples: int = 4096, epochs: int = 10, plain: int = 3) -> dict:
    """Sweep efficiency (sum of trial training times / (wall x parallel)) and trial start -> first step.

    `dtec run` of a blueprint with a sweep block (`trials` trials, `parallel` workers, pruner none)
    is timed whole; each trial's training time is read from its own metrics.jsonl (the first
    step's start to the last record), its start from Optuna's storage (the trial's creation).
    The same blueprint without the sweep block is then run `plain` times, one by one, through
    `dtec run`: its process start to its first step is the start-up a trial is set against.
    The defaults (16 trials of 10 epochs of 4,096 samples, about 5 s each on a quiet 2-core
    machine) are issue 15's. The efficiency counts a slow trial as training, so the trials'
    training is also set against the same training alone: trials that slow each other down
    (threads fighting over cores) would otherwise look efficient.
    """
    import optuna

    import dtec
    from dtec import study as studies

    out.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="dtec-bench-efficiency-", dir=out))
    base = BLUEPRINT.format(samples=samples, epochs=epochs)
    (root / "plain.twin").write_text(base, encoding="utf-8")
    (root / "sweep.twin").write_text(base + SWEEP.format(trials=trials, parallel=parallel), encoding="utf-8")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(Path(dtec.__file__).parent.parent),
                                                                   os.environ.get("PYTHONPATH")])))

    log(f"sweep efficiency: {trials} trials of {epochs} epochs x {samples} samples, parallel {parallel}")
    started = time.time()
    _dtec_run(root, "sweep.twin", env)
    wall = time.time() - started
    [folder] = (root / "runs" / "flood" / "local").glob("sweep-*")
    study = studies._load(json.loads((folder / "study.json").read_text(encoding="utf-8")))
    rows = []
    for trial in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
        steps, last = _records(root / trial.user_attrs["folder"] / "run" / "metrics.jsonl")
        created = trial.datetime_start.timestamp()
        rows.append({"trial": trial.number, "state": trial.state.name, "training_s": last - _step_start(steps[0]),
                     "start_to_first_step_s": steps[0]["time"] - created})
    efficiency = sum(r["training_s"] for r in rows) / (wall * parallel)

    log(f"sweep efficiency: the same blueprint without its sweep block, {plain} x `dtec run`")
    alone = []
    for number in range(plain):
        started = time.time()
        _dtec_run(root, "plain.twin", env, "-o", f"plain-{number}")
        steps, last = _records(root / f"plain-{number}" / "run" / "metrics.jsonl")
        alone.append({"wall_s": time.time() - started, "training_s": last - _step_start(steps[0]),
                      "start_to_first_step_s": steps[0]["time"] - started})

    startup = {"sweep trial": summary([r["start_to_first_step_s"] for r in rows]),
               "dtec run": summary([r["start_to_first_step_s"] for r in alone])}
    training = {"sweep trial": summary([r["training_s"] for r in rows]),
                "dtec run": summary([r["training_s"] for r in alone])}
    slowdown = training["sweep trial"]["median"] / training["dtec run"]["median"]
    result = {"trials": trials, "parallel": parallel, "samples": samples, "epochs": epochs, "optuna": optuna.__version__,
              "wall_s": wall, "efficiency": efficiency, "rows": rows, "alone": alone, "startup_s": startup,
              "training_s": training, "slowdown": slowdown}
    result["targets"] = [
        target(
            f"sweep efficiency: training time of {trials} trials / (wall x {parallel})",
            efficiency,
            0.85,
            "",
            better="higher",
            note=f"wall {wall:.1f} s; a trial trains {training['sweep trial']['median']:.1f} s (median; "
            f"{training['dtec run']['median']:.1f} s alone); trial start -> first step "
            f"{startup['sweep trial']['median']:.2f} s against `dtec run`'s process start -> first step "
            f"{startup['dtec run']['median']:.2f} s",
        ),
        target(
            f"a trial's training in the sweep ({parallel} at once) / the same training alone",
            slowdown,
            1.25,
            "x",
            note=f"median {training['sweep trial']['median']:.2f} s against {training['dtec run']['median']:.2f} s",
        ),
    ]
    return result


def _dtec_run(root: Path, blueprint: str, env: dict, *args: str) -> None:
    """`dtec run BLUEPRINT -t local` in `root`; its output is kept beside it."""
    with open(root / f"{blueprint}.log", "ab") as log_file:
        subprocess.run([python_executable(), "-m", "dtec", "run", blueprint, "-t", "local", *args], cwd=root, env=env,
                       stdout=log_file, stderr=subprocess.STDOUT, check=True, timeout=3600)


def _records(path: Path) -> tuple[list[dict], float]:
    """A run's step records and the time of its last record."""
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [r for r in records if r.get("kind") == "step"], records[-1]["time"]


def _step_start(step: dict) -> float:
    """When a step began: its record is written at its end."""
    return step["time"] - step.get("iter_time", 0.0)
