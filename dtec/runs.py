"""Runs: one folder per `dtec run`, its record, and what the scheduler says about it.

A run folder holds the bundle dtec compiled and, in `run/`, what the training wrote; dtec adds
`run/run.json` (the run record: id, inputs, each launch). Without `-o` the folder is
`runs/<twin>/<target>/<id>`; with `-o` a link of that name points at it, so that `dtec runs`
and run ids find every run made from this folder. `latest` beside the ids names the newest.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shlex
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from dtec import __version__
from dtec.output import OutputError, finished_run, make_folder, safe_name, write_atomic

ROOT = Path("runs")
RECORD = "run.json"  # in the run's outputs folder, beside summary.json
LATEST = "latest"
# What each scheduler says of a job, as a run's status.
_SLURM_ACTIVE = {"PENDING": "pending", "CONFIGURING": "pending", "REQUEUED": "pending",
                 "REQUEUE_HOLD": "pending", "REQUEUE_FED": "pending", "RESIZING": "running",
                 "RUNNING": "running", "COMPLETING": "running", "SUSPENDED": "suspended",
                 "STOPPED": "suspended", "SIGNALING": "running", "STAGE_OUT": "running"}
_TOOL_TIMEOUT_S = 30


class RunError(Exception):
    """A run that cannot be found or acted on, said in one line with what to do."""


@dataclass(frozen=True)
class Run:
    """A run folder and its record."""

    folder: Path
    record: dict

    @property
    def id(self) -> str:
        return str(self.record.get("id", self.folder.name))

    @property
    def outputs(self) -> Path:
        return self.folder / "run"

    @property
    def launches(self) -> list[dict]:
        return [x for x in self.record.get("launches", []) if isinstance(x, dict)]

    @property
    def job(self) -> dict | None:
        """The newest launch: what `status`, `logs` and `cancel` act on."""
        return self.launches[-1] if self.launches else None

    def summary(self) -> dict | None:
        """What train.py wrote at its end (run/summary.json), or None."""
        return _read_json(self.outputs / "summary.json")

    def checkpoints(self) -> list[Path]:
        folder = self.outputs / "checkpoints"
        if not folder.is_dir():
            return []
        return sorted(p for p in folder.glob("step-*") if not p.name.startswith("."))

    def resume_command(self) -> str:
        blueprint = self.record.get("blueprint", {}).get("path", "<blueprint>")
        return f"dtec run {shlex.quote(str(blueprint))} --resume {self.id}"


def new_id() -> str:
    """A run id: when it started (so ids sort by time), and four hex digits for the same second."""
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)


def default_folder(twin: str, target: str, run_id: str) -> Path:
    return ROOT / safe_name(twin) / safe_name(target) / run_id


# What the IR says of how dtec got there, not of the training: an upgrade or a better estimate
# does not make a run's checkpoints another configuration's.
_NOT_CONFIGURATION = ("dtec_version", "estimate", "decisions")


def configuration(ir: str | dict) -> dict:
    """The IR (ir.json's text, or its data) without what does not change the training."""
    if isinstance(ir, str):
        ir = json.loads(ir)
    if not isinstance(ir, dict):
        return {}
    return {k: v for k, v in ir.items() if k not in _NOT_CONFIGURATION}


def ir_sha256(ir: str | dict) -> str:
    """The hash of a compiled configuration: two runs may share checkpoints only when it agrees."""
    canonical = json.dumps(configuration(ir), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def start(folder: Path, run_id: str, bundle, blueprint: Path, sets: list[str], *, index: bool = True) -> Run:
    """Write a new run's record and give it its id under runs/ (a link when -o put it elsewhere).

    `index=False`: a point of a study, found through the study's folder instead.
    """
    text = blueprint.read_bytes() if blueprint.is_file() else b""
    record = {
        "id": run_id,
        "twin": bundle.ir.twin.name,
        "target": bundle.ir.target.name,
        "scheduler": bundle.ir.target.scheduler,
        "folder": str(folder.resolve()),
        "blueprint": {"path": str(blueprint.resolve()), "sha256": hashlib.sha256(text).hexdigest()},
        "sets": list(sets),
        "ir_sha256": ir_sha256(bundle.files["ir.json"]),
        "dtec_version": __version__,
        "git_commit": git_commit(blueprint.resolve().parent),
        "started": time.time(),
        "launches": [],
    }
    run = Run(folder, record)
    save(run)
    if index:
        _index(run, bundle)
    return run


def save(run: Run) -> None:
    make_folder(run.outputs)
    write_atomic(run.outputs / RECORD, json.dumps(run.record, indent=2) + "\n", 0o644)


def add_launch(run: Run, **launch: object) -> None:
    """Record how the run was started this time (a pid, a Slurm job, a Kubernetes resource)."""
    run.record.setdefault("launches", []).append({"at": time.time(), **launch})
    save(run)


def _index(run: Run, bundle) -> None:
    """Make runs/<twin>/<target>/<id> name the run, and `latest` point at it."""
    home = default_folder(bundle.ir.twin.name, bundle.ir.target.name, run.id)
    make_folder(home.parent)
    if home.resolve() != run.folder.resolve():
        with contextlib.suppress(FileExistsError):
            home.symlink_to(run.folder.resolve(), target_is_directory=True)
    latest = home.parent / LATEST
    temporary = home.parent / f".{LATEST}.{os.getpid()}"
    try:
        temporary.unlink(missing_ok=True)
        temporary.symlink_to(run.id, target_is_directory=True)
        os.replace(temporary, latest)
    except OSError as exc:
        raise OutputError(latest, exc.strerror or str(exc)) from None


def _tool(command: list[str]) -> subprocess.CompletedProcess:
    """Run a scheduler's or git's command, its output captured (OSError, SubprocessError pass)."""
    return subprocess.run(command, capture_output=True, text=True, timeout=_TOOL_TIMEOUT_S)


def git_commit(folder: Path) -> str | None:
    """The commit checked out in the git repository holding `folder` (`+dirty` if changed)."""
    try:
        head = _tool(["git", "-C", str(folder), "rev-parse", "HEAD"])
        if head.returncode != 0:
            return None
        dirty = _tool(["git", "-C", str(folder), "status", "--porcelain", "--untracked-files=no"])
    except (OSError, subprocess.SubprocessError):
        return None
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


# ---- finding runs ----------------------------------------------------------------------------
def load(folder: Path) -> Run | None:
    """The run in `folder` (through a link: where it points), or None."""
    record = _read_json(folder / "run" / RECORD)
    if not isinstance(record, dict):
        return None
    if folder.is_symlink():
        real, here = folder.resolve(), Path.cwd().resolve()
        folder = real.relative_to(here) if real.is_relative_to(here) else real
    return Run(folder, record)


def all_runs() -> list[Run]:
    """Every run under runs/ (each once, links included), oldest first."""
    found: dict[Path, Run] = {}
    for entry in sorted(ROOT.glob("*/*/*")):
        if entry.name == LATEST or entry.name.startswith("."):
            continue
        run = load(entry)
        if run is not None:
            found.setdefault(entry.resolve(), run)
    return sorted(found.values(), key=lambda r: (r.record.get("started") or 0, r.id))


def find(ref: str) -> Run:
    """The run a user named: a folder, an id (or its unique start), `latest` (the newest here)."""
    path = Path(ref)
    if path.is_dir():
        run = load(path)
        if run is None:
            raise RunError(f"{ref} is not a run folder (no run/{RECORD}); `dtec runs` lists runs")
        return run
    if ref == LATEST and all_runs():
        return all_runs()[-1]
    known = all_runs()
    matches = [r for r in known if r.id == ref] or [r for r in known if r.id.startswith(ref)]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise RunError(f"run `{ref}` is ambiguous: {', '.join(r.id for r in matches[:5])}")
    raise RunError(f"no run `{ref}` under {ROOT}/ here; `dtec runs` lists them, or name its folder")


def changes(old: object, new: object, prefix: str = "") -> list[str]:
    """The dotted keys where two IRs differ, each with its old and new value when short."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in sorted(old.keys() | new.keys(), key=str):
            out += changes(old.get(key), new.get(key), f"{prefix}.{key}" if prefix else str(key))
        return out
    if old == new:
        return []
    shown = f"{json.dumps(old)} -> {json.dumps(new)}"
    return [f"{prefix or 'the IR'} ({shown})" if len(shown) <= 60 else prefix or "the IR"]


def check_unused(folder: Path, blueprint: Path) -> None:
    """Refuse a folder that holds a run: finished or interrupted, it is never written over."""
    outputs = folder / "run"
    try:
        held = outputs.is_dir() and any(outputs.iterdir())
    except OSError:
        held = False
    if not held:
        return
    if finished_run(folder):
        raise OutputError(
            folder,
            "its run completed (run/summary.json)",
            "choose another folder, or leave out -o: every run gets a folder of its own",
        )
    command = f"dtec run {shlex.quote(str(blueprint))} --resume {shlex.quote(str(folder))}"
    raise OutputError(
        folder, "it holds a run (run/)", f"continue it with `{command}`, or choose another folder"
    )


def check_resumable(run: Run, bundle) -> None:
    """Refuse to resume a run that is running or finished, or under another configuration."""
    current = state(run)
    if current.active:
        raise RunError(
            f"it is still {current.status} ({current.detail}); `dtec logs {run.id} -F` shows it"
        )
    if current.status == "completed":
        raise RunError("it completed; run the blueprint again without --resume for a new run")
    check_configuration(run, bundle)


def check_configuration(run: Run, bundle) -> None:
    """Refuse a bundle for another target, or of another configuration, than the run's."""
    if bundle.ir.target.name != run.record.get("target"):
        ran = run.record.get("target")
        raise RunError(f"it ran on `{ran}`, not `{bundle.ir.target.name}`; leave out -t")
    if run.record.get("ir_sha256") == ir_sha256(bundle.files["ir.json"]):
        return
    try:
        old = configuration((run.folder / "ir.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        old = None
    new = configuration(bundle.files["ir.json"])
    found = changes(old, new) if old is not None else [f"{run.folder}/ir.json is missing"]
    sets = " ".join(f"--set {shlex.quote(s)}" for s in run.record.get("sets", []))
    raise RunError(
        f"its configuration changed: {'; '.join(found[:6])}{' ...' if len(found) > 6 else ''}; "
        f"resume it with the blueprint as it was{f' and {sets}' if sets else ''}, "
        "or run without --resume for a new run"
    )


# ---- what the scheduler says -----------------------------------------------------------------
@dataclass(frozen=True)
class State:
    """A run's status (pending, running, completed, preempted, pruned, failed, cancelled, ...), and why."""

    status: str
    detail: str = ""
    active: bool = False  # still queued or running


def study_points(run: Run) -> list[Run]:
    """The point runs of a study, in the order it ran them (none for a plain run)."""
    names = run.record.get("points") if run.record.get("kind") == "study" else None
    found = [load(run.folder / "points" / str(name)) for name in names or ()]
    return [p for p in found if p is not None]


def state(run: Run) -> State:
    """Ask the scheduler about the newest launch; once it has ended, train.py's summary says how."""
    if run.record.get("kind") == "study":
        return _study_state(run)
    job, summary = run.job, run.summary() or {}
    if job is None:
        return State(str(summary.get("status") or "created"))
    said = str(summary["status"]) if summary.get("status") and _fresh(run, job) else None
    error = str(summary.get("error") or "")
    if job.get("kind") == "local":
        if _alive(job):
            return State("running", f"pid {job.get('pid')}", True)
        if said == "preempted" and run.record.get("pruned"):
            return State("pruned", "its sweep's pruner stopped it")
        if said:
            return State(said, error)
        code = job.get("exit_code")
        if code:
            return State("failed", f"exit code {code}")
        return State("stopped", "the launcher is gone (killed?)")
    found = slurm_state(str(job.get("job_id"))) if job.get("kind") == "slurm" else kube_state(job)
    if found is not None and (found.active or found.status == "cancelled" or not said):
        return found
    forgotten = found.detail if found else "the scheduler no longer knows the job"
    return State(said or "unknown", error or forgotten)


def _study_state(run: Run) -> State:
    """A study is active while a point is, completed when all are, else as its first other point."""
    states = [state(p) for p in study_points(run)]
    done = sum(s.status == "completed" for s in states)
    detail = f"{done} of {len(run.record.get('points') or [])} points completed"
    if any(s.active for s in states):
        return State("running", detail, True)
    if states and done == len(run.record.get("points") or []):
        return State("completed", detail)
    other = next((s.status for s in states if s.status != "completed"), "created")
    return State(other, detail)


def _fresh(run: Run, job: dict) -> bool:
    """Whether summary.json was written after this launch started (so it tells of this launch)."""
    try:
        return (run.outputs / "summary.json").stat().st_mtime >= float(job.get("at", 0))
    except OSError:
        return False


def _alive(job: dict) -> bool:
    """Whether the local launcher of `job` still runs (the same process: its start time agrees)."""
    pid = job.get("pid")
    if not isinstance(pid, int):
        return False
    started = process_start(pid)
    return started is not None and started == job.get("pid_start")


def process_start(pid: int) -> str | None:
    """When a process started (clock ticks since boot, from /proc), to tell it from a reused pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        try:
            os.kill(pid, 0)
        except OSError:
            return None
        return "?"  # no /proc: the pid alone
    return stat.rsplit(")", 1)[1].split()[19]


def slurm_state(job: str) -> State | None:
    """What `scontrol show job` says (None once Slurm has forgotten the job)."""
    try:
        shown = _tool(["scontrol", "show", "job", job, "--oneliner"])
    except (OSError, subprocess.SubprocessError):
        return None
    fields = dict(w.split("=", 1) for w in shown.stdout.split() if "=" in w)
    raw = fields.get("JobState")
    if shown.returncode != 0 or raw is None:
        return None
    reason = fields.get("Reason", "None")
    detail = f"job {job}" + (f", {reason}" if reason not in ("None", "") else "")
    if raw in _SLURM_ACTIVE:
        if raw == "RUNNING" and fields.get("NodeList"):
            detail += f", on {fields['NodeList']}"
        return State(_SLURM_ACTIVE[raw], detail, True)
    exit_code = fields.get("ExitCode", "")
    status = {"COMPLETED": "completed", "CANCELLED": "cancelled"}.get(raw, "failed")
    if exit_code not in ("", "0:0"):
        raw += f", exit code {exit_code}"
    return State(status, f"{detail}, Slurm state {raw}")


# The label each workload's controller puts on its pods: kubectl logs cannot name a custom
# resource (JobSet's jobset_types.go, v0.11.0, for a TrainJob's JobSet of the same name;
# kubeflow/trainer common_types.go, v1.9.4, for a PyTorchJob).
_POD_LABEL = {
    "trainjob": "jobset.sigs.k8s.io/jobset-name",
    "pytorchjob": "training.kubeflow.org/job-name",
}


def kube_logs(job: dict, follow: bool = False) -> list[str]:
    """The `kubectl logs` command that prints the pods' output of a run's Kubernetes workload."""
    resource, namespace = str(job.get("resource")), str(job.get("namespace"))
    kind, _, name = resource.partition("/")
    where = [f"--selector={_POD_LABEL[kind]}={name}", "--prefix", "--max-log-requests=64"] if kind in _POD_LABEL else [resource]
    return ["kubectl", "logs", "-n", namespace, *where, "--all-containers", *(["--follow"] if follow else [])]


def kube_state(job: dict) -> State | None:
    """What `kubectl get` says of the run's Job, TrainJob or PyTorchJob (None: not reachable or gone)."""
    try:
        shown = _tool(["kubectl", "get", "-n", str(job.get("namespace")), str(job.get("resource")),
                       "-o", "json"])
        body = json.loads(shown.stdout) if shown.returncode == 0 else None
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    if not isinstance(body, dict):
        return None
    status = body.get("status") or {}
    conditions = {
        c.get("type"): c for c in status.get("conditions") or [] if c.get("status") == "True"
    }
    name = str(job.get("resource"))
    for kind, said in (("Complete", "completed"), ("Succeeded", "completed"), ("Failed", "failed")):
        if kind in conditions:
            return State(said, f"{name}: {conditions[kind].get('reason') or kind}")
    if "Suspended" in conditions:  # a TrainJob Kueue holds in its queue, or one suspended by hand
        return State("pending", f"{name}: suspended ({conditions['Suspended'].get('reason') or 'queued'})", True)
    active = [s.get("active") for s in status.get("jobsStatus") or []]  # a TrainJob's JobSet jobs
    if status.get("active") or "Running" in conditions or any(active):
        return State("running", name, True)
    return State("pending", name, True)


# ---- acting on a run -------------------------------------------------------------------------
def cancel(run: Run) -> str:
    """Stop the run's newest launch (a study: each point's that runs); return what was done, in words."""
    if run.record.get("kind") == "study":
        done = [cancel(point) for point in study_points(run) if state(point).active]
        if not done:
            raise RunError(f"study {run.id} is not running ({state(run).status})")
        return "; ".join(done)
    current = state(run)
    job = run.job
    if job is None or not current.active:
        raise RunError(f"run {run.id} is not running ({current.status})")
    kind = job.get("kind")
    if kind == "local":
        stop_local(int(job["pid"]), hard=False)
        return f"asked run {run.id} (pid {job['pid']}) to stop: its ranks checkpoint, then stop"
    if kind == "slurm":
        command = ["scancel", str(job["job_id"])]
    else:
        command = ["kubectl", "delete", "-n", str(job["namespace"]), str(job["resource"])]
    try:
        done = _tool(command)
    except (OSError, subprocess.SubprocessError) as exc:
        raise RunError(f"`{shlex.join(command)}` failed: {exc}") from None
    if done.returncode != 0:
        raise RunError(f"`{shlex.join(command)}` failed: {(done.stderr or done.stdout).strip()}")
    return f"cancelled run {run.id} ({shlex.join(command)})"


def stop_local(pid: int, *, hard: bool) -> None:
    """Stop a local launch: its ranks checkpoint and stop (SIGTERM), or all dies now (SIGKILL).

    The ranks themselves get SIGTERM, not torchrun: torchrun would report a stop it was told of
    as a failure, and kill ranks still writing their checkpoint 30 s later.
    """
    tree = descendants(pid)
    if hard:
        for member in [pid, *tree]:
            with contextlib.suppress(OSError):
                os.kill(member, signal.SIGKILL)
        with contextlib.suppress(OSError):
            os.killpg(pid, signal.SIGKILL)
        return
    ranks = [p for p in tree if _is_rank(p)]
    # Inside a Slurm allocation (a sweep's trial) the ranks are slurmstepd's: srun relays USR1
    # to them (SIGTERM to srun would kill the step at once).
    steps = [] if ranks else [p for p in tree if _command(p) == "srun"]
    for member in steps:
        with contextlib.suppress(OSError):
            os.kill(member, signal.SIGUSR1)
    for member in ranks if ranks or steps else [pid]:
        with contextlib.suppress(OSError):
            os.kill(member, signal.SIGTERM)


def descendants(pid: int) -> list[int]:
    """The processes below `pid` (from /proc; none where there is no /proc)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(parent, []).append(int(stat.parent.name))
    found, todo = [], list(children.get(pid, []))
    while todo:
        child = todo.pop()
        found.append(child)
        todo += children.get(child, [])
    return found


def _command(pid: int) -> str:
    """A process's command name (empty when it is gone)."""
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _is_rank(pid: int) -> bool:
    """Whether a process is a training rank: torchrun gives each one LOCAL_RANK."""
    try:
        return b"\0LOCAL_RANK=" in b"\0" + Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False


def log_files(run: Run) -> list[Path]:
    """The files that hold a run's output: the launcher's log locally, the job logs on Slurm."""
    logs = []
    for launch in run.launches:
        if launch.get("kind") == "slurm":
            logs += sorted((run.folder / "logs").glob(f"*-{launch.get('job_id')}.*"))
    local = run.outputs / "logs" / "launcher.log"
    return [*dict.fromkeys(logs), *([local] if local.is_file() else [])]


def describe(run: Run) -> dict:
    """A run as one JSON object: the record's facts, its status, and the summary's results."""
    current = state(run)
    summary = run.summary() or {}
    final = summary.get("final") if isinstance(summary.get("final"), dict) else {}
    started = run.record.get("started")
    ended = _mtime(run.outputs / "summary.json") if not current.active else None
    timed, active = isinstance(started, (int, float)), current.active
    resumable = current.status in ("preempted", "pruned", "stopped", "cancelled", "failed", "unknown")
    return {
        "id": run.id,
        "kind": str(run.record.get("kind", "run")),
        "twin": run.record.get("twin"),
        "target": run.record.get("target"),
        "status": current.status,
        "detail": current.detail,
        "folder": str(run.folder),
        "job": _job_name(run.job),
        "started": started,
        "duration_s": (ended or time.time()) - started if timed and (ended or active) else None,
        "steps": summary.get("steps"),
        "total_steps": summary.get("total_steps"),
        "final_loss": final.get("train_loss"),
        "samples_per_s": summary.get("samples_per_s"),
        "resume": run.resume_command() if resumable and run.checkpoints() else None,
    }


def _job_name(job: dict | None) -> str | None:
    if job is None:
        return None
    return {"local": f"pid {job.get('pid')}", "slurm": f"slurm {job.get('job_id')}"}.get(
        str(job.get("kind")), f"{job.get('namespace')}/{job.get('resource')}")


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
