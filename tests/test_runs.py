"""Runs a user can trust: a folder per run, explicit resume of the same configuration only, clean
interrupts, no orphaned ranks, and `dtec runs/status/logs/cancel` on local, Slurm and Kubernetes."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TINY = REPO / "tests" / "backends" / "tiny.twin"
KUBE = REPO / "tests" / "backends" / "kube.twin"
LONG = ("--set", "train.epochs=1000")  # minutes of training: long enough to interrupt
WAIT_S = 120


def dtec(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "dtec", *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=600, env=env)


def status_of(run_id: str, cwd: Path, env: dict | None = None) -> str:
    """What `dtec status RUN --format json` says the run's status is."""
    return json.loads(dtec("status", run_id, "--format", "json", cwd=cwd, env=env).stdout)["status"]


def start(*args: str, cwd: Path) -> subprocess.Popen:
    """`dtec ARGS` in a session of its own (as a terminal would start it), output to files."""
    out, err = (cwd / "dtec.out").open("w"), (cwd / "dtec.err").open("w")
    return subprocess.Popen([sys.executable, "-m", "dtec", *args], cwd=cwd, stdout=out, stderr=err,
                            start_new_session=True)


def until(condition, what: str, timeout: float = WAIT_S):
    deadline = time.monotonic() + timeout
    while not (found := condition()):
        assert time.monotonic() < deadline, f"no {what} within {timeout} s"
        time.sleep(0.5)
    return found


def run_folders(cwd: Path) -> list[Path]:
    return [p for p in (cwd / "runs").glob("*/*/*") if p.name != "latest"]


def the_run(cwd: Path) -> Path:
    """The folder of the only run under runs/ in `cwd`."""
    found = run_folders(cwd)
    assert len(found) == 1, found
    return found[0]


def training(cwd: Path) -> Path:
    """Wait until the run in `cwd` has trained a few steps; return its folder."""
    folder = until(lambda: run_folders(cwd), "run folder")[0]
    metrics = folder / "run" / "metrics.jsonl"
    until(lambda: metrics.is_file() and metrics.stat().st_size > 0, "training step")
    return folder


def ranks(folder: Path) -> list[int]:
    """The training ranks of the run in `folder`: processes there that have a LOCAL_RANK."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            here = Path(os.readlink(proc / "cwd")) == folder.resolve()
            if here and b"LOCAL_RANK=" in (proc / "environ").read_bytes():
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def kill_all(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


@pytest.mark.slow
@pytest.mark.parametrize("victim", ["dtec's process group", "the launcher"])
def test_killing_the_launcher_leaves_no_rank_running(tmp_path: Path, victim: str) -> None:
    """SIGKILL (the OOM killer, a closed tmux) on dtec or torchrun: the ranks follow within 10 s."""
    process = start("run", str(TINY), *LONG, cwd=tmp_path)
    alive: list[int] = []
    try:
        folder = training(tmp_path)
        alive = until(lambda: ranks(folder), "ranks")
        assert len(alive) >= 2
        if victim == "the launcher":
            launcher = json.loads((folder / "run" / "run.json").read_text())["launches"][-1]["pid"]
            os.kill(launcher, signal.SIGKILL)
        else:
            os.killpg(process.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while ranks(folder) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert ranks(folder) == [], f"ranks still alive 10 s after killing {victim}"
    finally:
        kill_all([process.pid, *alive])


@pytest.mark.slow
def test_ctrl_c_checkpoints_and_resume_continues_the_same_configuration(tmp_path: Path) -> None:
    process = start("run", str(TINY), *LONG, cwd=tmp_path)
    try:
        folder = training(tmp_path)
        process.send_signal(signal.SIGINT)  # what Ctrl-C sends to the foreground process group
        assert process.wait(timeout=WAIT_S) == 130
    finally:
        kill_all([process.pid])
    err = (tmp_path / "dtec.err").read_text()
    run_id = json.loads((folder / "run" / "run.json").read_text())["id"]
    after = err.split("running", 1)[1].splitlines()[1:]
    assert "Traceback" not in err and len(after) == 1, err
    assert f"--resume {run_id}" in after[0], err
    summary = json.loads((folder / "run" / "summary.json").read_text())
    assert summary["status"] == "preempted"
    saved = sorted(p.name for p in (folder / "run" / "checkpoints").iterdir())
    assert saved and saved[-1] == f"step-{summary['steps']:08d}.pt"

    # Another configuration is refused before anything starts, naming what changed.
    changed = dtec("run", str(TINY), "--resume", run_id, "--set", "train.epochs=5", cwd=tmp_path)
    assert changed.returncode == 1
    assert "train.epochs (1000 -> 5)" in changed.stderr and "without --resume" in changed.stderr
    assert len(json.loads((folder / "run" / "run.json").read_text())["launches"]) == 1

    # The same configuration continues from the checkpoint, in its folder; `dtec cancel` stops it.
    resumed = start("run", str(TINY), "--resume", run_id, cwd=tmp_path)
    try:
        until(lambda: "resumed from" in (tmp_path / "dtec.out").read_text(), "resume")
        status = json.loads(dtec("status", run_id, "--format", "json", cwd=tmp_path).stdout)
        assert status["status"] == "running"
        assert status["folder"] == str(folder.relative_to(tmp_path))
        assert dtec("cancel", run_id, cwd=tmp_path).returncode == 0
        assert resumed.wait(timeout=WAIT_S) != 0
    finally:
        kill_all([resumed.pid])
    assert f"checkpoints/{saved[-1]}" in (tmp_path / "dtec.out").read_text()
    listed = json.loads(dtec("runs", "--format", "json", cwd=tmp_path).stdout)
    assert [(r["id"], r["status"]) for r in listed] == [(run_id, "preempted")]
    assert listed[0]["final_loss"] is not None and listed[0]["samples_per_s"] > 0


@pytest.mark.slow
def test_each_run_has_its_own_folder_and_none_is_written_over(tmp_path: Path) -> None:
    first = dtec("run", str(TINY), cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    folder = the_run(tmp_path)
    summary = (folder / "run" / "summary.json").read_text()
    second = dtec("run", str(TINY), "--set", "train.epochs=2", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert (folder / "run" / "summary.json").read_text() == summary
    folders = sorted(p.name for p in (tmp_path / "runs" / "tiny-mlp" / "local").iterdir())
    assert len(folders) == 3 and "latest" in folders, folders  # two runs and `latest`
    latest = (tmp_path / "runs" / "tiny-mlp" / "local" / "latest").resolve()
    assert latest != folder.resolve()
    assert json.loads((latest / "run" / "summary.json").read_text())["epochs"] == 2
    listed = json.loads(dtec("runs", "--format", "json", cwd=tmp_path).stdout)
    assert [r["status"] for r in listed] == ["completed", "completed"]
    again = dtec("run", str(TINY), "--resume", listed[0]["id"], cwd=tmp_path)
    assert again.returncode == 1 and "it completed" in again.stderr
    # The summary says its inputs, in SI units; dtec says it in human ones.
    record = json.loads(summary)
    assert record["inputs"]["target"] == "local" and record["inputs"]["sets"] == []
    assert len(record["inputs"]["blueprint_sha256"]) == 64 and record["inputs"]["dtec_version"]
    assert isinstance(record["total_time"], float)
    for said in (" s (training ", "samples/s (", "n/a (no GPU)", "MiB per rank"):
        assert said in first.stderr
    logs = dtec("logs", listed[0]["id"], cwd=tmp_path)
    assert "epoch 1/1 done" in logs.stdout


def test_detach_is_refused_on_the_local_target(tmp_path: Path) -> None:
    result = dtec("run", str(TINY), "--detach", cwd=tmp_path)
    assert result.returncode == 2 and "--detach is for Slurm and Kubernetes" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_resume_names_a_run_that_exists(tmp_path: Path) -> None:
    result = dtec("run", str(TINY), "--resume", "never", cwd=tmp_path)
    assert result.returncode == 2 and "no run `never`" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_an_unset_env_in_another_target_does_not_stop_this_one(tmp_path: Path) -> None:
    blueprint = tmp_path / "e.twin"
    other = 'target "juwels" {\n  account = env("DTEC_NO_SUCH_ACCOUNT")\n}\n'
    blueprint.write_text(TINY.read_text() + "\n" + other)
    env = {k: v for k, v in os.environ.items() if k != "DTEC_NO_SUCH_ACCOUNT"}
    assert dtec("lint", str(blueprint), "-t", "local", cwd=tmp_path, env=env).returncode == 0
    compiled = dtec("compile", str(blueprint), "-o", str(tmp_path / "b"), cwd=tmp_path, env=env)
    assert compiled.returncode == 0, compiled.stderr
    everywhere = dtec("lint", str(blueprint), cwd=tmp_path, env=env)
    assert everywhere.returncode == 1 and "DT113" in everywhere.stdout
    juwels = dtec("compile", str(blueprint), "-t", "juwels", cwd=tmp_path, env=env)
    assert juwels.returncode == 1 and "DT113" in juwels.stderr


def test_the_summary_is_said_in_human_units() -> None:
    from dtec.summary import rows

    final = {"train_loss": 0.0123, "val_loss": 0.015, "throughput": 10330.0, "peak_mem": 358580224,
             "energy": {"available": False, "reason": "monitor.energy is off"}}
    summary = {"status": "completed", "twin": "t", "strategy": "ddp", "world_size": 2,
               "device": "cpu", "precision": "fp32", "epochs": 3, "steps": 84, "total_steps": 84,
               "total_time": 0.6821, "train_time": 150.0, "samples_per_s": 5254.2, "final": final}
    said = dict(rows(summary))
    assert said["time"] == "0.68 s (training 2.5 min)"
    assert said["throughput"].startswith("5,254 samples/s (")  # one throughput, with its definition
    assert said["peak memory"] == "342 MiB per rank" and said["energy"] == "n/a (no GPU)"
    assert said["final"] == "train loss 0.0123, val loss 0.015"


def test_the_summary_shows_every_validation_metric_but_not_per_target_lists() -> None:
    from dtec.summary import rows

    final = {"train_loss": 0.5, "val_loss": 0.25, "val_mae": 0.125, "val_mae_per_target": [0.1, 0.15],
             "val_r2": 0.75, "throughput": 10.0}
    said = dict(rows({"final": final}))
    assert said["final"] == "train loss 0.5, val loss 0.25, val mae 0.125, val r2 0.75"


STUB_KUBECTL = """#!/bin/sh
printf '%s\\n' "$*" >> "$KUBECTL_CALLS"
case "$1" in
  get) echo '{"status": {"active": 2}}' ;;
  logs) echo "pod says: epoch 1/1 done" ;;
esac
"""


def test_kubernetes_runs_are_listed_followed_and_cancelled_with_kubectl(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "kubectl").write_text(STUB_KUBECTL)
    (bin_dir / "kubectl").chmod(0o755)
    calls = tmp_path / "calls"
    path = f"{bin_dir}{os.pathsep}{os.environ['PATH']}"
    env = {**os.environ, "PATH": path, "KUBECTL_CALLS": str(calls)}
    detach = ("--detach", "--format", "json")
    submitted = dtec("run", str(KUBE), "-t", "kubernetes", *detach, cwd=tmp_path, env=env)
    assert submitted.returncode == 0, submitted.stderr
    said = json.loads(submitted.stdout)
    job = f"job/flood-forecast-v2-{said['run']}"  # named for the run: a second one applies beside it
    assert said["job"] == f"ml-team/{job}"
    assert status_of(said["run"], tmp_path, env) == "running"
    assert "epoch 1/1 done" in dtec("logs", said["run"], cwd=tmp_path, env=env).stdout
    assert dtec("cancel", said["run"], cwd=tmp_path, env=env).returncode == 0
    assert calls.read_text().splitlines() == [
        "apply -f job.yaml",
        f"get -n ml-team {job} -o json",
        f"logs -n ml-team {job} --all-containers",
        f"get -n ml-team {job} -o json",
        f"delete -n ml-team {job}",
    ]


# A TrainJob that Kueue holds, then runs, then ends: `get` answers the next state each call.
STUB_KUBECTL_TRAINJOB = """#!/bin/sh
printf '%s\\n' "$*" >> "$KUBECTL_CALLS"
case "$1" in
  get)
    n=$(grep -c '^get' "$KUBECTL_CALLS")
    case "$n" in
      1) echo '{"status": {"conditions": [{"type": "Suspended", "status": "True", "reason": "Suspended"}]}}' ;;
      2) echo '{"status": {"jobsStatus": [{"name": "node", "active": 2}]}}' ;;
      *) echo "{\\"status\\": {\\"conditions\\": [{\\"type\\": \\"$FINAL\\", \\"status\\": \\"True\\", \\"reason\\": \\"$REASON\\"}]}}" ;;
    esac ;;
  logs) echo "pod says: epoch 1/1 done" ;;
esac
"""


@pytest.mark.parametrize(("final", "reason", "code"), [("Complete", "JobSetCompleted", 0), ("Failed", "DeadlineExceeded", 1)])
def test_a_trainjob_is_followed_through_its_conditions_and_pods_logs(
    tmp_path: Path, final: str, reason: str, code: int
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "kubectl").write_text(STUB_KUBECTL_TRAINJOB)
    (bin_dir / "kubectl").chmod(0o755)
    calls = tmp_path / "calls"
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "KUBECTL_CALLS": str(calls),
           "FINAL": final, "REASON": reason}
    ran = dtec("run", str(KUBE), "-t", "kubeflow", cwd=tmp_path, env=env)
    assert ran.returncode == code, ran.stderr
    [run_id] = [p.name for p in (tmp_path / "runs").glob("*/kubeflow/*") if not p.is_symlink()]
    name = f"flood-forecast-v2-{run_id}"
    assert f"pending (trainjob/{name}: suspended (Suspended))" in ran.stderr
    assert f"running (trainjob/{name})" in ran.stderr
    assert "pod says: epoch 1/1 done" in ran.stdout
    said = ran.stderr.strip().splitlines()[-1]
    assert said == (f"dtec: trainjob/{name} completed" if code == 0 else
                    f"dtec: trainjob/{name} failed (trainjob/{name}: {reason})")
    get = f"get -n default trainjob/{name} -o json"
    logs = (f"logs -n default --selector=jobset.sigs.k8s.io/jobset-name={name} --prefix "
            "--max-log-requests=64 --all-containers --follow")
    assert calls.read_text().splitlines() == ["apply -f job.yaml", get, get, logs, get]


def test_a_trainjob_dry_run_shows_the_log_command(tmp_path: Path) -> None:
    shown = dtec("run", str(KUBE), "-t", "kubeflow", "--dry-run", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    commands = [line.split(" && ", 1)[1] for line in shown.stdout.splitlines()]
    assert commands[0] == "kubectl apply -f job.yaml"
    assert re.fullmatch(r"kubectl logs -n default --selector=jobset.sigs.k8s.io/jobset-name="
                        r"flood-forecast-v2-\d{8}-\d{6}-[0-9a-f]{4} --prefix --max-log-requests=64 "
                        r"--all-containers --follow", commands[1]), commands[1]


def test_each_kubernetes_run_names_its_objects_for_itself(tmp_path: Path) -> None:
    """Two runs of one twin apply objects of different names (the second does not replace the
    first), every name a DNS label within 63 characters; `dtec compile` keeps the twin's name."""
    import yaml

    from dtec.backends.kubernetes import workload_name

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "kubectl").write_text(STUB_KUBECTL)
    (bin_dir / "kubectl").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "KUBECTL_CALLS": str(tmp_path / "calls")}
    names = []
    for _ in range(2):
        ran = dtec("run", str(KUBE), "-t", "kubernetes", "--detach", "--format", "json", cwd=tmp_path, env=env)
        assert ran.returncode == 0, ran.stderr
        run_id = json.loads(ran.stdout)["run"]
        [job_yaml] = (tmp_path / "runs").glob(f"*/kubernetes/{run_id}/job.yaml")
        docs = list(yaml.safe_load_all(job_yaml.read_text()))
        assert {d["metadata"]["name"] for d in docs} >= {f"flood-forecast-v2-{run_id}", f"flood-forecast-v2-{run_id}-bundle"}
        names.append({d["metadata"]["name"] for d in docs})
    assert not names[0] & names[1]
    for name in names[0] | names[1]:
        assert len(name) <= 63 and re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", name), name
    compiled = []
    for folder in ("a", "b"):
        assert dtec("compile", str(KUBE), "-t", "kubernetes", "-o", folder, cwd=tmp_path).returncode == 0
        compiled.append((tmp_path / folder / "job.yaml").read_text())
    assert compiled[0] == compiled[1] and "name: flood-forecast-v2\n" in compiled[0]
    long = workload_name("a" * 80 + " twin", "20261130-170512-ab12")
    assert long == "a" * 19 + "-20261130-170512-ab12"  # 40: room for "-bundle", "-master-0"
    assert workload_name("Flood Forecast", None) == "flood-forecast"


def slurm_state(job: str) -> str:
    command = ["squeue", "-h", "-j", job, "-o", "%T"]
    shown = subprocess.run(command, capture_output=True, text=True, timeout=30)
    return shown.stdout.strip()


@pytest.mark.slurm
@pytest.mark.slow
def test_a_slurm_run_says_pending_and_detaches_on_ctrl_c(slurm: str, tmp_path: Path) -> None:
    # A job holding the node's CPUs keeps the run pending: dtec says so, and why, not silence.
    block = ["sbatch", "--parsable", f"--partition={slurm}", "--cpus-per-task=2",
             "--output=/dev/null", "--wrap", "sleep 300"]
    blocker = subprocess.run(block, capture_output=True, text=True, timeout=60)
    blocker_id = blocker.stdout.strip().split(";")[0]
    job = ""
    partition = ("--set", f'target.slurm.partition="{slurm}"')
    process = start("run", str(TINY), "-t", "slurm", *LONG, *partition, cwd=tmp_path)
    try:
        said = re.compile(r"job pending \(job \d+, \w+")
        until(lambda: said.search((tmp_path / "dtec.err").read_text()), "pending reason")
        record = json.loads((the_run(tmp_path) / "run" / "run.json").read_text())
        job = record["launches"][-1]["job_id"]
        subprocess.run(["scancel", blocker_id], timeout=30)
        until(lambda: slurm_state(job) == "RUNNING", "running job")
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 130
        err = (tmp_path / "dtec.err").read_text()
        assert "still runs" in err.splitlines()[-1] and "dtec cancel" in err.splitlines()[-1]
        assert slurm_state(job) == "RUNNING"  # detached, not stopped
        run_id = the_run(tmp_path).name
        assert status_of(run_id, tmp_path) == "running"
        cancelled = dtec("cancel", run_id, cwd=tmp_path)
        assert cancelled.returncode == 0, cancelled.stderr
        until(lambda: slurm_state(job) == "", "end of the cancelled job")
        assert status_of(run_id, tmp_path) == "cancelled"
    finally:
        kill_all([process.pid])
        subprocess.run(["scancel", blocker_id, *([job] if job else [])], timeout=30)


@pytest.mark.slurm
@pytest.mark.slow
def test_detach_prints_the_run_and_job_as_json(slurm: str, tmp_path: Path) -> None:
    result = dtec("run", str(TINY), "-t", "slurm", "--detach", "--format", "json",
                  "--set", f'target.slurm.partition="{slurm}"', cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    said = json.loads(result.stdout)
    try:
        assert said["job"].isdigit() and said["run"] == the_run(tmp_path).name
        until(lambda: slurm_state(said["job"]) == "", "end of the job")
        follow = dtec("logs", said["run"], "--follow", cwd=tmp_path)
        assert "epoch 1/1 done" in follow.stdout
        assert status_of(said["run"], tmp_path) == "completed"
    finally:
        subprocess.run(["scancel", said["job"]], timeout=30)
