"""Run a compiled bundle: torchrun locally, sbatch on Slurm, kubectl on Kubernetes."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import yaml

_POLL_S = 2.0
# train.py's exit code after a checkpoint on SIGTERM, and the start of its one-line failure report.
_PREEMPTED = 143
_REPORTED = "train.py: error: "


def launch(bundle, folder: Path, *, dry_run: bool, detach: bool, resume: str) -> int:
    """Start the bundle in `folder`; return the exit code for the CLI."""
    scheduler = bundle.ir.target.scheduler
    if scheduler == "local":
        return _local(folder, dry_run, resume, data_root(bundle))
    if scheduler == "slurm":
        return _slurm(folder, dry_run, detach, data_root(bundle))
    return _kubernetes(folder, bundle.files["job.yaml"], dry_run, detach, bundle.ir.target.walltime_s)


def data_root(bundle) -> dict[str, str]:
    """`DTEC_DATA_ROOT` for the job: the blueprint's folder, unless the target or the caller sets one."""
    if bundle.ir.target.data_root or os.environ.get("DTEC_DATA_ROOT") or bundle.blueprint is None:
        return {}
    return {"DTEC_DATA_ROOT": os.path.abspath(bundle.blueprint.folder)}


def _exports(env: dict[str, str]) -> str:
    return "".join(f"{name}={shlex.quote(value)} " for name, value in env.items())


def _say(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def _need(tool: str, what: str) -> bool:
    if shutil.which(tool) is None:
        _say(f"dtec: `{tool}` is not on the PATH: {what}, or use --dry-run to see the commands")
        return False
    return True


def _local(folder: Path, dry_run: bool, resume: str, root: dict[str, str]) -> int:
    command = ["bash", "run.sh", "--resume", resume]
    if dry_run:
        print(f"cd {shlex.quote(str(folder))} && {_exports(root)}PYTHON={shlex.quote(sys.executable)} {shlex.join(command)}")
        return 0
    # The training runs in dtec's own interpreter, not whichever `python` comes first on PATH
    # (dtec installed with pipx, or called by its venv's path without activating it).
    env = {**os.environ, **root, "PYTHON": sys.executable}
    _say(f"dtec: running {folder}/run.sh with {sys.executable}")
    pipe = {"stderr": subprocess.PIPE, "text": True, "errors": "replace"}
    with subprocess.Popen(command, cwd=folder, env=env, **pipe) as process:
        assert process.stderr is not None
        reported, held = _relay_until_reported(process.stderr)
    code = process.returncode
    run_dir = folder / "run"
    summary = run_dir / "summary.json"
    if code in (0, _PREEMPTED) and summary.is_file():
        print_summary(summary)
    if code == 0:
        return 0
    if not reported:
        _say(f"dtec: the training exited with code {code}; its output is above, files in {run_dir}")
        return code
    report = run_dir / "logs" / "launcher.log"
    try:
        report.parent.mkdir(parents=True, exist_ok=True)
        with report.open("a") as handle:
            handle.writelines(held)
    except OSError as exc:
        sys.stderr.writelines(held)
        _say(f"dtec: cannot write {report}: {exc.strerror}")
    else:
        _say(f"dtec: the training failed (exit code {code}); the rest of its output is in {report}")
    return code


def _relay_until_reported(stream) -> tuple[bool, list[str]]:
    """Pass the training's stderr on until train.py reports a failure; return what followed.

    After that one line come the other ranks' failures and torchrun's report of the same cause,
    dozens of lines: they go to a log, not to the terminal.
    """
    held: list[str] = []
    reported = False
    for line in stream:
        if reported:
            held.append(line)
            continue
        sys.stderr.write(line)
        sys.stderr.flush()
        reported = line.startswith(_REPORTED)
    return reported, held


def print_summary(path: Path) -> None:
    """Print a run's summary.json as a table, with where its files are."""
    from rich.console import Console
    from rich.table import Table

    try:
        summary = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        _say(f"dtec: cannot read {path}: {exc}")
        return
    table = Table(title="Run summary", show_header=False)
    for key, value in _flatten(summary):
        table.add_row(key, f"{value:.4g}" if isinstance(value, float) else str(value))
    table.add_row("files", str(path.parent))
    Console(stderr=True).print(table)


def _flatten(values: dict, prefix: str = ""):
    """Yield (label, value) for scalar entries, nested maps one level deep as `outer inner`."""
    for key, value in values.items():
        label = f"{prefix}{key.replace('_', ' ')}"
        if isinstance(value, dict):
            yield from _flatten(value, f"{label} ")
        elif value is not None and not isinstance(value, list):
            yield label, value


def _slurm(folder: Path, dry_run: bool, detach: bool, root: dict[str, str]) -> int:
    command = ["sbatch", "--parsable"] + ([] if detach else ["--wait"]) + ["job.sbatch"]
    if dry_run:
        print(f"cd {shlex.quote(str(folder))} && {_exports(root)}{shlex.join(command)}")
        return 0
    if not _need("sbatch", "run this on a login node of the cluster"):
        return 2
    # sbatch passes the environment on to the job (--export=ALL, its default): DTEC_DATA_ROOT too.
    process = subprocess.Popen(command, cwd=folder, env={**os.environ, **root}, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    job = process.stdout.readline().strip().split(";")[0]
    if not job:
        return process.wait() or 1
    _say(f"dtec: submitted job {job} from {folder}")
    if detach:
        process.wait()
        _say(f"dtec: follow it with `squeue -j {job}`; its log is in {folder}/logs/")
        return 0
    stop = threading.Event()
    follower = threading.Thread(target=_follow, args=(folder / "logs", job, stop), daemon=True)
    follower.start()
    code = process.wait()
    stop.set()
    follower.join(timeout=5)
    _say(f"dtec: job {job} {'completed' if code == 0 else f'failed with exit code {code}'}")
    summary = folder / "run" / "summary.json"
    if summary.is_file():
        print_summary(summary)
    return code


def _follow(logs: Path, job: str, stop: threading.Event) -> None:
    """Stream a Slurm job's output and error files while the job runs."""
    streams = {".out": sys.stdout, ".err": sys.stderr}
    positions: dict[Path, int] = {}
    while True:
        finished = stop.is_set()
        for path in sorted(logs.glob(f"*{job}*")):
            stream = streams.get(path.suffix)
            if stream is None:
                continue
            with path.open("r", errors="replace") as handle:
                handle.seek(positions.get(path, 0))
                chunk = handle.read()
                positions[path] = handle.tell()
            if chunk:
                stream.write(chunk)
                stream.flush()
        if finished:
            return
        time.sleep(_POLL_S / 4)


def _kubernetes(folder: Path, job_yaml: str, dry_run: bool, detach: bool, walltime_s: int) -> int:
    documents = list(yaml.safe_load_all(job_yaml))  # from the bundle: a dry run wrote no file
    workload = next(d for d in documents if d["kind"] in ("Job", "PyTorchJob"))
    name, namespace = workload["metadata"]["name"], workload["metadata"].get("namespace", "default")
    kind = "job" if workload["kind"] == "Job" else "pytorchjob"
    commands = [["kubectl", "apply", "-f", "job.yaml"]]
    if not detach:
        condition = "complete" if kind == "job" else "Succeeded"
        commands.append(["kubectl", "wait", "-n", namespace, f"--for=condition={condition}", f"--timeout={walltime_s}s", f"{kind}/{name}"])
    if dry_run:
        for command in commands:
            print(f"cd {shlex.quote(str(folder))} && {shlex.join(command)}")
        return 0
    if not _need("kubectl", "install kubectl and point it at the cluster"):
        return 2
    for command in commands:
        code = subprocess.call(command, cwd=folder)
        if code != 0:
            return code
    return 0
