"""Run a blueprint's `scaling` study: one run per point, under one study folder (docs/scaling.md).

The study folder is a run folder of kind `study`: `run/run.json` names its points, and
`points/r<N>/` (`r<N>-<k>` for the k-th repeat) are run folders like any other, each the
blueprint compiled with the point's `--set` overrides (dtec.lang.scaling.point_sets). Locally the
points run one after another; on Slurm each is its own job and on Kubernetes its own workload,
all submitted at once and followed together. `dtec report` reads their `run/scaling.json`.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from dtec import runs
from dtec.lang.scaling import Point, point_sets, points
from dtec.parent_run import child_link, finish_parent, start_parent

_POLL_S = 5.0
_INTERRUPTED = 130
_PROGRESS_STEPS = 10  # a running point's progress is said at each tenth of its steps


def _say(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


@dataclass(frozen=True)
class Planned:
    """One launch of the study: its folder name, its point, its compiled bundle and overrides."""

    name: str
    point: Point
    bundle: object  # dtec.compiler.Bundle
    sets: list[str]


def study_points(bundle) -> list[Point]:
    """The study's points, laid out on the bundle's machine."""
    plan = bundle.plan
    per_node = plan.gpus_per_node or plan.node.usable_cpus
    data = bundle.ir.models[bundle.ir.train.model].input
    return points(bundle.blueprint.get("scaling"), per_node, bundle.ir.data[data].batch)


def point_names(point: Point, repeats: int) -> list[str]:
    return [point.name if k == 1 else f"{point.name}-{k}" for k in range(1, repeats + 1)]


def plan(bundle, blueprint: Path, sets: list[str], machines: list[Path], study_id: str) -> list[Planned] | None:
    """Compile every launch of the study; None (errors reported) when a point does not compile."""
    from dtec.backends.kubernetes import workload_name
    from dtec.cli.jobs import _report
    from dtec.compiler import compile_blueprint

    gpus = bool(bundle.plan.gpus_per_node)
    repeats = bundle.blueprint.get("scaling", "repeats") or 1
    kube = bundle.ir.target.scheduler not in ("local", "slurm")
    planned = []
    for point in study_points(bundle):
        extra = point_sets(bundle.blueprint, point, gpus)
        for name in point_names(point, repeats):
            # Kubernetes workloads of one namespace need names of their own: applied side by side.
            workload = workload_name(bundle.ir.twin.name, f"{study_id.rsplit('-', 1)[-1]}-{name}") if kube else None
            built, diagnostics = compile_blueprint(blueprint, bundle.ir.target.name, sets=[*sets, *extra],
                                                   machine_dirs=machines, name=workload)
            if built is None:
                _report(diagnostics)
                _say(f"dtec: the point of {point.ranks} ranks does not compile ({' '.join(extra)}): fix the errors above")
                return None
            planned.append(Planned(name, point, built, extra))
    return planned


def check_resumable(study: runs.Run, planned: list[Planned]) -> None:
    """Refuse to resume a study that completed, or whose points or configuration changed."""
    if study.record.get("kind") != "study":
        raise runs.RunError("it is a single run, not a scaling study")
    names = [p.name for p in planned]
    if names != study.record.get("points"):
        raise runs.RunError(f"its points are {', '.join(study.record.get('points') or [])}, the blueprint "
                            f"now gives {', '.join(names)}; run without --resume for a new study")
    if runs.state(study).status == "completed":
        raise runs.RunError("every point completed; run the blueprint again without --resume for a new study")
    for item in planned:
        run = runs.load(study.folder / "points" / item.name)
        if run is not None:
            try:
                runs.check_configuration(run, item.bundle)
            except runs.RunError as exc:
                raise runs.RunError(f"point {item.name}: {exc}") from None


def start(bundle, blueprint: Path, sets: list[str], machines: list[Path], *, output: Path | None,
          detach: bool, dry_run: bool, fmt: str = "text", previous: runs.Run | None = None,
          check: bool = True) -> int:
    """Compile every point, write the study folder, and run (or submit) the points; an exit code.

    `previous`: a study to resume: its completed points are kept, its running ones followed, the
    others started again (from their checkpoints), all under the same configuration only.
    """
    from dtec.output import plan_bundle, write_bundle
    from dtec.runner import launch

    queued = bundle.ir.target.scheduler != "local"
    if detach and not queued:
        _say("dtec: --detach is for Slurm and Kubernetes targets: a local study runs its points one "
             "after another, with dtec (run it in tmux or screen to close the terminal)")
        return 2
    study_id = previous.id if previous else runs.new_id()
    planned = plan(bundle, blueprint, sets, machines, study_id)
    if planned is None:
        return 1
    folder = previous.folder if previous else output or runs.default_folder(bundle.ir.twin.name, bundle.ir.target.name, study_id)
    if previous is not None:
        try:
            check_resumable(previous, planned)
        except runs.RunError as exc:
            _say(f"dtec: cannot resume study {previous.id}: {exc}")
            return 1
    else:
        runs.check_unused(folder, blueprint)
    if dry_run:
        for item in planned:
            plan_bundle(folder / "points" / item.name, item.bundle.files, force=False)
            launch(item.bundle, folder / "points" / item.name, None, detach=detach)
        return 0
    kept = {item.name: _kept(folder / "points" / item.name) for item in planned} if previous else {}
    if queued and check and not all(kept.values()):
        from dtec.cli.jobs import _preflight

        _preflight(planned[0].bundle, quiet=True)  # the same model and data at every point: checked once
    study = previous
    if study is None:
        study = runs.start(folder, study_id, bundle, blueprint, sets)
        study.record.update(kind="study", points=[p.name for p in planned], scaling=bundle.blueprint.get("scaling"))
        runs.save(study)
    link = start_parent("study", folder, bundle.files["ir.json"])
    _say(f"dtec: study {study_id}: {len(planned)} points ({', '.join(p.name for p in planned)}) "
         f"on {bundle.ir.target.name}, in {folder}")
    started: list[runs.Run] = []
    failed = 0
    for k, item in enumerate(planned, 1):
        where = folder / "points" / item.name
        run = runs.load(where) if previous else None
        current = runs.state(run) if run is not None else None
        if kept.get(item.name):
            _say(f"dtec: point {k} of {len(planned)}: {item.name} {current.status}, "
                 + ("followed" if current.active else "kept as it is"))
            started.append(run)
            continue
        write_bundle(item.bundle.files, where)
        run = run or runs.start(where, f"{study_id}-{item.name}", item.bundle, blueprint, [*sets, *item.sets], index=False)
        if link and "tracking_parent" not in run.record:
            run.record["tracking_parent"] = child_link(link, item.name)
            runs.save(run)
        point = item.point
        _say(f"dtec: point {k} of {len(planned)}: {item.name} ({point.ranks} rank{'s' if point.ranks > 1 else ''}, "
             f"{point.nodes} node{'s' if point.nodes > 1 else ''}, batch {point.batch} per rank)"
             + (", resumed" if current is not None else ""))
        code = launch(item.bundle, where, run, detach=queued, resuming=current is not None, fmt=fmt, announce=False)
        if code != 0 and queued:
            _say(f"dtec: point {item.name} was not submitted (exit code {code})")
        failed += code != 0
        started.append(run)
    if queued and detach:
        _detached(study, started, fmt, blueprint)
        return 1 if failed else 0
    if queued:
        try:
            failed = follow(started, _steps(bundle))
        except KeyboardInterrupt:
            _say(f"dtec: detached: the points still run; follow them with `{_resume(study, blueprint)}`, "
                 f"stop them with `dtec cancel {study.id}`")
            return _INTERRUPTED
    return finish(folder, started, failed)


def _kept(where: Path) -> bool:
    """Whether a resumed study leaves this point as it is: it completed, or still runs."""
    run = runs.load(where)
    current = runs.state(run) if run is not None else None
    return current is not None and (current.active or current.status == "completed")


def _steps(bundle) -> int:
    block = bundle.blueprint.get("scaling")
    return block["warmup"] + block["steps"]


def _resume(study: runs.Run, blueprint: Path) -> str:
    import shlex

    return f"dtec run {shlex.quote(str(blueprint))} --resume {study.id}"


def _detached(study: runs.Run, started: list[runs.Run], fmt: str, blueprint: Path) -> None:
    """Say a detached study's id and its points' jobs (JSON on stdout when asked for)."""
    jobs = {run.folder.name: _job_id(run.job or {}) for run in started}
    if fmt == "json":
        print(json.dumps({"study": study.id, "folder": str(study.folder), "points": jobs}))
    else:
        print(study.id, *(f"{name}={job}" for name, job in jobs.items()))
    _say(f"dtec: follow it with `{_resume(study, blueprint)}`, see it with `dtec status {study.id}`; "
         f"stop it with `dtec cancel {study.id}`")


def _job_id(job: dict) -> str | None:
    """A launch's Slurm job id, or its Kubernetes namespace/resource."""
    if job.get("kind") == "slurm":
        return str(job.get("job_id"))
    return f"{job['namespace']}/{job['resource']}" if job.get("resource") else None


def last_step(run: runs.Run) -> int | None:
    """The newest optimizer step a point's metrics.jsonl records, or None."""
    try:
        with (run.outputs / "metrics.jsonl").open("rb") as handle:
            handle.seek(0, 2)
            handle.seek(max(handle.tell() - 8192, 0))  # a step record is well under that
            lines = handle.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and isinstance(record.get("step"), int):
            return record["step"]
    return None


def follow(started: list[runs.Run], steps: int) -> int:
    """Follow every point's job until all ended: a line when a point's state or progress changes.

    Returns the number of points that did not complete.
    """
    shown: dict[str, tuple] = {}
    total = len(started)
    while True:
        states = [(run, runs.state(runs.load(run.folder) or run)) for run in started]
        ended = sum(not s.active for _, s in states)
        for k, (run, state) in enumerate(states, 1):
            step = last_step(run) if state.status == "running" else None
            said = (state.status, None if step is None else step * _PROGRESS_STEPS // max(steps, 1))
            if shown.get(run.id) == said:
                continue
            shown[run.id] = said
            progress = f", step {step} of {steps}" if step is not None else ""
            why = f" ({state.detail})" if state.detail and state.status != "running" else ""
            _say(f"dtec: point {k} of {total} ({run.folder.name}): {state.status}{progress}{why}; "
                 f"{ended} of {total} ended")
        if ended == total:
            return sum(s.status != "completed" for _, s in states)
        time.sleep(_POLL_S)


def finish(folder: Path, started: list[runs.Run], failed: int) -> int:
    """One line per point (status, measured step time), then the report: written, and where."""
    from dtec.report import load_point

    for run in started:
        point = load_point(run.folder)
        step = point.get("step_time_s") if point else None
        said = runs.state(runs.load(run.folder) or run).status
        measured = f"{step * 1000:.2f} ms a step, {point['samples_per_s']:,.0f} samples/s" if step else "nothing measured"
        _say(f"  {run.folder.name:<8} {said:<10} {measured}")
    _say(_report(folder))
    finish_parent(folder)
    return 1 if failed else 0


def _report(folder: Path) -> str:
    """Write the study's report into <folder>/report where matplotlib is installed; say where it is."""
    import importlib.util

    from dtec.report import ReportError, write

    if importlib.util.find_spec("matplotlib") is None:
        return f"dtec: `dtec report {folder}` writes the study's report (pip install 'dtec[report]' first)"
    try:
        page = write([folder], folder / "report")
    except ReportError as exc:
        return f"dtec: no report: {exc}"
    return f"dtec: report: {page} (report.md, figures and data beside it)"
