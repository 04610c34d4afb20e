"""A sweep as a Slurm job array on the local cluster: its budget, best.twin, a rerun, a cancelled task."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dtec.analysis import analyse

REPO = Path(__file__).resolve().parent.parent
# One CPU per worker: the node's two CPUs hold both array tasks at once.
BLUEPRINT = (Path(__file__).resolve().parent / "fixtures" / "flood-sweep.twin").read_text().replace("\nsweep {", """
target "slurm" {
  partition = "PARTITION"
  walltime = 10min
  machine {
    cpus = 1
    gpus = 0
  }
}

sweep {""")


def dtec(tmp_path: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "dtec", *args], cwd=tmp_path, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def study(tmp_path: Path):
    import optuna

    [folder] = (tmp_path / "runs" / "flood" / "slurm").glob("sweep-*")
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(folder / "journal.log")))
    return folder, optuna.load_study(study_name=folder.name, storage=storage)


def write(tmp_path: Path, partition: str, epochs: int) -> None:
    text = BLUEPRINT.replace("PARTITION", partition).replace("epochs = 2", f"epochs = {epochs}")
    (tmp_path / "bp.twin").write_text(text, encoding="utf-8")


def finish(process: subprocess.Popen, tmp_path: Path) -> str:
    try:
        out, _ = process.communicate(timeout=600)
    except subprocess.TimeoutExpired:
        process.kill()
        subprocess.run(["scancel", "--name=flood"], check=False)
        logs = "\n".join(p.read_text() for p in tmp_path.rglob("workers/*.err"))
        pytest.fail(f"the sweep did not end in 600 s\n{logs}")
    return out


@pytest.mark.slurm
@pytest.mark.slow
def test_a_sweep_runs_as_one_job_array(slurm: str, tmp_path: Path) -> None:
    write(tmp_path, slurm, 2)
    detached = dtec(tmp_path, "run", "bp.twin", "-t", "slurm", "--detach")
    out = finish(detached, tmp_path)
    assert detached.returncode == 0, out
    job = out.strip().splitlines()[-1]
    assert job.isdigit(), out
    folder, _ = study(tmp_path)
    script = (folder / "workers.sbatch").read_text()
    assert "#SBATCH --array=0-1" in script and "--cpus-per-task=1" in script
    # Followed to its end by the same command, which does not submit another array.
    out = finish(follow := dtec(tmp_path, "run", "bp.twin", "-t", "slurm"), tmp_path)
    assert follow.returncode == 0 and f"job array {job} still runs" in out and "best trial" in out, out
    _, s = study(tmp_path)
    states = [t.state.name for t in s.trials]
    assert states.count("COMPLETE") + states.count("PRUNED") == 4, states
    # Two workers, each an array task of that job, ran the trials inside their allocations.
    owners = {t.user_attrs["owner"]["slurm_job"] for t in s.trials}
    assert len(owners) == 2, owners
    assert all((folder / f"trial-{t.number:04d}" / "run" / "metrics.jsonl").is_file() for t in s.trials)
    assert s.best_value == min(t.value for t in s.trials if t.state.name == "COMPLETE")
    assert analyse(folder / "best.twin", environ={}).diagnostics == ()
    # The trials' runs are indexed in the project's runs/, not in the study folder.
    assert not (folder / "runs").exists()
    again = dtec(tmp_path, "run", "bp.twin", "-t", "slurm")
    out = finish(again, tmp_path)
    assert again.returncode == 0 and "submitted" not in out, out
    assert len(study(tmp_path)[1].trials) == len(s.trials)


@pytest.mark.slurm
@pytest.mark.slow
def test_a_cancelled_array_task_fails_its_trial_which_is_retried(slurm: str, tmp_path: Path) -> None:
    write(tmp_path, slurm, 150)  # about 15 s of training: cancelled mid-trial
    process = dtec(tmp_path, "run", "bp.twin", "-t", "slurm")
    victim = None
    for _ in range(600):
        # The journal file is there before the study's first record: KeyError until then.
        with contextlib.suppress(KeyError):
            folder, s = study(tmp_path) if list((tmp_path / "runs").rglob("journal.log")) else (None, None)
            running = [t for t in s.get_trials() if t.state.name == "RUNNING"
                       and (folder / f"trial-{t.number:04d}" / "run" / "metrics.jsonl").is_file()] if s else []
            if running:
                victim = running[0]
                break
        time.sleep(0.5)
    assert victim is not None, "no trial started training"
    subprocess.run(["scancel", str(victim.user_attrs["owner"]["slurm_job"])], check=True, timeout=30)
    out = finish(process, tmp_path)
    assert process.returncode == 0, out
    _, s = study(tmp_path)
    killed = s.trials[victim.number]
    assert killed.state.name == "FAIL" and killed.user_attrs["reason"] == "its worker died"
    assert any(t.user_attrs.get("retry_of") == victim.number and t.state.name in ("COMPLETE", "PRUNED") for t in s.trials)
    states = [t.state.name for t in s.trials]
    assert states.count("COMPLETE") + states.count("PRUNED") == 4, states
