"""The local Slurm cluster that scripts/slurm-local.sh starts runs a real two-rank job."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

JOB_SCRIPT = """#!/bin/bash
srun bash -c 'echo "rank $SLURM_PROCID of $SLURM_NTASKS on $(hostname -s)"'
"""


@pytest.mark.slurm
def test_two_ranks_through_sbatch_and_srun(slurm: str, tmp_path: Path) -> None:
    script = tmp_path / "ranks.sh"
    script.write_text(JOB_SCRIPT)
    out = tmp_path / "ranks.out"
    cmd = [
        "sbatch", "--parsable", "--wait",
        f"--partition={slurm}", "--nodes=1", "--ntasks-per-node=2", "--time=5",
        "--job-name=dtec-test-ranks", f"--chdir={tmp_path}", f"--output={out}",
        str(script),
    ]  # fmt: skip
    try:
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    except subprocess.TimeoutExpired as exc:
        subprocess.run(["scancel", "--name=dtec-test-ranks"], check=False)
        pytest.fail(f"sbatch --wait did not return in 180 s: {exc.stdout!r} {exc.stderr!r}")
    log = out.read_text() if out.exists() else "<no output file>"
    assert run.returncode == 0, f"sbatch exited {run.returncode}: {run.stderr}\n{log}"
    job_id = run.stdout.split(";")[0].strip()
    assert job_id.isdigit(), run.stdout
    ranks = sorted(line.split()[1] for line in log.splitlines() if line.startswith("rank "))
    assert ranks == ["0", "1"], log
    assert all(" of 2 " in line for line in log.splitlines() if line.startswith("rank ")), log
    # Accounting is off; the finished job is still known to slurmctld (MinJobAge).
    show = subprocess.run(
        ["scontrol", "show", "job", job_id], capture_output=True, text=True, timeout=30
    )
    assert "JobState=COMPLETED" in show.stdout, show.stdout + show.stderr


def test_shellcheck_on_path() -> None:
    if shutil.which("shellcheck"):
        return
    message = "shellcheck is not on PATH; scripts/install-deps.sh installs it"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)
