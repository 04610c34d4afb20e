"""`dtec run` as a user types it: the quickstart trains locally, a job goes through the real Slurm."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TINY = REPO / "tests" / "backends" / "tiny.twin"
SMALL_QUICKSTART = ("data.gauges.source=synthetic(samples = 1024, shape = [30, 8], targets = 1, seed = 42)",)


def dtec(*args: str, cwd: Path, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dtec", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env
    )


def epoch_losses(run_dir: Path) -> list[float]:
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [m["train_loss"] for m in lines if m.get("kind") == "epoch"]


@pytest.mark.slow
def test_quickstart_trains_with_two_ranks_and_the_loss_falls(tmp_path: Path) -> None:
    sets = [arg for s in SMALL_QUICKSTART for arg in ("--set", s)]
    result = dtec("run", str(REPO / "blueprints" / "quickstart.twin"), "-o", str(tmp_path / "qs"), *sets, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads((tmp_path / "qs" / "run" / "summary.json").read_text())
    assert (summary["status"], summary["world_size"], summary["strategy"]) == ("completed", 2, "ddp")
    losses = epoch_losses(tmp_path / "qs" / "run")
    assert len(losses) == 3 and losses[-1] < losses[0]
    assert "Run " in result.stderr and "samples/s" in result.stderr
    assert {"train.py", "run.sh", "ir.json", "manifest.json"} <= {p.name for p in (tmp_path / "qs").iterdir()}


@pytest.mark.slow
def test_the_training_runs_in_dtecs_own_interpreter(tmp_path: Path) -> None:
    """A `python` first on PATH (another venv, the system's) is not the one dtec runs in."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").write_text("#!/bin/sh\necho 'the wrong python' >&2\nexit 42\n")
    (bin_dir / "python").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    env.pop("PYTHON", None)
    result = dtec("run", str(TINY), "-o", str(tmp_path / "tiny"), cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"with {sys.executable}" in result.stderr


def test_dry_run_prints_the_commands(tmp_path: Path) -> None:
    local = dtec("run", str(TINY), "-t", "local", "-o", str(tmp_path / "l"), "--dry-run", cwd=tmp_path)
    assert local.returncode == 0 and "bash run.sh --resume never" in local.stdout  # a new run
    slurm = dtec("run", str(TINY), "-t", "slurm", "-o", str(tmp_path / "s"), "--dry-run", cwd=tmp_path)
    assert slurm.returncode == 0 and "sbatch --parsable job.sbatch" in slurm.stdout
    kube = dtec("run", str(REPO / "blueprints" / "cyclone-detection.twin"), "-t", "kubernetes", "-o", str(tmp_path / "k"), "--dry-run", cwd=tmp_path)
    assert kube.returncode == 0 and "kubectl apply -f job.yaml" in kube.stdout
    for result, folder in ((local, "l"), (slurm, "s"), (kube, "k")):
        assert f"would write {tmp_path / folder}/ (" in result.stderr
    assert list(tmp_path.iterdir()) == []  # a dry run writes nothing


def test_missing_scheduler_tools_are_a_clear_error(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": str(Path(sys.executable).parent)}  # python, but no sbatch or kubectl
    result = dtec("run", str(TINY), "-t", "slurm", "-o", str(tmp_path / "s"), cwd=tmp_path, env=env)
    assert result.returncode == 2
    assert "`sbatch` is not on the PATH" in result.stderr and "--dry-run" in result.stderr


FAILING = """
twin "t" {{}}
data "d" {{
  source = npz(path = "x.npz", x = "x", y = "y")
  batch  = 8
}}
model "m" {{
  arch  = {arch}
  input = data.d
  path  = "code"
}}
train {{
  loss = mse
}}
strategy {{
  kind           = ddp
  procs_per_node = 2
}}
"""
RAISING_MODEL = """
class Net:
    def __init__(self, features):
        raise ValueError(f"no net for {features} features")
"""


@pytest.mark.slow
@pytest.mark.parametrize(
    ("arch", "cause"),
    [
        # The file is there when linting; the job reads another data root, which lacks it.
        ("mlp(input = 8, output = 1)", "data file not found: {folder}/moved/x.npz ("),
        ('python(class = "bad:Net", features = 8)',
         "ValueError: no net for 8 features (at code/code/bad.py:4; "),  # the bundle's copy
    ],
)
def test_a_failing_training_says_why_in_one_line(tmp_path: Path, arch: str, cause: str) -> None:
    """Two ranks fail alike: one line says why, the tracebacks and torchrun's report go to logs."""
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "bad.py").write_text(RAISING_MODEL)
    import numpy as np

    np.savez(tmp_path / "x.npz", x=np.zeros((64, 8), "float32"), y=np.zeros((64, 1), "float32"))
    (tmp_path / "f.twin").write_text(FAILING.format(arch=arch))
    root = str(tmp_path / ("moved" if arch.startswith("mlp") else ""))
    result = dtec("run", "f.twin", "-o", "job", cwd=tmp_path, env={**os.environ, "DTEC_DATA_ROOT": root})
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    errors = [line for line in result.stderr.splitlines() if line.startswith("train.py: error: ")]
    assert len(errors) == 1, output
    assert cause.format(folder=tmp_path) in errors[0], output
    rank, log = re.search(r"[(; ]rank (\d); full traceback in (\S+)\)$", errors[0]).groups()
    assert Path(log) == tmp_path / "job" / "run" / "logs" / f"rank{rank}.log"
    assert "Traceback (most recent call last)" in Path(log).read_text()
    assert "Traceback" not in output and len(output.splitlines()) <= 4, output
    report = (tmp_path / "job" / "run" / "logs" / "launcher.log").read_text()
    assert "ChildFailedError" in report and f"traceback : {cause.format(folder=tmp_path)}" in report


@pytest.mark.slurm
@pytest.mark.slow
def test_dtec_run_submits_to_slurm_and_follows_the_job(slurm: str, tmp_path: Path) -> None:
    result = dtec("run", str(TINY), "-t", "slurm", "-o", str(tmp_path / "job"), "--set", f'target.slurm.partition="{slurm}"', cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "submitted Slurm job" in result.stderr and "completed" in result.stderr
    summary = json.loads((tmp_path / "job" / "run" / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["world_size"] == 2
    assert (tmp_path / "job" / "run" / "metrics.jsonl").stat().st_size > 0
