"""Scaling studies through a queue: points as real Slurm jobs on the local cluster, Kubernetes workloads."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
STUDY = REPO / "tests" / "fixtures" / "study.twin"


def dtec(tmp_path: Path, *args: str, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, **(env or {}), "PYTHONPATH": str(REPO)}
    env.pop("DTEC_DATA_ROOT", None)
    try:
        return subprocess.run([sys.executable, "-m", "dtec", *args], cwd=tmp_path, env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        subprocess.run(["scancel", "--name=t"], check=False)
        pytest.fail(f"dtec {' '.join(args)} did not end in {timeout} s: {exc.stderr}")


def files(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def jobs_of(point: Path) -> list[str]:
    record = json.loads((point / "run" / "run.json").read_text())
    return [j["job_id"] for j in record["launches"] if j["kind"] == "slurm"]


@pytest.mark.slurm
@pytest.mark.slow
def test_a_study_runs_its_points_as_slurm_jobs_and_resumes_only_its_configuration(slurm: str, tmp_path: Path) -> None:
    shutil.copy(STUDY, tmp_path / "s.twin")
    submitted = dtec(tmp_path, "run", "s.twin", "-t", "slurm", "--detach", "--format", "json")
    assert submitted.returncode == 0, submitted.stderr
    said = json.loads(submitted.stdout)
    study = tmp_path / "runs" / "t" / "slurm" / said["study"]
    assert sorted(said["points"]) == ["r1", "r2"] and all(j.isdigit() for j in said["points"].values())
    # The second point is cancelled (pending behind the first on the node's two CPUs, or just started).
    subprocess.run(["scancel", said["points"]["r2"]], check=True, timeout=30)
    changed = dtec(tmp_path, "run", "s.twin", "--resume", said["study"], "--no-check", "--set", "train.optimizer.lr=0.5")
    assert changed.returncode == 1 and "point r1: its configuration changed" in changed.stderr, changed.stderr
    assert jobs_of(study / "points" / "r2") == [said["points"]["r2"]]  # nothing submitted
    followed = dtec(tmp_path, "run", "s.twin", "--resume", said["study"], "--no-check")
    out = followed.stderr
    assert followed.returncode == 0, out
    assert "point 1 of 2: r1" in out and "point 2 of 2: r2 (2 ranks, 1 node, batch 8 per rank), resumed" in out
    assert "point 2 of 2 (r2): completed" in out and "2 of 2 ended" in out
    assert f"dtec: report: {study}/report/report.html".replace(str(tmp_path) + "/", "") in out
    # Each point is a Slurm job (r2: the cancelled one, then its resumption), known to Slurm, with its logs.
    one, two = jobs_of(study / "points" / "r1"), jobs_of(study / "points" / "r2")
    assert one == [said["points"]["r1"]] and len(two) == 2 and two[0] == said["points"]["r2"]
    for point, job in (("r1", one[-1]), ("r2", two[-1])):
        shown = subprocess.run(["scontrol", "show", "job", job], capture_output=True, text=True, timeout=30).stdout
        assert "JobState=COMPLETED" in shown and f"points/{point}" in shown, shown
        assert list((study / "points" / point / "logs").glob(f"*-{job}.out"))
        measured = json.loads((study / "points" / point / "run" / "scaling.json").read_text())
        assert measured["ranks"] == int(point[1:]) and measured["global_batch"] == 16 and measured["steps"] == 30
    report = dtec(tmp_path, "report", str(study), "-o", "rep")
    assert report.returncode == 0, report.stderr
    data = json.loads((tmp_path / "rep" / "report.json").read_text())
    reason = data["points"][1]["energy"]["reason"]
    assert "Slurm's energy accounting is off here (AcctGatherEnergyType = acct_gather_energy/none)" in reason
    # A completed study is kept as it is; a second run is a new study.
    before = files(study)
    again = dtec(tmp_path, "run", "s.twin", "--resume", said["study"], "--no-check")
    assert again.returncode == 1 and "every point completed" in again.stderr
    planned = dtec(tmp_path, "run", "s.twin", "-t", "slurm", "--dry-run")
    assert planned.returncode == 0 and said["study"] not in planned.stdout and "sbatch" in planned.stdout
    assert files(study) == before


STUB_KUBECTL = """#!/bin/sh
printf '%s %s\\n' "${PWD##*/}" "$*" >> "$KUBECTL_CALLS"
case "$1" in
  get) echo '{"status": {"conditions": [{"type": "Complete", "status": "True", "reason": "Completed"}]}}' ;;
esac
"""


def test_a_kubernetes_study_applies_one_workload_per_point(tmp_path: Path) -> None:
    shutil.copy(STUDY, tmp_path / "s.twin")
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "kubectl").write_text(STUB_KUBECTL)
    (tmp_path / "bin" / "kubectl").chmod(0o755)
    env = {"PATH": f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}", "KUBECTL_CALLS": str(tmp_path / "calls")}
    done = dtec(tmp_path, "run", "s.twin", "-t", "kubernetes", "--no-check", env=env)
    assert done.returncode == 0, done.stderr
    [study] = [p for p in (tmp_path / "runs" / "t" / "kubernetes").iterdir() if not p.is_symlink()]
    short = study.name.rsplit("-", 1)[1]
    calls = (tmp_path / "calls").read_text().splitlines()
    assert calls[:2] == ["r1 apply -f job.yaml", "r2 apply -f job.yaml"]
    gets = {c.split()[-3] for c in calls[2:]}
    assert gets == {f"job/t-{short}-r1", f"job/t-{short}-r2"}
    assert "point 2 of 2 (r2): completed" in done.stderr
    assert json.loads((study / "points" / "r2" / "run" / "run.json").read_text())["launches"][0]["resource"] == f"job/t-{short}-r2"
