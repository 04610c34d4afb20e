"""A sweep's `dtec report`: figures, verdict and data from a study recorded in a real Optuna journal."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dtec import study as studies
from dtec.lang.sweep import dimensions

REPO = Path(__file__).resolve().parent.parent
SWEEP = {
    "trials": 6, "parallel": 2, "seed": 1, "metric": "val_loss", "sampler": "tpe", "pruner": "median", "retries": 1,
    "space": [
        {"fn": "loguniform", "key": "train.optimizer.lr", "low": 1e-5, "high": 1e-1},
        {"fn": "choice", "key": "model.net.arch.hidden", "values": ["[8]", "[32, 32]"]},
    ],
}
# number: (state, lr, hidden index, val_loss per epoch, reason)
TRIALS = {
    0: ("COMPLETE", 1e-3, 0, [0.9, 0.7, 0.6], None),
    1: ("COMPLETE", 3e-2, 1, [0.5, 0.3, 0.2], None),
    2: ("PRUNED", 1e-5, 0, [1.4], None),
    3: ("FAIL", 2e-2, 1, [], "its worker died"),
    4: ("COMPLETE", 2e-2, 1, [0.6, 0.4, 0.25], None),
    5: ("COMPLETE", 1e-4, 0, [1.0, 0.95, 0.9], None),
    6: ("FAIL", 1e-4, 1, [1.1], "stopped: `dtec run` was interrupted"),  # Ctrl-C: stopped, not failed
}


def recorded_sweep(root: Path) -> Path:
    """A study folder as `dtec run` leaves it: study.json, the journal, trial run folders with metrics."""
    import optuna

    folder = root / "runs" / "flood" / "local" / "sweep-0123456789ab"
    (folder / "workers").mkdir(parents=True)
    spec = {"id": folder.name, "blueprint": str(root / "flood.twin"), "target": "local", "sets": [], "machines": [],
            "sweep": SWEEP, "goal": "minimize", "storage": studies.storage_url(SWEEP, folder), "project": str(root)}
    (folder / "study.json").write_text(json.dumps(spec), encoding="utf-8")
    (folder / "ir.json").write_text(json.dumps({"twin": {"name": "river-levels"}}), encoding="utf-8")  # the study's, abridged
    study = optuna.create_study(study_name=spec["id"], storage=studies.storage(spec), direction="minimize")
    dims = dimensions(SWEEP)
    for number, (state, lr, hidden, curve, reason) in TRIALS.items():
        run = folder / f"trial-{number:04d}" / "run"
        run.mkdir(parents=True)
        records = [{"kind": "step", "step": 1, "epoch": 1, "loss": 1.0}]
        records += [{"kind": "epoch", "epoch": e + 1, "train_loss": v + 0.1, "val_loss": v} for e, v in enumerate(curve)]
        (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
        study.add_trial(optuna.trial.create_trial(
            state=optuna.trial.TrialState[state], params={"train.optimizer.lr": lr, "model.net.arch.hidden": hidden},
            distributions={d.key: studies._distribution(d) for d in dims},
            value=min(curve) if state == "COMPLETE" else None,
            intermediate_values=dict(enumerate(curve)),
            user_attrs={"folder": str(run.parent), **({"reason": reason} if reason else {}),
                        **({"stopped": True} if reason and reason.startswith("stopped") else {})},
        ))
    return folder


def dtec(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "dtec", *args], cwd=cwd, env=env, text=True, capture_output=True, timeout=600)


def test_a_sweeps_report_draws_its_trials_and_says_what_it_found(tmp_path: Path, browser_renders) -> None:
    folder = recorded_sweep(tmp_path)
    done = dtec("report", str(folder), "-o", "rep", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    out = tmp_path / "rep"
    data = json.loads((out / "report.json").read_text())
    assert data["best"]["number"] == 1 and data["best"]["value"] == 0.2
    assert data["best"]["params"] == {"train.optimizer.lr": 3e-2, "model.net.arch.hidden": "[32, 32]"}
    said = " ".join(data["verdict"])
    assert "Best trial 1: val_loss 0.2" in said and "model.net.arch.hidden = [32, 32]" in said
    assert "4 complete, 1 pruned" in said and "1 failed" in said and "its worker died (1)" in said
    assert "1 stopped by Ctrl-C and run again" in said and "interrupted" not in said
    # fANOVA over the four completed trials: both parameters, shares summing to one.
    assert set(data["importances"]["values"]) == {"train.optimizer.lr", "model.net.arch.hidden"}
    assert sum(data["importances"]["values"].values()) == pytest.approx(1.0)
    curves = {t["number"]: t["curve"] for t in data["trials"]}
    assert curves == {n: t[3] for n, t in TRIALS.items()}  # read from each trial's metrics.jsonl
    rows = list(csv.DictReader((out / "trials.csv").open()))
    assert [(r["number"], r["state"]) for r in rows] == [(str(n), t[0].lower()) for n, t in TRIALS.items()]
    assert rows[3]["reason"] == "its worker died"
    from PIL import Image

    for stem in ("history", "importances", "parallel", "curves"):
        assert (out / f"{stem}.svg").stat().st_size > 0
        with Image.open(out / f"{stem}.png") as image:
            assert image.size == (640, 400) and len(image.convert("RGB").getcolors(maxcolors=1 << 20) or [0] * 999) > 20
    page = (out / "report.html").read_text()
    assert "http://" not in page and "https://" not in page and page.count("data:image/png;base64,") == 4
    assert "its worker died" in page and "[32, 32]" in (out / "report.md").read_text()
    assert "Sweep report: river-levels, sweep-0123456789ab" in page  # the twin's name, not the blueprint file's
    browser_renders(out / "report.html", tmp_path / "shot.png")


def test_a_sweep_moved_elsewhere_is_reported_from_its_own_folder(tmp_path: Path) -> None:
    folder = recorded_sweep(tmp_path / "first")
    moved = tmp_path / "moved"
    folder.rename(moved)  # study.json still names the old journal and trial folders
    done = dtec("report", str(moved), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    data = json.loads((moved / "report" / "report.json").read_text())
    assert len(data["trials"]) == len(TRIALS) and data["trials"][1]["curve"] == [0.5, 0.3, 0.2]


def test_a_sweep_with_no_trial_says_so(tmp_path: Path) -> None:
    folder = tmp_path / "sweep-0123456789ab"
    folder.mkdir()
    spec = {"id": folder.name, "blueprint": "x.twin", "sweep": SWEEP, "goal": "minimize", "storage": "unused"}
    (folder / "study.json").write_text(json.dumps(spec), encoding="utf-8")
    done = dtec("report", str(folder), cwd=tmp_path)
    assert done.returncode == 1 and "holds no trial yet" in done.stderr and "Traceback" not in done.stderr
