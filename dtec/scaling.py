"""Run a blueprint's `scaling` study: one run per point, under one study folder (docs/scaling.md).

The study folder is a run folder of kind `study`: `run/run.json` names its points, and
`points/r<N>/` (`r<N>-<k>` for the k-th repeat) are run folders like any other, each the
blueprint compiled with the point's `--set` overrides (dtec.lang.scaling.point_sets). Locally the
points run one after another; on Slurm each is its own job, all submitted at once and followed
together. `dtec report` reads their `run/scaling.json`.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from dtec import runs
from dtec.lang.scaling import Point, point_sets, points
from dtec.parent_run import child_link, finish_parent, start_parent

_POLL_S = 5.0


def _say(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def study_points(bundle) -> list[Point]:
    """The study's points, laid out on the bundle's machine."""
    plan = bundle.plan
    per_node = plan.gpus_per_node or plan.node.usable_cpus
    data = bundle.ir.models[bundle.ir.train.model].input
    return points(bundle.blueprint.get("scaling"), per_node, bundle.ir.data[data].batch)


def point_names(point: Point, repeats: int) -> list[str]:
    return [point.name if k == 1 else f"{point.name}-{k}" for k in range(1, repeats + 1)]


def start(bundle, blueprint: Path, sets: list[str], machines: list[Path], *, output: Path | None,
          detach: bool, dry_run: bool, fmt: str = "text") -> int:
    """Compile every point, write the study folder, and run (or submit) the points; an exit code."""
    from dtec.cli.jobs import _report
    from dtec.compiler import compile_blueprint
    from dtec.output import plan_bundle, write_bundle
    from dtec.runner import launch

    gpus = bool(bundle.plan.gpus_per_node)
    repeats = bundle.blueprint.get("scaling", "repeats") or 1
    compiled = []
    for point in study_points(bundle):
        extra = point_sets(bundle.blueprint, point, gpus)
        built, diagnostics = compile_blueprint(blueprint, bundle.ir.target.name, sets=[*sets, *extra], machine_dirs=machines)
        if built is None:
            _report(diagnostics)
            _say(f"dtec: the point of {point.ranks} ranks does not compile ({' '.join(extra)}): fix the errors above")
            return 1
        compiled += [(name, point, built) for name in point_names(point, repeats)]
    study_id = runs.new_id()
    folder = output or runs.default_folder(bundle.ir.twin.name, bundle.ir.target.name, study_id)
    runs.check_unused(folder, blueprint)
    if dry_run:
        for name, _, built in compiled:
            plan_bundle(folder / "points" / name, built.files, force=False)
            launch(built, folder / "points" / name, None)
        return 0
    study = runs.start(folder, study_id, bundle, blueprint, sets)
    study.record.update(kind="study", points=[name for name, _, _ in compiled],
                        scaling=bundle.blueprint.get("scaling"))
    runs.save(study)
    link = start_parent("study", folder, bundle.files["ir.json"])
    _say(f"dtec: study {study_id}: {len(compiled)} points ({', '.join(n for n, _, _ in compiled)}) "
         f"on {bundle.ir.target.name}, in {folder}")
    started: list[runs.Run] = []
    failed = 0
    slurm = bundle.ir.target.scheduler != "local"
    for k, (name, point, built) in enumerate(compiled, 1):
        where = folder / "points" / name
        write_bundle(built.files, where)
        run = runs.start(where, f"{study_id}-{name}", built, blueprint, [*sets, *point_sets(bundle.blueprint, point, gpus)], index=False)
        if link:
            run.record["tracking_parent"] = child_link(link, name)
            runs.save(run)
        _say(f"dtec: point {k} of {len(compiled)}: {name} ({point.ranks} rank{'s' if point.ranks > 1 else ''}, "
             f"{point.nodes} node{'s' if point.nodes > 1 else ''}, batch {point.batch} per rank)")
        code = launch(built, where, run, detach=slurm, fmt=fmt)
        failed += code != 0
        started.append(run)
    if slurm and not detach:
        failed = follow(started)
    if not slurm or not detach:
        show(folder, started)
        finish_parent(folder)
    return 1 if failed else 0


def follow(started: list[runs.Run]) -> int:
    """Follow every point's job until all ended, one line per change; the number that failed."""
    shown: dict[str, str] = {}
    while True:
        states = {run.id: runs.state(runs.load(run.folder) or run) for run in started}
        for rid, state in states.items():
            if shown.get(rid) != state.status:
                done = sum(not s.active for s in states.values())
                _say(f"dtec: {done} of {len(states)} points ended; {rid}: {state.status}")
                shown[rid] = state.status
        if not any(s.active for s in states.values()):
            return sum(s.status != "completed" for s in states.values())
        time.sleep(_POLL_S)


def show(folder: Path, started: list[runs.Run]) -> None:
    """One line per point: status and measured step time; then where the report comes from."""
    from dtec.report import load_point

    for run in started:
        point = load_point(run.folder)
        step = point.get("step_time_s") if point else None
        said = runs.state(runs.load(run.folder) or run).status
        measured = f"{step * 1000:.2f} ms a step, {point['samples_per_s']:,.0f} samples/s" if step else "nothing measured"
        _say(f"  {run.folder.name:<8} {said:<10} {measured}")
    _say(f"dtec: `dtec report {folder}` writes the study's report")
