"""A sweep whose study lives in a real PostgreSQL server, which the test starts (conftest.py's `postgres`; slow: trains)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dtec.analysis import analyse

REPO = Path(__file__).resolve().parent.parent
# Trials of about 15 s: a worker is killed mid-trial.
BLUEPRINT = (Path(__file__).resolve().parent / "fixtures" / "flood-sweep.twin").read_text()
BLUEPRINT = BLUEPRINT.replace("epochs = 2", "epochs = 150").replace("seed = 1", 'seed = 1\n  storage = "URL"')


def dtec(tmp_path: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "dtec", *args], cwd=tmp_path, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def load(url: str):
    import optuna

    [summary] = optuna.get_all_study_summaries(storage=url)
    return optuna.load_study(study_name=summary.study_name, storage=url)


@pytest.mark.slow
def test_a_sweep_in_postgresql_survives_a_killed_worker_by_its_heartbeat(postgres: str, tmp_path: Path) -> None:
    import optuna

    (tmp_path / "bp.twin").write_text(BLUEPRINT.replace("URL", postgres), encoding="utf-8")
    process = dtec(tmp_path, "run", "bp.twin")
    victim = None
    for _ in range(600):
        created = optuna.get_all_study_summaries(storage=postgres)
        running = [t for t in load(postgres).trials if t.state.name == "RUNNING" and "run" in t.user_attrs] if created else []
        if running:
            victim = running[0]
            break
        time.sleep(0.5)
    assert victim is not None, "no trial started"
    os.kill(victim.user_attrs["owner"]["pid"], signal.SIGKILL)
    out, _ = process.communicate(timeout=900)
    assert process.returncode == 0, out
    s = load(postgres)
    # Optuna's heartbeat failed the killed worker's trial, and its callback enqueued it again.
    assert s.trials[victim.number].state.name == "FAIL"
    retried = [t for t in s.trials if optuna.storages.RetryFailedTrialCallback.retried_trial_number(t) == victim.number]
    assert retried and retried[0].params == victim.params, [t.system_attrs for t in s.trials]
    states = [t.state.name for t in s.trials]
    assert states.count("COMPLETE") + states.count("PRUNED") == 4, states
    [folder] = (tmp_path / "runs" / "flood" / "local").glob("sweep-*")
    assert not (folder / "journal.log").exists()
    assert f"lr = {s.best_params['train.optimizer.lr']!r}" in (folder / "best.twin").read_text()
    assert analyse(folder / "best.twin", environ={}).diagnostics == ()
    assert "its worker died (no heartbeat)" in (folder / "trials.csv").read_text()
    again = dtec(tmp_path, "run", "bp.twin")
    again.communicate(timeout=300)
    assert again.returncode == 0 and len(load(postgres).trials) == len(s.trials)
