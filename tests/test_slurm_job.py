"""The generated job.sbatch runs for real on the local Slurm: two CPU ranks, then a pre-emption."""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import pytest

from dtec.compiler import compile_blueprint

TINY = Path(__file__).resolve().parent / "backends" / "tiny.twin"
# The node has 2 CPUs: tiny.twin asks for 1 task x 2 CPUs (torchrun) or 2 x 1 (srun), never more.
JOB_TIMEOUT_S = 300
PREEMPT_TIMEOUT_S = 480


def write_bundle(folder: Path, partition: str, sets: tuple[str, ...] = ()) -> Path:
    """Compile tiny.twin for the `slurm` target into `folder`, as `dtec compile` would."""
    bundle, diagnostics = compile_blueprint(
        TINY, "slurm", environ={}, sets=(f'target.slurm.partition="{partition}"', *sets)
    )
    assert bundle is not None, [(d.code, d.message) for d in diagnostics]
    for name, text in bundle.files.items():
        (folder / name).write_text(text)
    (folder / "logs").mkdir()  # Slurm opens the log files before the script starts
    return folder


def job_state(job: str) -> str:
    show = subprocess.run(
        ["scontrol", "show", "job", job], capture_output=True, text=True, timeout=30
    )
    found = re.search(r"JobState=(\S+)", show.stdout)
    return found.group(1) if found else "UNKNOWN"


def logs(folder: Path) -> str:
    return "\n".join(p.read_text(errors="replace") for p in sorted((folder / "logs").glob("*")))


@pytest.mark.slurm
@pytest.mark.slow
def test_two_rank_job_completes(slurm: str, tmp_path: Path) -> None:
    folder = write_bundle(tmp_path, slurm)
    command = ["sbatch", "--parsable", "--wait", "job.sbatch"]
    try:
        run = subprocess.run(
            command, cwd=folder, capture_output=True, text=True, timeout=JOB_TIMEOUT_S
        )
    except subprocess.TimeoutExpired:
        subprocess.run(["scancel", "--name=tiny-mlp"], check=False)
        pytest.fail(f"no end in {JOB_TIMEOUT_S} s (pending for want of CPUs?)\n{logs(folder)}")
    job = run.stdout.split(";")[0].strip()
    assert run.returncode == 0, f"sbatch exited {run.returncode}: {run.stderr}\n{logs(folder)}"
    assert job_state(job) == "COMPLETED"
    out = (folder / "logs" / f"tiny-mlp-{job}.out").read_text()
    assert re.search(r"\b2 ranks?\b", out), out
    summary = json.loads((folder / "run" / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["world_size"] == 2
    assert (folder / "run" / "metrics.jsonl").stat().st_size > 0


@pytest.mark.slurm
@pytest.mark.slow
def test_preempted_job_checkpoints_requeues_and_resumes(slurm: str, tmp_path: Path) -> None:
    # Long enough to be signalled mid-run; checkpoints only on pre-emption.
    sets = ("train.epochs=400", "train.checkpoint={ every = 1000, keep = 1 }")
    folder = write_bundle(tmp_path, slurm, sets)
    submit = subprocess.run(
        ["sbatch", "--parsable", "job.sbatch"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert submit.returncode == 0, submit.stderr
    job = submit.stdout.split(";")[0].strip()
    deadline = time.monotonic() + PREEMPT_TIMEOUT_S
    try:
        metrics = folder / "run" / "metrics.jsonl"
        while not (metrics.exists() and metrics.stat().st_size > 0):
            assert time.monotonic() < deadline, f"training never started\n{logs(folder)}"
            time.sleep(1)
        # What Slurm does ahead of the time limit with --signal=B:USR1: signal the batch shell.
        subprocess.run(["scancel", "--signal=USR1", "--batch", job], check=True, timeout=30)
        requeued = False
        while (state := job_state(job)) != "COMPLETED":
            assert state not in ("FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL"), (
                f"{state}\n{logs(folder)}"
            )
            assert time.monotonic() < deadline, f"still {state}\n{logs(folder)}"
            if state == "PENDING" and not requeued:
                # A requeued job waits for its begin time; start it soon to keep the test short.
                # Not `now`: slurmd refuses a launch whose credential dates from the same second
                # as the requeue's revocation ("Job credential revoked"), and the job fails.
                subprocess.run(
                    ["scontrol", "update", f"JobId={job}", "StartTime=now+2"], check=False, timeout=30
                )
                requeued = True
            time.sleep(2)
    finally:
        if job_state(job) not in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"):
            subprocess.run(["scancel", job], check=False)
    text = logs(folder)
    assert re.search(r"dtec: stopped for pre-emption at step \d+, checkpoint saved; requeued job", text), text
    # A planned stop is no failure: neither torchrun nor srun reports one.
    assert "ChildFailedError" not in text and "srun: error" not in text, text
    summary = json.loads((folder / "run" / "summary.json").read_text())
    assert summary["status"] == "completed", summary
    assert summary["resumed_from"] and "checkpoints" in summary["resumed_from"], summary
