"""A sweep run for real: local workers, pruning, best.twin, a killed worker (slow: trains)."""

from __future__ import annotations

import contextlib
import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dtec import runs
from dtec.analysis import analyse
from dtec.host import cpu_count

BLUEPRINT = (Path(__file__).resolve().parent / "fixtures" / "flood-sweep.twin").read_text()  # a sweep of 4 trials, 2 epochs each
REPO = Path(__file__).resolve().parent.parent


def dtec(tmp_path: Path, *args: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "dtec", *args], cwd=tmp_path, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kwargs)


def study(tmp_path: Path):
    import optuna

    [folder] = (tmp_path / "runs" / "flood" / "local").glob("sweep-*")
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(folder / "journal.log")))
    return folder, optuna.load_study(study_name=folder.name, storage=storage)


def states(s) -> list[str]:
    return [t.state.name for t in s.get_trials()]


@pytest.mark.slow
def test_a_local_sweep_prunes_and_writes_the_best_blueprint(tmp_path: Path) -> None:
    # Epochs of ~0.6 s: long enough for the worker, which reads the metrics five times a second, to stop a trial in its second.
    (tmp_path / "bp.twin").write_text(BLUEPRINT.replace("trials = 4", "trials = 8").replace("samples = 256", "samples = 4096"), encoding="utf-8")
    out, _ = dtec(tmp_path, "run", "bp.twin").communicate(timeout=900)
    assert "best trial" in out, out
    folder, s = study(tmp_path)
    assert states(s).count("COMPLETE") + states(s).count("PRUNED") == 8
    assert "PRUNED" in states(s)
    pruned = next(t for t in s.get_trials() if t.state.name == "PRUNED")
    assert len(pruned.intermediate_values) == 1  # stopped after its first epoch of two
    # A trial is pruned only while it trains: each pruned one stopped before its last epoch, each complete one did not.
    for t in s.get_trials():
        epochs = (folder / f"trial-{t.number:04d}" / "run" / "metrics.jsonl").read_text().count('"kind": "epoch"')
        assert (t.state.name, epochs) in (("PRUNED", 1), ("COMPLETE", 2)), (t.number, t.state.name, epochs)
        status = runs.state(runs.load(folder / f"trial-{t.number:04d}")).status  # as `dtec runs` lists it
        assert status == t.state.name.lower().replace("complete", "completed"), (t.number, status)
    assert s.best_value == min(t.value for t in s.get_trials() if t.state.name == "COMPLETE")
    best = (folder / "best.twin").read_text(encoding="utf-8")
    assert "# the flood twin, tuned" in best and "# per rank" in best and "sweep" not in best
    assert f"lr = {s.best_params['train.optimizer.lr']!r}" in best
    assert analyse(folder / "best.twin", environ={}).diagnostics == ()
    rows = list(csv.DictReader((folder / "trials.csv").open()))
    assert [r["state"] for r in rows] == [x.lower() for x in states(s)]
    # Every trial is a run folder of its own, with its metrics.
    assert all((folder / f"trial-{t.number:04d}" / "run" / "metrics.jsonl").is_file() for t in s.get_trials())
    # Two trials at once share this computer's cores: threads fighting over them made trials 10x slower.
    threads = f"export OMP_NUM_THREADS={max(1, cpu_count() // 2)}\n"
    assert all(threads in (folder / f"trial-{t.number:04d}" / "run.sh").read_text() for t in s.get_trials())


@pytest.mark.slow
def test_a_killed_worker_is_retried_and_a_rerun_adds_nothing(tmp_path: Path) -> None:
    (tmp_path / "bp.twin").write_text(BLUEPRINT.replace("epochs = 2", "epochs = 6"), encoding="utf-8")
    process = dtec(tmp_path, "run", "bp.twin")
    owner = None
    for _ in range(600):
        journal = list((tmp_path / "runs").rglob("journal.log"))
        with contextlib.suppress(KeyError):  # the journal file is there before the study's first record
            running = [t for t in study(tmp_path)[1].get_trials() if t.state.name == "RUNNING" and "run" in t.user_attrs] if journal else []
            if running:
                owner = running[0]
                break
        time.sleep(0.5)
    assert owner is not None, "no trial started"
    os.kill(owner.user_attrs["owner"]["pid"], signal.SIGKILL)
    out, _ = process.communicate(timeout=900)
    assert process.returncode == 0, out
    _, s = study(tmp_path)
    killed = s.trials[owner.number]
    assert killed.state.name == "FAIL" and killed.user_attrs["reason"] == "its worker died"
    assert any(t.user_attrs.get("retry_of") == owner.number and t.state.name in ("COMPLETE", "PRUNED") for t in s.trials)
    done = len(s.trials)
    again = dtec(tmp_path, "run", "bp.twin")
    again.communicate(timeout=300)
    assert again.returncode == 0 and len(study(tmp_path)[1].trials) == done


def _until_a_trial_trains(process: subprocess.Popen, tmp_path: Path) -> list:
    """Wait until a trial wrote a step, its ranks forked under a worker; return `process`'s descendants."""
    import psutil

    for _ in range(600):
        family = psutil.Process(process.pid).children(recursive=True)
        stepped = [m for m in tmp_path.glob("runs/flood/local/sweep-*/trial-*/run/metrics.jsonl") if m.stat().st_size]
        if stepped and any("dtec.localworker" in _cmdline(p) for p in family):
            return family
        time.sleep(0.5)
    pytest.fail("no trial started training")


@pytest.mark.slow
def test_ctrl_c_stops_the_trials_and_a_rerun_runs_them_again_spending_no_retry(tmp_path: Path) -> None:
    (tmp_path / "bp.twin").write_text(BLUEPRINT.replace("epochs = 2", "epochs = 6"), encoding="utf-8")
    options = ("--set", "sweep.retries=0", "--set", "sweep.pruner=none")  # no retry to spend: a stopped trial needs none
    process = dtec(tmp_path, "run", "bp.twin", *options)
    _until_a_trial_trains(process, tmp_path)
    process.send_signal(signal.SIGINT)
    out, _ = process.communicate(timeout=180)
    assert process.returncode == 130 and "--set sweep.retries=0 --set sweep.pruner=none` continues it" in out, out
    _, s = study(tmp_path)
    stopped = [t for t in s.get_trials() if t.user_attrs.get("stopped")]
    assert stopped and all(t.state.name == "FAIL" and t.user_attrs["reason"].startswith("stopped") for t in stopped)
    assert not [t for t in s.get_trials() if t.state.name in ("RUNNING", "FAIL") and not t.user_attrs.get("stopped")]
    again = dtec(tmp_path, "run", "bp.twin", *options)
    out, _ = again.communicate(timeout=900)
    assert again.returncode == 0, out
    assert "4 complete, 0 pruned, 0 running, 0 failed, of 4" in out, out
    _, s = study(tmp_path)
    reruns = {t.user_attrs.get("retry_of"): t for t in s.get_trials() if t.state.name == "COMPLETE"}
    assert all(reruns[t.number].params == t.params for t in stopped)


@pytest.mark.slow
def test_a_killed_dtec_run_leaves_no_process_and_a_rerun_continues(tmp_path: Path) -> None:
    import psutil

    (tmp_path / "bp.twin").write_text(BLUEPRINT.replace("epochs = 2", "epochs = 6"), encoding="utf-8")
    process = dtec(tmp_path, "run", "bp.twin")
    family = _until_a_trial_trains(process, tmp_path)
    _, s = study(tmp_path)
    done = {t.number: t.value for t in s.get_trials() if t.state.name == "COMPLETE"}
    ended = {t.number for t in s.get_trials() if t.state.is_finished()}
    process.kill()
    process.communicate(timeout=60)
    _, alive = psutil.wait_procs(family, timeout=120)
    assert not [(p.pid, _cmdline(p)) for p in alive if _cmdline(p)]  # a zombie or a gone process has none
    after = study(tmp_path)[1].get_trials()
    # Orphaned workers would have gone on: their trials ended, and more were asked and run.
    assert [t.number for t in after if t.state.is_finished() and t.number not in ended] == []
    killed = [t.number for t in after if t.state.name == "RUNNING"]
    assert killed, "no trial was running when dtec run was killed"
    again = dtec(tmp_path, "run", "bp.twin")
    out, _ = again.communicate(timeout=900)
    assert again.returncode == 0, out
    _, s = study(tmp_path)
    assert all(s.trials[n].state.name == "COMPLETE" and s.trials[n].value == v for n, v in done.items())
    for number in killed:
        assert s.trials[number].state.name == "FAIL" and s.trials[number].user_attrs["reason"] == "its worker died"
        assert any(t.user_attrs.get("retry_of") == number for t in s.trials)
    assert states(s).count("COMPLETE") + states(s).count("PRUNED") == 4


def _cmdline(p) -> list[str]:
    import psutil

    try:
        return p.cmdline()
    except psutil.Error:
        return []


def test_the_command_that_continues_a_study_keeps_its_options() -> None:
    from dtec.study import _again

    spec = {"target": "local", "sets": ["sweep.trials=16", "train.loss=huber(delta = 0.5)"], "machines": ["site machines"]}
    assert _again(Path("bp.twin"), spec) == ("`dtec run bp.twin -t local --set sweep.trials=16 "
                                             "--set 'train.loss=huber(delta = 0.5)' --machines 'site machines'`")
