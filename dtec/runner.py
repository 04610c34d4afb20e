"""Run a compiled bundle: torchrun locally, sbatch on Slurm, kubectl on Kubernetes."""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import yaml

from dtec import runs
from dtec.summary import print_summary

_POLL_S = 2.0
# train.py's exit code after a checkpoint on SIGTERM, and the start of its one-line failure report.
_PREEMPTED = 143
_REPORTED = "train.py: error: "
_INTERRUPTED = 130
_PR_SET_PDEATHSIG = 1


def launch(
    bundle, folder: Path, run: runs.Run | None, *, detach=False, resuming=False, fmt="text",
    env: dict[str, str] | None = None, after: str | None = None, announce: bool = True,
) -> int:
    """Start the bundle in `folder` (`run`: its record; None: print the commands); return a code.

    `env`: more variables for the job ($DTEC_WEIGHTS); `after`: a Slurm job it waits for;
    `announce=False`: a detached launch prints no ids (a study says its own).
    """
    scheduler = bundle.ir.target.scheduler
    root = {**data_root(bundle), **(env or {})}
    if scheduler == "local":
        return _local(folder, run, resuming, root)
    if scheduler == "slurm":
        return _slurm(folder, run, detach, fmt, root, after, announce)
    return _kubernetes(folder, run, bundle.files["job.yaml"], detach, resuming, fmt, announce)


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


# ---- local -----------------------------------------------------------------------------------
def _local(folder: Path, run: runs.Run | None, resuming: bool, root: dict[str, str]) -> int:
    # A new run starts from nothing (dtec checked that its folder holds no run); a resumed one
    # continues from its newest checkpoint.
    command = ["bash", "run.sh", "--resume", "auto" if resuming else "never"]
    if run is None:
        python = shlex.quote(sys.executable)
        print(f"cd {shlex.quote(str(folder))} && {_exports(root)}PYTHON={python} {shlex.join(command)}")
        return 0
    # The training runs in dtec's own interpreter, not whichever `python` comes first on PATH
    # (dtec installed with pipx, or called by its venv's path without activating it). A planned
    # stop exits 0 under dtec: it reads summary.json, and torchrun then reports no failure.
    env = {**os.environ, **root, "PYTHON": sys.executable, "DTEC_PREEMPTED_EXIT": "0"}
    _say(f"dtec: run {run.id}: running {folder}/run.sh with {sys.executable}")
    log_path = run.outputs / "logs" / "launcher.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    with log_path.open("a") as log, subprocess.Popen(
        command, cwd=folder, env=env, preexec_fn=_detach_from_terminal, text=True, errors="replace",
        **pipes,
    ) as process:
        started = runs.process_start(process.pid)
        host = socket.gethostname()
        runs.add_launch(run, kind="local", pid=process.pid, pid_start=started, host=host)
        relay = _Relay(process, log)
        interrupted = _wait(process, run)
        relay.join()
    code = process.returncode
    if run.job is not None:
        run.job["exit_code"] = code
        with contextlib.suppress(OSError):
            runs.save(run)
    if interrupted:
        return _INTERRUPTED
    status = runs.state(run).status
    if status in ("completed", "preempted"):
        print_summary(run)
    if status == "preempted":
        _say(f"dtec: run {run.id} stopped with a checkpoint; `{run.resume_command()}` resumes it")
        return code or _PREEMPTED
    if code == 0:
        return 0
    if not relay.reported:
        _say(f"dtec: the training exited with code {code}; its output is above and in {log_path}")
    else:
        _say(f"dtec: the training failed (exit code {code}); the rest of its output: {log_path}")
    return code


def _detach_from_terminal() -> None:
    """In the launcher, before exec: its own process group, and SIGTERM when dtec dies.

    Ctrl-C in the terminal then reaches dtec alone, which stops the ranks the way pre-emption
    does; and when dtec is killed (the OOM killer, a closed terminal) the launcher gets SIGTERM,
    which torchrun passes on to the ranks, instead of training on with no one to report to.
    """
    os.setpgid(0, 0)
    die_with_parent()


def die_with_parent() -> None:
    """In a child before exec (a `preexec_fn`): SIGTERM when the process that started it dies.

    Linux's parent-death signal; it survives exec, and fires when the thread that forked the
    child ends, so children are started from the main thread. A parent that died before the
    call took effect is caught by the child's new parent id.
    """
    parent = os.getppid()
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:
        os.kill(os.getpid(), signal.SIGTERM)


def _wait(process: subprocess.Popen, run: runs.Run) -> bool:
    """Wait for the launcher; Ctrl-C stops it with a checkpoint, a second one at once."""
    interrupts = 0
    while True:
        try:
            process.wait()
            return interrupts > 0
        except KeyboardInterrupt:
            interrupts += 1
            _Relay.quiet.set()  # what the launcher says while stopping goes to its log only
            if interrupts == 1:
                _say("dtec: stopping: the ranks save a checkpoint first (Ctrl-C again stops at "
                     f"once); resume with `{run.resume_command()}`")
                runs.stop_local(process.pid, hard=False)
            else:
                _say("dtec: stopped at once, without a checkpoint")
                runs.stop_local(process.pid, hard=True)


class _Relay:
    """Copy the launcher's output to the terminal and to its log, from two threads.

    After train.py's one-line failure report come the other ranks' failures and torchrun's
    report of the same cause, dozens of lines: those, and all the launcher says once Ctrl-C
    stopped it, go to the log only.
    """

    quiet = threading.Event()

    def __init__(self, process: subprocess.Popen, log) -> None:
        self.reported = False
        self._lock = threading.Lock()
        self._log = log
        type(self).quiet.clear()
        pairs = ((process.stdout, sys.stdout, False), (process.stderr, sys.stderr, True))
        self._threads = [threading.Thread(target=self._copy, args=a, daemon=True) for a in pairs]
        for thread in self._threads:
            thread.start()

    def _copy(self, stream, terminal, errors: bool) -> None:
        for line in stream:
            with self._lock:
                self._log.write(line)
                self._log.flush()
                if errors and (self.reported or self.quiet.is_set()):
                    continue
                terminal.write(line)
                terminal.flush()
                if errors:
                    self.reported = line.startswith(_REPORTED)

    def join(self) -> None:
        for thread in self._threads:
            thread.join()


# ---- Slurm -----------------------------------------------------------------------------------
def _slurm(
    folder: Path, run: runs.Run | None, detach: bool, fmt: str, root: dict[str, str],
    after: str | None = None, announce: bool = True,
) -> int:
    # A job that waits for another's end is cancelled by Slurm when that one fails, not left pending.
    waits = [f"--dependency=afterok:{after}", "--kill-on-invalid-dep=yes"] if after else []
    command = ["sbatch", "--parsable", *waits, "job.sbatch"]
    if run is None:
        print(f"cd {shlex.quote(str(folder))} && {_exports(root)}{shlex.join(command)}")
        return 0
    if not _need("sbatch", "run this on a login node of the cluster"):
        return 2
    # sbatch passes the environment on to the job (--export=ALL, its default): DTEC_DATA_ROOT too.
    env = {**os.environ, **root}
    submitted = subprocess.run(command, cwd=folder, env=env, stdout=subprocess.PIPE, text=True)
    job = submitted.stdout.strip().split(";")[0]
    if submitted.returncode != 0 or not job:
        return submitted.returncode or 1
    runs.add_launch(run, kind="slurm", job_id=job, **({"after": after} if after else {}))
    held = f", to start after job {after} completes" if after else ""
    _say(f"dtec: run {run.id}: submitted Slurm job {job} from {folder}{held}")
    if detach:
        if announce:
            _detached(run, job, fmt)
        return 0
    try:
        final = _watch_slurm(folder / "logs", job)
    except KeyboardInterrupt:
        _say(_still_running(run, f"Slurm job {job}"))
        return _INTERRUPTED
    current = runs.state(run)
    why = f" ({final.detail})" if final and current.status != "completed" else ""
    _say(f"dtec: job {job} {current.status}{why}")
    if run.summary() is not None and current.status in ("completed", "preempted"):
        print_summary(run)
    return 0 if current.status == "completed" else 1


def _watch_slurm(logs: Path, job: str) -> runs.State | None:
    """Say the job's state when it changes (pending and why, running), stream its logs."""
    positions: dict[Path, int] = {}
    shown, last = "", None
    while True:
        found = runs.slurm_state(job)
        if found is not None:
            words = f"{found.status}" + (f" ({found.detail})" if found.active else "")
            if found.active and words != shown:
                _say(f"dtec: job {words}")
                shown = words
            last = found
        _copy_new(logs, job, positions)
        if found is None or not found.active:
            _copy_new(logs, job, positions)
            return last
        time.sleep(_POLL_S)


def _copy_new(logs: Path, job: str, positions: dict[Path, int]) -> None:
    """Print what a Slurm job's output and error files gained since the last call."""
    print_growth(sorted(logs.glob(f"*-{job}.*")), positions)


def print_growth(paths: list[Path], positions: dict[Path, int]) -> None:
    """Print what each file gained since the last call: `.err` files to stderr, others to stdout."""
    for path in paths:
        try:
            with path.open("r", errors="replace") as handle:
                handle.seek(positions.get(path, 0))
                chunk = handle.read()
                positions[path] = handle.tell()
        except OSError:
            continue
        stream = sys.stderr if path.suffix == ".err" else sys.stdout
        if chunk:
            stream.write(chunk)
            stream.flush()


def _still_running(run: runs.Run, what: str) -> str:
    return (f"dtec: detached: {what} still runs; follow it with `dtec logs {run.id} --follow`, "
            f"stop it with `dtec cancel {run.id}`, and once stopped continue it with "
            f"`{run.resume_command()}`")


def _detached(run: runs.Run, job: str, fmt: str) -> None:
    """Say a detached run's id and job (JSON on stdout when asked for)."""
    if fmt == "json":
        print(json.dumps({"run": run.id, "job": job, "folder": str(run.folder)}))
    else:
        print(f"{run.id} {job}")
    _say(f"dtec: see it with `dtec status {run.id}`, `dtec logs {run.id} --follow`; "
         f"stop it with `dtec cancel {run.id}`")


# ---- Kubernetes ------------------------------------------------------------------------------
_WORKLOADS = {"Job": "job", "TrainJob": "trainjob", "PyTorchJob": "pytorchjob"}  # kind -> kubectl's name
_LOG_GRACE_S = 30  # for `kubectl logs --follow` to print the last lines once the workload ended


def _kubernetes(folder: Path, run: runs.Run | None, job_yaml: str, detach: bool, resuming: bool,
                fmt: str, announce: bool = True) -> int:
    documents = list(yaml.safe_load_all(job_yaml))  # from the bundle: a dry run wrote no file
    workload = next(d for d in documents if d["kind"] in _WORKLOADS)
    name, namespace = workload["metadata"]["name"], workload["metadata"].get("namespace", "default")
    resource = f"{_WORKLOADS[workload['kind']]}/{name}"
    job = {"namespace": namespace, "resource": resource}
    commands = [["kubectl", "apply", "-f", "job.yaml"]]
    if resuming:  # a Job's pods cannot be changed: the ended one goes, the new one resumes
        commands.insert(0, ["kubectl", "delete", "-n", namespace, "--ignore-not-found", resource])
    if run is None:
        # dtec then asks `kubectl get` for the workload's conditions until it ends, and follows its pods' logs.
        for command in commands + ([] if detach else [runs.kube_logs(job, follow=True)]):
            print(f"cd {shlex.quote(str(folder))} && {shlex.join(command)}")
        return 0
    if not _need("kubectl", "install kubectl and point it at the cluster"):
        return 2
    for command in commands:
        code = subprocess.call(command, cwd=folder)
        if code != 0:
            return code
    runs.add_launch(run, kind="kubernetes", **job)
    if detach:
        if announce:
            _detached(run, f"{namespace}/{resource}", fmt)
        return 0
    _say(f"dtec: run {run.id}: applied {resource} in namespace {namespace}; following it until it ends")
    try:
        final = _watch_kube(job)
    except KeyboardInterrupt:
        _say(_still_running(run, f"{resource} in namespace {namespace}"))
        return _INTERRUPTED
    if final is None:
        _say(f"dtec: {resource} is gone or the cluster does not answer; see `dtec status {run.id}`")
        return 1
    _say(f"dtec: {resource} {final.status}" + (f" ({final.detail})" if final.status != "completed" else ""))
    return 0 if final.status == "completed" else 1


def _watch_kube(job: dict) -> runs.State | None:
    """Say the workload's state when it changes (pending and why, running), follow its pods' logs."""
    shown, found, logs = "", None, None
    try:
        while True:
            found = runs.kube_state(job)
            if found is None or not found.active:
                break
            words = f"{found.status} ({found.detail})"
            if words != shown:
                _say(f"dtec: {words}")
                shown = words
            if found.status == "running" and logs is None:
                logs = subprocess.Popen(runs.kube_logs(job, follow=True))
            time.sleep(_POLL_S)
    except BaseException:  # Ctrl-C detaches at once
        if logs is not None:
            logs.terminate()
        raise
    if logs is not None:
        try:
            logs.wait(timeout=_LOG_GRACE_S)
        except subprocess.TimeoutExpired:
            logs.terminate()
    if logs is None and found is not None:  # it ended between two looks: its logs at once
        subprocess.call(runs.kube_logs(job))
    return found
