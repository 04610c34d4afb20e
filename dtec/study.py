"""Run a blueprint's `sweep` as an Optuna study: workers that each ask for trials until the budget
is spent, a trial being the blueprint with the trial's values as `--set` overrides, compiled and
run like any run (docs/sweeps.md). Optuna is imported here only, never by lint or compile.

The study folder, runs/<twin>/<target>/<study id>/, holds `study.json` (what the workers need),
`journal.log` (the default storage), `trial-NNNN/` run folders, `workers/` logs, and at the end
`trials.csv` and `best.twin`. The study id hashes what the study optimises (the base
configuration, the space, the metric, the sampler), so running the command again continues the
same study, and a changed blueprint starts a new one.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import hashlib
import json
import os
import select
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from dtec import runs
from dtec.backends.kubernetes import STORAGE_ENV, WORKER_FAILED_EXIT
from dtec.lang.loader import ROOT_VARIABLE
from dtec.lang.sweep import Dimension, dimensions, goal, value_text
from dtec.parent_run import child_link, finish_parent, start_parent
from dtec.warm import Zygote

_POLL_S = 1.0
_FIRST_IDLE_S = 0.05
_SEED_STRIDE = 1_000_003  # a prime: above any `parallel`, so no two workers' seeds meet
_FOLLOW_S = 0.2  # how often a trial's metrics.jsonl is read: a small file, read whole
HEARTBEAT_S = 10  # a database study's trials beat this often; three missed beats fail one
_KEEP = ("metric", "goal", "sampler", "pruner", "space", "seed")


def study_id(sweep: dict, ir_json: str) -> str:
    """The study's id: what it optimises, so that a rerun finds the same study."""
    what = {k: sweep.get(k) for k in _KEEP} | {"goal": goal(sweep), "ir": runs.ir_sha256(ir_json)}
    return "sweep-" + hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:12]


def open_study(bundle, blueprint: Path, sets: list[str], machines: list[Path]):
    """Create or load the study of `bundle`'s blueprint; return its spec, folder and study."""
    sweep = bundle.blueprint.get("sweep")
    sid = study_id(sweep, bundle.files["ir.json"])
    folder = runs.default_folder(bundle.ir.twin.name, bundle.ir.target.name, sid)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "workers").mkdir(exist_ok=True)
    old = _spec(folder) or {}
    spec = {
        "id": sid,
        "blueprint": str(blueprint.resolve()),
        "target": bundle.ir.target.name,
        "sets": list(sets),
        "machines": [str(m) for m in machines],
        "sweep": sweep,
        "goal": goal(sweep),
        "storage": storage_url(sweep, folder),
        "project": str(Path.cwd()),  # where runs/ is: the workers index their trials' runs there
        **{k: old[k] for k in ("job", "submitted") if k in old},  # the workers last submitted, and how often
    }
    _save(folder, spec)  # start_parent reads it
    spec["tracking"] = start_parent("sweep", folder, bundle.files["ir.json"])
    _save(folder, spec)
    study = _load(spec)
    _say(f"dtec: study {sid}: {sweep['trials']} trials, {sweep['parallel']} at a time, in {folder}")
    return spec, folder, study


def _spec(folder: Path) -> dict | None:
    with contextlib.suppress(OSError, ValueError):
        return json.loads((folder / "study.json").read_text(encoding="utf-8"))
    return None


def _save(folder: Path, spec: dict) -> None:
    (folder / "study.json").write_text(json.dumps(spec, indent=2) + "\n", encoding="utf-8")


def start(bundle, blueprint: Path, sets: list[str], machines: list[Path]) -> int:
    """Run the study of `bundle`'s blueprint to its budget locally; return an exit code."""
    spec, folder, study = open_study(bundle, blueprint, sets, machines)
    sweep, sid = spec["sweep"], spec["id"]
    workers: dict[int, subprocess.Popen] = {}
    restarts = 0
    shown = None
    try:
        while True:
            c = _counts(study)  # once a look: the budget only shrinks, so a stale count only waits a look longer
            for n in range(sweep["parallel"]):
                process = workers.get(n)
                if process is not None and process.poll() is None:
                    continue
                if process is not None and process.returncode != 0:
                    restarts += 1  # a worker killed: another takes its place while the budget lasts
                if _remaining(c, sweep) <= 0 or restarts > sweep["retries"] * sweep["parallel"] + sweep["parallel"]:
                    continue
                if process is None or process.returncode != 0:
                    workers[n] = _spawn(folder, n)
            shown = _show(study, spec, shown, c)
            if all(p.poll() is not None for p in workers.values()) and (_remaining(c, sweep) <= 0 or not workers or restarts > sweep["retries"] * sweep["parallel"] + sweep["parallel"]):
                break
            _wait_any([p for p in workers.values() if p.returncode is None], _POLL_S)
    except KeyboardInterrupt:
        for process in workers.values():
            with contextlib.suppress(OSError):
                process.send_signal(signal.SIGTERM)
        with contextlib.suppress(KeyboardInterrupt):  # a second Ctrl-C: the next run reaps them as dead instead
            for process in workers.values():
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=60)
            _stop_trials(study, {p.pid for p in workers.values()})
        _say(f"dtec: study {sid} stopped; {_again(blueprint, spec)} continues it")
        return 130
    reap(study, spec, everyone=True)
    _show(study, spec, shown, _counts(study))
    return finish(study, spec, folder)


def submit(bundle, blueprint: Path, sets: list[str], machines: list[Path], *, detach: bool, dry_run: bool,
           check: Callable[[], None] | None = None) -> int:
    """Run the study as `parallel` workers on the target's scheduler: one Slurm job array, or one
    Kubernetes Indexed Job; return an exit code.

    A study whose workers still run is followed, not submitted again; one whose budget is spent
    only writes its results. `check` runs first unless the workers run: it exits on a problem.
    """
    from dtec.runner import _need, data_root

    sweep = bundle.blueprint.get("sweep")
    sid = study_id(sweep, bundle.files["ir.json"])
    kube = bundle.ir.target.scheduler != "slurm"
    workers = _Kube(bundle, blueprint, machines, sid) if kube else _Slurm(bundle, sid)
    if dry_run:
        folder = runs.default_folder(bundle.ir.twin.name, bundle.ir.target.name, sid)
        _say(f"dtec: dry run: would write {folder}/ (study.json, {workers.file}), then run:")
        print(f"cd {shlex.quote(str(folder))} && {shlex.join(workers.command)}")
        sys.stdout.write(workers.text((_spec(folder) or {}).get("submitted", 0), sets))
        return 0
    if not _need(workers.command[0], workers.need):
        return 2
    job = (_spec(runs.default_folder(bundle.ir.twin.name, bundle.ir.target.name, sid)) or {}).get("job")
    if check is not None and not (job and workers.active(job)):
        check()  # before the study opens: a failed check leaves nothing behind
    spec, folder, study = open_study(bundle, blueprint, sets, machines)
    job = spec.get("job")
    if not (job and workers.active(job)):
        reap(study, spec)  # the trials of previous workers, if they ended mid-trial
        c = _counts(study)
        if _remaining(c, spec["sweep"]) <= 0:
            _show(study, spec, None, c)
            return finish(study, spec, folder)
        submitted = spec.get("submitted", 0)
        (folder / workers.file).write_text(workers.text(submitted, sets), encoding="utf-8")
        done = subprocess.run(workers.command, cwd=folder, stdout=subprocess.PIPE, text=True,
                              env={**os.environ, **data_root(bundle)})
        job = workers.job(done.stdout, submitted)
        if done.returncode != 0 or not job:
            return done.returncode or 1
        _save(folder, spec | {"job": job, "submitted": submitted + 1})
        _say(f"dtec: study {spec['id']}: submitted {workers.named(job)} of {spec['sweep']['parallel']} workers from {folder}")
    else:
        _say(f"dtec: study {spec['id']}: its {workers.named(job)} still runs")
    again = _again(blueprint, spec)
    if detach:
        print(job if isinstance(job, str) else f"{job['namespace']}/{job['resource']}")
        return 0
    shown = None
    try:
        while workers.active(job):
            shown = _show(study, spec, shown, _counts(study))
            time.sleep(_POLL_S)
    except KeyboardInterrupt:
        _say(f"dtec: detached: {workers.named(job)} still runs; {again} follows it again")
        return 130
    reap(study, spec)
    c = _counts(study)
    _show(study, spec, shown, c)
    if _remaining(c, spec["sweep"]) > 0:
        _say(f"dtec: {workers.named(job)} ended before the budget was spent; {again} continues the study "
             f"({workers.logs(job, folder)})")
    return finish(study, spec, folder)


class _Slurm:
    """A study's workers as one Slurm job array (`workers.sbatch`)."""

    file, command, need = "workers.sbatch", ["sbatch", "--parsable", "workers.sbatch"], "run this on a login node of the cluster"

    def __init__(self, bundle, sid: str) -> None:
        self.bundle, self.sid = bundle, sid

    def text(self, submitted: int, sets: list[str]) -> str:
        from dtec.backends import slurm

        return slurm.workers(self.bundle.ir, self.bundle.plan, self.bundle.blueprint.get("sweep")["parallel"], self.sid)

    def job(self, out: str, submitted: int) -> str:
        return out.strip().split(";")[0]

    def active(self, job: str) -> bool:
        return _array_active(job)

    def named(self, job: str) -> str:
        return f"Slurm job array {job}"

    def logs(self, job: str, folder: Path) -> str:
        return f"the workers' logs: {folder / 'workers'}"


class _Kube:
    """A study's workers as one Kubernetes Indexed Job (`workers.yaml`), named anew for each submission."""

    file, command, need = "workers.yaml", ["kubectl", "apply", "-f", "workers.yaml"], "install kubectl and point it at the cluster"

    def __init__(self, bundle, blueprint: Path, machines: list[Path], sid: str) -> None:
        self.bundle, self.blueprint, self.machines, self.sid = bundle, blueprint, machines, sid

    def name(self, submitted: int) -> str:
        from dtec.backends.kubernetes import dns1035

        return f"{dns1035(self.bundle.ir.twin.name, 24)}-{self.sid.removeprefix('sweep-')[:8]}-{submitted}"

    def text(self, submitted: int, sets: list[str]) -> str:
        from dtec.backends import kubernetes

        sweep = self.bundle.blueprint.get("sweep")
        files = pod_files(self.bundle, self.blueprint, sets, self.machines, self.sid)
        return kubernetes.sweep_workers(self.bundle.ir, self.bundle.plan, self.name(submitted), sweep["parallel"], files,
                                        sweep.get("storage_secret"), sweep["retries"])

    def job(self, out: str, submitted: int) -> dict:
        kube = self.bundle.plan.machine.kube
        return {"namespace": self.bundle.ir.target.namespace or kube.namespace, "resource": f"job/{self.name(submitted)}"}

    def active(self, job: dict) -> bool:
        found = runs.kube_state(job)
        return found is not None and found.active

    def named(self, job: dict) -> str:
        return f"Kubernetes {job['resource']} in namespace {job['namespace']}"

    def logs(self, job: dict, folder: Path) -> str:
        return f"the workers' logs: {shlex.join(runs.kube_logs(job))}"


def pod_files(bundle, blueprint: Path, sets: list[str], machines: list[Path], sid: str) -> dict[str, str]:
    """The files a worker pod is given (the workers' ConfigMap): `study.json`, and under `project/`
    the blueprint, the files it imports and its code folders, at their places in the project.

    The storage URL is in `study.json` only when it holds no password (DT349); with
    `storage_secret` the pods read it from the Secret instead.
    """
    from dtec.lang.loader import load, project_root

    root = project_root(blueprint, os.environ)
    program, _ = load(blueprint)
    files = {f"project/{Path(d.source.path).resolve().relative_to(root).as_posix()}": d.source.text for d in program.documents}
    for path, text in bundle.code.files.items():
        name, _, rest = path.partition("/")[2].partition("/")
        folder = bundle.code.sources[f"{path.split('/')[0]}/{name}"].resolve().relative_to(root)
        files[f"project/{(folder / rest).as_posix()}"] = text
    if machines and bundle.plan.machine.source is not None:  # a profile of the user's, not dtec's own
        files[f"machines/{bundle.plan.machine.source.name}"] = bundle.plan.machine.source.read_text(encoding="utf-8")
    sweep = bundle.blueprint.get("sweep")
    secret = sweep.get("storage_secret")
    spec = {
        "id": sid,
        "blueprint": f"project/{blueprint.resolve().relative_to(root).as_posix()}",
        "target": bundle.ir.target.name,
        "sets": [s for s in sets if not s.startswith("sweep.")],  # the sweep is below, its storage aside
        "machines": ["machines"] if any(f.startswith("machines/") for f in files) else [],
        "sweep": sweep | {"storage": None if secret else sweep["storage"]},
        "goal": goal(sweep),
        "storage": None if secret else sweep["storage"],
        **({"storage_env": STORAGE_ENV} if secret else {}),
    }
    return {"study.json": json.dumps(spec, indent=2, sort_keys=True) + "\n", **dict(sorted(files.items()))}


def pod_worker(config: Path, folder: Path) -> int:
    """A worker pod's entry: the study from the pod's ConfigMap (`config`), trials in `folder`."""
    spec = json.loads((config / "study.json").read_text(encoding="utf-8"))
    if not _resolved(spec)["storage"]:
        _say(f"dtec: the study's storage URL is not set: the pod has no ${spec.get('storage_env')} (the Secret of `storage_secret`)")
        return WORKER_FAILED_EXIT
    os.environ[ROOT_VARIABLE] = str((config / "project").resolve())  # the blueprint's imports stay in the project
    folder.mkdir(parents=True, exist_ok=True)
    spec |= {"blueprint": str(config / spec["blueprint"]), "machines": [str(config / m) for m in spec["machines"]],
             "project": str(folder), "pod": True}
    _save(folder, spec)  # as given: the URL from the Secret is read again, never written
    return worker(folder, int(os.environ.get("JOB_COMPLETION_INDEX") or 0))


def _resolved(spec: dict) -> dict:
    """`spec` with its storage URL: from the environment where a pod reads it from a Secret."""
    return spec | {"storage": os.environ.get(spec["storage_env"])} if spec.get("storage_env") else spec


def storage_url(sweep: dict, folder: Path) -> str:
    """The study's storage: the journal file in its folder, or the database URL as given."""
    return str((folder / "journal.log").resolve()) if sweep.get("storage", "journal") == "journal" else sweep["storage"]


def _load(spec: dict):
    import optuna

    sweep = spec["sweep"]
    study = optuna.create_study(
        study_name=spec["id"], storage=storage(spec), direction=spec["goal"], load_if_exists=True,
        sampler=optuna.samplers.RandomSampler(), pruner=_pruner(sweep),
    )
    # Seeded by what the study holds too: a worker of a continued study must not draw its predecessor's values again.
    study.sampler = _sampler(sweep, spec.get("worker", 0), len(study.get_trials(deepcopy=False)))
    return study


def storage(spec: dict):
    """The Optuna storage of the study `spec` describes (study.json)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = spec["storage"]
    if is_database(url):
        return _database(url, spec["sweep"]["retries"])
    from optuna.storages.journal import JournalFileBackend

    return optuna.storages.JournalStorage(JournalFileBackend(url))


def is_database(url: str) -> bool:
    """Whether the study's storage is a database (RDBStorage, with heartbeats) and not a journal file."""
    return url.startswith(("postgresql", "mysql", "sqlite"))


def _database(url: str, retries: int):
    """Optuna's RDBStorage with heartbeats: a trial whose worker stopped beating is failed and retried."""
    import optuna

    retry = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None)  # Optuna >= 4.9
    callback = ({"heartbeat_stale_trial_callback": retry(max_retry=retries)} if retry
                else {"failed_trial_callback": optuna.storages.RetryFailedTrialCallback(max_retry=retries)})
    return optuna.storages.RDBStorage(url, heartbeat_interval=HEARTBEAT_S, grace_period=3 * HEARTBEAT_S, **callback)


def _sampler(sweep: dict, worker: int, trials: int):
    """The sampler of worker `worker` that starts when the study has `trials` trials."""
    import optuna

    seed = None if sweep.get("seed") is None else (sweep["seed"] + worker + _SEED_STRIDE * trials) % 2**32  # numpy's range
    kind = sweep.get("sampler", "tpe")
    if kind == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if kind == "grid":
        return optuna.samplers.GridSampler({d.key: list(range(len(d.values))) for d in dimensions(sweep)}, seed=seed)
    if kind == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, constant_liar=True)


def _pruner(sweep: dict):
    import optuna

    kind = sweep.get("pruner", "median")
    if kind == "median":
        # Optuna's 5 start-up trials would leave a small study unpruned; a quarter of it is judged first.
        return optuna.pruners.MedianPruner(n_startup_trials=max(1, min(5, sweep["trials"] // 4)))
    if kind == "hyperband":
        return optuna.pruners.HyperbandPruner()
    return optuna.pruners.NopPruner()


def _distribution(d: Dimension):
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if d.fn == "choice":
        return CategoricalDistribution(list(range(len(d.values))))
    if d.fn == "int":
        return IntDistribution(d.low, d.high, step=d.step, log=d.log)
    return FloatDistribution(float(d.low), float(d.high), log=d.fn == "loguniform")


def trial_sets(dims: list[Dimension], params: dict) -> list[str]:
    """The `--set` overrides of a trial's values (a choice is stored as its index)."""
    out = []
    for d in dims:
        value = params[d.key]
        out.append(f"{d.key}={d.values[value] if d.fn == 'choice' else value_text(value)}")
    return out


def _spawn(folder: Path, n: int) -> subprocess.Popen:
    """Start worker `n`: its own session (Ctrl-C reaches `dtec run` alone), ended when `dtec run` dies."""
    from dtec.runner import die_with_parent

    log = (folder / "workers" / f"worker-{n}.log").open("a")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).resolve().parent.parent), os.environ.get("PYTHONPATH")]))}
    return subprocess.Popen([sys.executable, "-m", "dtec.localworker", str(folder), str(n)], stdout=log, stderr=subprocess.STDOUT, env=env,
                            start_new_session=True, preexec_fn=die_with_parent)


def _again(blueprint: Path, spec: dict) -> str:
    """The command that continues the study: its target, `--set` values and machine folders as given."""
    words = ["dtec", "run", str(blueprint), "-t", spec["target"]]
    for option, values in (("--set", spec["sets"]), ("--machines", spec["machines"])):
        for value in values:
            words += [option, value]
    return f"`{shlex.join(words)}`"


def _wait_any(processes, timeout: float) -> None:
    """Sleep until one of `processes` ends or `timeout` passes: the last trial's end is seen at once."""
    fds = []
    try:
        for process in processes:
            # Ended and reaped: nothing to wait for; not Linux (no pidfd_open): a plain sleep.
            with contextlib.suppress(OSError, AttributeError):
                fds.append(os.pidfd_open(process.pid))
        select.select(fds, [], [], timeout)
    finally:
        for fd in fds:
            os.close(fd)


def _stop_trials(study, pids: set[int]) -> None:
    """Fail the trials these workers ran when Ctrl-C stopped them, and enqueue each again as it was:
    stopped by the user, a trial spends no retry and counts as no failure (`_counts`)."""
    from optuna.trial import TrialState

    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if (t.user_attrs.get("owner") or {}).get("pid") in pids:
            _fail(study, t, "stopped: `dtec run` was interrupted", again=int(t.user_attrs.get("retries", 0)), stopped=True)


def _fail(study, trial, reason: str, *, again: int | None, **attrs: object) -> None:
    """Record a running trial failed, with `reason` and `attrs`; with `again`, enqueue its values anew,
    as retry number `again`."""
    from optuna.trial import TrialState

    for key, value in {"reason": reason, **attrs}.items():
        study._storage.set_trial_user_attr(trial._trial_id, key, value)
    study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
    if again is not None:
        study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number, "retries": again})


def _counts(study) -> dict[str, int]:
    """How many trials are in each state (`state_name`): one pass over the trials, done once per look."""
    counts: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        state = state_name(t)
        counts[state] = counts.get(state, 0) + 1
    return counts


def state_name(trial) -> str:
    """A trial's state as the table and the report count it: a failed one Ctrl-C stopped is STOPPED."""
    return "STOPPED" if trial.state.name == "FAIL" and trial.user_attrs.get("stopped") else trial.state.name


def _remaining(c: dict[str, int], sweep: dict) -> int:
    """Trials still to finish (`c`: the counts): the budget counts completed and pruned trials; failures end it at as many."""
    if c.get("FAIL", 0) >= sweep["trials"] + sweep["retries"] * sweep["parallel"]:
        return 0
    return sweep["trials"] - c.get("COMPLETE", 0) - c.get("PRUNED", 0)


def _show(study, spec: dict, shown: tuple | None, c: dict[str, int]) -> tuple:
    """Print one line of the live table when the counts changed; return (counts, line)."""
    if shown is not None and shown[0] == c:
        return shown  # the best is looked for again only when a trial ended
    best = _best(study)
    metric = spec["sweep"].get("metric", "val_loss")
    line = (f"dtec: trials {c.get('COMPLETE', 0)} complete, {c.get('PRUNED', 0)} pruned, {c.get('RUNNING', 0)} running, "
            f"{c.get('FAIL', 0)} failed, of {spec['sweep']['trials']}"
            + (f"; best {metric} {best.value:.6g} (trial {best.number})" if best else ""))
    if shown is None or line != shown[1]:
        _say(line)
    return c, line


def _best(study):
    done = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    if not done:
        return None
    pick = min if study.direction.name == "MINIMIZE" else max
    return pick(done, key=lambda t: (t.value, -t.number) if pick is min else (t.value, -t.number))


# ---- a worker ---------------------------------------------------------------------------------
def worker(folder: Path, n: int, zygote: Zygote | None = None) -> int:
    """Ask the study for trials and run each until the budget is spent; a local worker starts them from `zygote`."""
    from optuna.trial import TrialState

    spec = _resolved(json.loads((folder / "study.json").read_text(encoding="utf-8"))) | {"worker": n}
    os.chdir(spec["project"])
    sweep = spec["sweep"]
    dims = dimensions(sweep)
    if zygote is not None and sweep["parallel"] > 1:
        from dtec.machines.local import trial_devices

        spec["devices"] = trial_devices(n, sweep["parallel"])  # the GPUs its share plans with (dtec.plan)
    study = _load(spec)
    idle = _FIRST_IDLE_S
    while True:
        trial, done = next_trial(folder, study, spec, dims)
        if done:
            return 0
        if trial is None:
            # The budget is taken by running trials: one whose worker dies is retried here. Looks
            # soon at first (the last trials often end together), then seldom (a long trial).
            time.sleep(idle)
            idle = min(2 * idle, _POLL_S)
            continue
        idle = _FIRST_IDLE_S
        with _beating(study, trial):
            state, value, reason = _run_trial(folder, spec, dims, trial, zygote)
        if reason:
            trial.set_user_attr("reason", reason)
        study.tell(trial, value if state == TrialState.COMPLETE else None, state=state)


def next_trial(folder: Path, study, spec: dict, dims: list[Dimension]):
    """Under the ask lock, fail the trials of dead workers and ask for a trial while the budget lasts.

    Returns (trial, False); (None, False) while running trials hold the rest of the budget; and
    (None, True) once the study is done.
    """
    with _asking(folder, study, spec):
        reap(study, spec)
        c = _counts(study)
        if _remaining(c, spec["sweep"]) - c.get("RUNNING", 0) > 0 or c.get("WAITING"):
            trial = study.ask({d.key: _distribution(d) for d in dims})
            trial.set_user_attr("owner", _owner())
            return trial, False
        return None, not c.get("RUNNING") or _remaining(c, spec["sweep"]) <= 0


@contextlib.contextmanager
def _beating(study, trial):
    """Record the trial's heartbeat while it runs (database storage; a journal has none)."""
    from optuna.storages._heartbeat import is_heartbeat_enabled

    storage = study._storage
    if not is_heartbeat_enabled(storage):
        yield
        return
    stop = threading.Event()

    def beat() -> None:
        while True:
            storage.record_heartbeat(trial._trial_id)
            if stop.wait(HEARTBEAT_S):
                return

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


@contextlib.contextmanager
def _asking(folder: Path, study, spec: dict):
    """One worker at a time counts the budget and asks for a trial (none is asked beyond it).

    The lock is the database's own where it has one (workers in pods share no file system),
    else a file lock in the study folder.
    """
    url = spec["storage"]
    statement = _DB_LOCKS.get(url.split(":", 1)[0].split("+", 1)[0]) if is_database(url) else None
    if statement is None:
        with (folder / "ask.lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
        return
    import sqlalchemy

    key = int(hashlib.sha256(spec["id"].encode()).hexdigest()[:15], 16)  # a positive 64-bit key
    storage = getattr(study._storage, "_backend", study._storage)  # Optuna wraps an RDBStorage in a cache
    with storage.engine.connect() as connection:
        connection.execute(sqlalchemy.text(statement[0]), {"key": key})
        try:
            yield
        finally:
            connection.execute(sqlalchemy.text(statement[1]), {"key": key})
            connection.commit()


# Session locks that outlive transactions: PostgreSQL's advisory lock, MySQL's named lock.
_DB_LOCKS = {
    "postgresql": ("SELECT pg_advisory_lock(:key)", "SELECT pg_advisory_unlock(:key)"),
    "mysql": ("SELECT GET_LOCK(CONCAT('dtec-', :key), -1)", "SELECT RELEASE_LOCK(CONCAT('dtec-', :key))"),
}


def _owner() -> dict:
    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": pid, "pid_start": runs.process_start(pid),
            "slurm_job": _slurm_job()}


def _slurm_job() -> str | None:
    """This worker's Slurm job: `ARRAY_TASK` for an array task (its own id may be the array's)."""
    if os.environ.get("SLURM_ARRAY_JOB_ID") and os.environ.get("SLURM_ARRAY_TASK_ID"):
        return f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ['SLURM_ARRAY_TASK_ID']}"
    return os.environ.get("SLURM_JOB_ID")


def reap(study, spec: dict, everyone: bool = False) -> None:
    """Fail the running trials whose worker died, and enqueue each again while retries last.

    A database has heartbeats: Optuna fails the trials that stopped beating. Journal files have
    none: the owner recorded at ask time is checked instead (its process on this host, its Slurm
    job elsewhere; `everyone`: every running trial, when no worker is left).
    """
    import optuna
    from optuna.trial import TrialState

    if is_database(spec["storage"]) and not everyone:
        optuna.storages.fail_stale_trials(study)  # its heartbeat callback enqueues the retry
        return
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = t.user_attrs.get("owner") or {}
        alive = owner.get("host") == socket.gethostname() and runs.process_start(int(owner.get("pid", 0))) == owner.get("pid_start")
        if alive and not everyone:
            continue
        if owner.get("host") != socket.gethostname() and not everyone and _slurm_alive(owner):
            continue
        tries = int(t.user_attrs.get("retries", 0))
        _fail(study, t, "its worker died", again=tries + 1 if tries < spec["sweep"]["retries"] and not everyone else None)


def _slurm_alive(owner: dict) -> bool:
    job = owner.get("slurm_job")
    found = runs.slurm_state(str(job)) if job else None
    return found is None or found.active


def compile_trial(folder: Path, spec: dict, dims: list[Dimension], trial):
    """Compile a trial into its run folder and start its run record; return (bundle, run) or (None, why)."""
    from dtec.compiler import compile_blueprint
    from dtec.output import write_bundle

    sets = [*spec["sets"], *trial_sets(dims, trial.params)]
    blueprint = Path(spec["blueprint"])
    bundle, diagnostics = compile_blueprint(blueprint, spec["target"], sets=sets, machine_dirs=[Path(m) for m in spec["machines"]],
                                            sweep=False, sharing=spec["sweep"]["parallel"])
    if bundle is None:
        return None, "; ".join(d.message for d in diagnostics if d.severity.value == "error")
    run_folder = folder / f"trial-{trial.number:04d}"
    write_bundle(bundle.files, run_folder)
    run = runs.start(run_folder, runs.new_id(), bundle, blueprint, sets)
    if spec.get("tracking"):
        run.record["tracking_parent"] = child_link(spec["tracking"], run_folder.name)
        runs.save(run)
    trial.set_user_attr("run", run.id)
    trial.set_user_attr("folder", str(run_folder))
    return bundle, run


def _run_trial(folder: Path, spec: dict, dims: list[Dimension], trial, zygote: Zygote | None = None):
    """Compile and run one trial; return its state, value and, when it failed, why."""
    from optuna.trial import TrialState

    from dtec.runner import launch

    bundle, run = compile_trial(folder, spec, dims, trial)
    if bundle is None:
        return TrialState.FAIL, None, run
    run_folder = run.folder
    follower = _Follower(run, trial, spec)
    follower.start()
    if spec.get("pod"):
        code = in_pod(bundle, run_folder, run)
    elif os.environ.get("SLURM_JOB_ID") and bundle.ir.target.scheduler == "slurm":
        code = in_allocation(bundle, run_folder, run)
    elif zygote is not None and (start := zygote.start(bundle, run, spec.get("devices"))) is not None:
        code = _warm(zygote, start, run)
    else:
        code = launch(bundle, run_folder, run, env=spec.get("devices"))
    follower.stop.set()
    follower.join()
    # A trial that trained to its end is complete, even where the pruner spoke too late to save anything.
    completed = code == 0 and (run.summary() or {}).get("status") == "completed"
    if follower.pruned and not completed:
        run.record["pruned"] = True  # its summary says preempted: `dtec runs` says why
        with contextlib.suppress(OSError):
            runs.save(run)
        return TrialState.PRUNED, None, None
    follower.step(judge=False)  # the epochs written since the last look
    values = follower.read()
    if code != 0:
        summary = run.summary() or {}
        return TrialState.FAIL, None, str(summary.get("error") or f"the training exited with code {code}")
    if not values:
        return TrialState.FAIL, None, f"no epoch recorded `{spec['sweep'].get('metric', 'val_loss')}`"
    pick = min if spec["goal"] == "minimize" else max
    return TrialState.COMPLETE, pick(values), None


def _warm(zygote: Zygote, start: dict, run) -> int:
    """Run a local trial's ranks forked from the worker's zygote, recorded as runner.launch records its launcher."""
    def started(pid: int) -> None:
        runs.add_launch(run, kind="local", pid=pid, pid_start=runs.process_start(pid), host=socket.gethostname())

    code = zygote.run(start, started)
    run.job["exit_code"] = code
    with contextlib.suppress(OSError):
        runs.save(run)
    return code


def _array_active(job: str) -> bool:
    """Whether a task of the job array is pending or running (`scontrol` shows one line per task)."""
    try:
        shown = subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], capture_output=True, text=True, timeout=60)
    except subprocess.SubprocessError:
        return True  # asked again on the next look
    except OSError:
        return False
    if shown.returncode != 0:
        return "Invalid job id" not in shown.stderr  # forgotten by Slurm: ended long ago
    return bool(shown.stdout.split())


def in_allocation(bundle, folder: Path, run) -> int:
    """Run a trial's job.sbatch inside this worker's Slurm allocation: its srun steps are the ranks."""
    from dtec.runner import data_root, die_with_parent

    env = {**os.environ, **data_root(bundle), "SLURM_SUBMIT_DIR": str(folder), "RUN_DIR": str(run.outputs),
           "DTEC_MASTER_PORT": str(_free_port())}
    log = run.outputs / "logs" / "launcher.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as out:
        process = subprocess.Popen(["bash", bundle.launcher], cwd=folder, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   preexec_fn=die_with_parent)
        runs.add_launch(run, kind="local", pid=process.pid, pid_start=runs.process_start(process.pid),
                        host=socket.gethostname(), slurm_job=_slurm_job())
        return process.wait()


def in_pod(bundle, folder: Path, run) -> int:
    """Run a trial's train.py in this worker pod: torchrun with one node's ranks (DT348 keeps a trial to one)."""
    from dtec.backends.kubernetes import torchrun
    from dtec.runner import data_root

    plan = bundle.plan
    command = [*torchrun(plan.machine), "--standalone", "--nnodes=1", f"--nproc_per_node={plan.ranks_per_node}",
               *plan.machine.launch.torchrun_args, "train.py", f"--run-dir={run.outputs}", "--resume=auto"]
    log = run.outputs / "logs" / "launcher.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as out:
        process = subprocess.Popen(command, cwd=folder, env={**os.environ, **data_root(bundle)}, stdout=out, stderr=subprocess.STDOUT)
        runs.add_launch(run, kind="local", pid=process.pid, pid_start=runs.process_start(process.pid), host=socket.gethostname())
        return process.wait()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


class _Follower(threading.Thread):
    """Follow a trial's metrics.jsonl: report each epoch's value, stop the training when pruned."""

    def __init__(self, run, trial, spec: dict) -> None:
        super().__init__(daemon=True)
        self.trial_run, self.trial = run, trial
        self.metric = spec["sweep"].get("metric", "val_loss")
        self.stop = threading.Event()
        self.pruned = False
        self.reported = 0

    def read(self) -> list[float]:
        return epoch_values(self.trial_run.outputs / "metrics.jsonl", self.metric)

    def run(self) -> None:
        """Report new epochs every second until the training ends."""
        while not self.pruned and not self.stop.wait(_FOLLOW_S):
            self.step()

    def step(self, judge: bool = True) -> None:
        """Report the epochs written since the last look; stop the training when pruned (and `judge`)."""
        values = self.read()
        for step in range(self.reported, len(values)):  # the pruner judges each epoch in turn
            self.trial.report(values[step], step)
            self.reported = step + 1
            if judge and self.trial.should_prune():
                self.pruned = True
                with contextlib.suppress(runs.RunError, KeyError, ValueError):
                    runs.cancel(self.trial_run)
                return


def epoch_values(path: Path, metric: str) -> list[float]:
    """The values of `metric` in a run's metrics.jsonl, one per epoch that recorded it."""
    values = []
    with contextlib.suppress(OSError):
        for line in path.read_text(encoding="utf-8").splitlines():
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if record.get("kind", record.get("type")) == "epoch" and isinstance(record.get(metric), (int, float)):
                    values.append(float(record[metric]))
    return values


def shown_params(dims: list[Dimension], trial) -> list:
    """A trial's values in the space's order as the blueprint writes them ("" where it has none)."""
    return [(d.values[trial.params[d.key]] if d.fn == "choice" else trial.params[d.key]) if d.key in trial.params else "" for d in dims]


def reason(trial) -> str:
    """Why a trial failed, or ""."""
    return trial.user_attrs.get("reason", "") or _silent(trial)


def write_trials(path: Path, dims: list[Dimension], trials) -> None:
    """Write the trials as CSV: number, state, value, each value of the space, run id, reason."""
    with path.open("w", newline="", encoding="utf-8") as out:
        write = csv.writer(out)
        write.writerow(["number", "state", "value", *[d.key for d in dims], "run", "reason"])
        for t in trials:
            write.writerow([t.number, t.state.name.lower(), "" if t.value is None else t.value, *shown_params(dims, t),
                            t.user_attrs.get("run", ""), reason(t)])


def finish(study, spec: dict, folder: Path) -> int:
    """Write trials.csv and best.twin; say what the study found."""
    dims = dimensions(spec["sweep"])
    write_trials(folder / "trials.csv", dims, study.get_trials(deepcopy=False))
    best = _best(study)
    if best is None:
        finish_parent(folder)
        _say(f"dtec: no trial completed; trials.csv in {folder} says why")
        return 1
    from dtec.bestblueprint import write_best

    path = write_best(Path(spec["blueprint"]), trial_sets(dims, best.params), folder / "best.twin")
    finish_parent(folder)
    _say(f"dtec: best trial {best.number}: {spec['sweep'].get('metric', 'val_loss')} {best.value:.6g} "
         f"({', '.join(trial_sets(dims, best.params))}); {path}, {folder / 'trials.csv'}; `dtec report {folder}` draws its figures")
    return 0


def _silent(trial) -> str:
    """Why a trial failed that has no reason of its own: its heartbeat stopped (a database study)."""
    return "its worker died (no heartbeat)" if trial.state.name == "FAIL" else ""


def _say(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


if __name__ == "__main__":
    if sys.argv[1] == "--pod":
        sys.exit(pod_worker(Path(sys.argv[2]), Path(sys.argv[3])))
    sys.exit(worker(Path(sys.argv[1]), int(sys.argv[2])))
