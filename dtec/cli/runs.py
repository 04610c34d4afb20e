"""CLI commands for runs: run (a new one, or resume one), runs, status, logs, cancel."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from dtec.cli.jobs import MachinesOption, SetOption, _build, _preflight, _stderr, _weights, _writing
from dtec.lang.scaling import has_scaling
from dtec.lang.sweep import has_sweep

FormatOption = Annotated[str, typer.Option("--format", "-f", help="text or json.")]
RunArgument = Annotated[
    str, typer.Argument(help="A run id (or its unique start), `latest`, or a run folder.")
]


def _format(value: str) -> None:
    if value not in ("text", "json"):
        _stderr(f"dtec: unknown format `{value}`; choose `text` or `json`")
        raise typer.Exit(2)


def _find(ref: str):
    from dtec.runs import RunError, find

    try:
        return find(ref)
    except RunError as exc:
        _stderr(f"dtec: {exc}")
        raise typer.Exit(2) from None


def run(
    file: Annotated[Path, typer.Argument(help="The blueprint.")],
    target: Annotated[
        Optional[str],
        typer.Option(
            "--target", "-t", help="Machine (`dtec targets`); default local, or the resumed run's."
        ),
    ] = None,
    output: Annotated[
        Optional[Path],
        typer.Option("--output", "-o", help="Run folder (default runs/<twin>/<target>/<run id>)."),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Write nothing; print what would be written and run.")
    ] = False,
    detach: Annotated[
        bool,
        typer.Option("--detach", help="Submit, print the run and job ids (Slurm, Kubernetes)."),
    ] = False,
    resume: Annotated[
        Optional[str],
        typer.Option("--resume", help="Continue this interrupted run (id or folder)."),
    ] = None,
    force: Annotated[
        bool,
        typer.Option("--force", help="Write into a folder that is not a bundle, over its files."),
    ] = False,
    no_check: Annotated[
        bool,
        typer.Option("--no-check", help="Submit without `dtec check` first (Slurm, Kubernetes)."),
    ] = False,
    set_: SetOption = None,
    machines: MachinesOption = None,
    format: FormatOption = "text",
) -> None:
    """Compile a blueprint into a new run folder and run it: locally, on Slurm or on Kubernetes.

    A job for a queue is checked first (`dtec check`): one training step on this computer's CPU.
    """
    from dtec import runs
    from dtec.compiler import for_run
    from dtec.output import plan_bundle, write_bundle
    from dtec.runner import launch

    _format(format)
    previous = None
    if resume is not None:
        if output is not None:
            _stderr("dtec: --resume names the run folder already; leave out -o")
            raise typer.Exit(2)
        previous = _find(resume)
        target = target or previous.record.get("target")
        set_ = set_ or previous.record.get("sets") or None
    bundle = _build(file, target or "local", set_, machines)
    study = previous is not None and previous.record.get("kind") == "study"
    if bundle.blueprint is not None and (has_scaling(bundle.blueprint) or study):
        from dtec import scaling

        if not has_scaling(bundle.blueprint):
            _stderr(f"dtec: cannot resume study {previous.id}: {file} has no `scaling` block")
            raise typer.Exit(1)
        with _writing():
            code = scaling.start(bundle, file, list(set_ or ()), list(machines or ()), output=output, detach=detach,
                                 dry_run=dry_run, fmt=format, previous=previous, check=not no_check)
        raise typer.Exit(code)
    if bundle.blueprint is not None and has_sweep(bundle.blueprint):
        raise typer.Exit(_sweep(bundle, file, set_, machines, resume=resume, output=output, dry_run=dry_run, detach=detach,
                                check=not no_check))
    if detach and bundle.ir.target.scheduler == "local":
        _stderr("dtec: --detach is for Slurm and Kubernetes targets: a local run ends with dtec "
                "(run it in tmux or screen to close the terminal)")
        raise typer.Exit(2)
    run_id = previous.id if previous else runs.new_id()
    bundle = for_run(bundle, run_id)
    if previous is not None:
        try:
            runs.check_resumable(previous, bundle)
        except runs.RunError as exc:
            _stderr(f"dtec: cannot resume run {previous.id}: {exc}")
            raise typer.Exit(1) from None
    folder = previous.folder if previous else output or runs.default_folder(
        bundle.ir.twin.name, bundle.ir.target.name, run_id)
    with _writing():
        if previous is None:
            runs.check_unused(folder, file)
    weights = _chain(bundle, file, previous, machines, no_check=no_check, dry_run=dry_run)
    env = {"DTEC_WEIGHTS": weights["path"]} if weights else None
    with _writing():
        if bundle.ir.target.scheduler != "local" and not (no_check or dry_run):
            _preflight(bundle, quiet=True, env=None if weights and weights.get("after_job") else env)
        if dry_run:
            plan_bundle(folder, bundle.files, force=force)
            _stderr(f"dtec: dry run: would write {folder}/ ({', '.join(bundle.files)}), then run:")
        else:
            write_bundle(bundle.files, folder, force=force)
            record = previous or runs.start(folder, run_id, bundle, file, list(set_ or ()))
            if weights and previous is None:
                record.record["weights"] = weights
                runs.save(record)
    after = weights.get("after_job") if weights and previous is None else None
    if dry_run:
        raise typer.Exit(launch(bundle, folder, None, resuming=previous is not None, env=env))
    code = launch(bundle, folder, record, detach=detach, resuming=previous is not None, fmt=format,
                  env=env, after=after)
    if format == "json" and not detach:
        sys.stdout.write(json.dumps(runs.describe(record), indent=2) + "\n")
    raise typer.Exit(code)


def _sweep(bundle, file: Path, sets, machines, *, detach: bool, dry_run: bool, check: bool, **refused) -> int:
    """Run the blueprint's sweep (docs/sweeps.md); options for one run do not apply to it."""
    scheduler = bundle.ir.target.scheduler
    given = [f"--{name.replace('_', '-')}" for name, value in refused.items() if value]
    if detach and scheduler == "local":
        given.append("--detach")
    if dry_run and scheduler == "local":
        given.append("--dry-run")
    if given:
        _stderr(f"dtec: {', '.join(given)} is for one run; a sweep's runs are its trials (docs/sweeps.md)")
        return 2
    import importlib.util

    if importlib.util.find_spec("optuna") is None:
        _stderr("dtec: a sweep runs an Optuna study, and Optuna is not installed: pip install 'dtec[sweep]'")
        return 2
    scheme = str(bundle.blueprint.get("sweep").get("storage", "journal")).split(":", 1)[0]
    if scheme in ("postgresql", "postgresql+psycopg2") and importlib.util.find_spec("psycopg2") is None:
        _stderr("dtec: the sweep's study is in PostgreSQL, and psycopg2 is not installed: pip install 'dtec[sweep-db]'")
        return 2
    from dtec import study

    if scheduler != "local":
        def preflight() -> None:
            with _writing():
                _preflight(bundle, quiet=True)  # the data and code every trial reads, before the workers queue

        return study.submit(bundle, file, list(sets or ()), list(machines or ()), detach=detach, dry_run=dry_run,
                            check=preflight if check else None)
    return study.start(bundle, file, list(sets or ()), list(machines or ()))


# The blueprints of a chain being run, earliest first: a stage that needs a later one is a cycle.
_CHAIN: list[Path] = []


def _chain(bundle, file: Path, previous, machines, *, no_check: bool, dry_run: bool) -> dict | None:
    """The weights the run starts from (its run record's `weights`); the earlier stage run first.

    A resumed run keeps the weights it started from. Where the earlier stage's blueprint has no
    completed run for the target, it is run now: locally to its end, on Slurm submitted (this
    stage then waits for it with `--dependency=afterok`).
    """
    from dtec import chain

    if chain.weights(bundle) is None:
        return None
    if previous is not None:
        return previous.record.get("weights")
    slurm = bundle.ir.target.scheduler == "slurm"
    source = _weights(bundle, queued=slurm)
    if source is None:
        earlier = chain.stage(bundle)
        here = Path(os.path.realpath(file))
        target = bundle.ir.target.name
        if earlier in _CHAIN or earlier == here:
            cycle = " -> ".join(str(p) for p in [*_CHAIN, here, earlier])
            _stderr(f"dtec: the blueprints start from each other's weights: {cycle}")
            raise typer.Exit(1)
        if dry_run:
            _stderr(f"dtec: dry run: {earlier} has no completed run for `{target}`; "
                    "`dtec run` would run it first")
            return None
        _stderr(f"dtec: {file} starts from the weights of {earlier}, which has no completed run "
                f"for `{target}`: running it first")
        _CHAIN.append(here)
        try:
            run(earlier, target=target, detach=slurm, no_check=no_check, machines=machines)
        except typer.Exit as exc:
            if exc.exit_code:
                _stderr(f"dtec: the earlier stage {earlier} did not complete: {file} is not run")
                raise typer.Exit(exc.exit_code) from None
        finally:
            _CHAIN.pop()
        source = _weights(bundle, queued=slurm)
        if source is None:
            _stderr(f"dtec: the earlier stage {earlier} left no completed run: {file} is not run")
            raise typer.Exit(1)
    _stderr(f"dtec: starting from the weights of run {source.run.id} ({source.path})"
            + (f", once Slurm job {source.job} completes" if source.job else ""))
    return source.record()


def runs_(format: FormatOption = "text") -> None:
    """List the runs made from this folder (under runs/): status, time, loss, throughput."""
    from dtec.runs import all_runs, describe
    from dtec.summary import duration, number

    _format(format)
    found = [describe(r) for r in all_runs()]
    if format == "json":
        sys.stdout.write(json.dumps(found, indent=2) + "\n")
        return
    if not found:
        _stderr("dtec: no runs under runs/ here (`dtec run BLUEPRINT` makes one)")
        return
    header = ("id", "kind", "twin", "target", "status", "start", "duration", "final loss", "samples/s")
    table = [header] + [
        (r["id"], r["kind"], str(r["twin"]), str(r["target"]), r["status"], _when(r["started"]),
         duration(r["duration_s"]), "-" if r["final_loss"] is None else number(r["final_loss"]),
         "-" if r["samples_per_s"] is None else f"{r['samples_per_s']:,.0f}")
        for r in found
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        typer.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())


def _when(stamp: object) -> str:
    if not isinstance(stamp, (int, float)):
        return "-"
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(stamp))


def status(run: RunArgument, format: FormatOption = "text") -> None:
    """Say how a run stands: queued, running, or how it ended, with its results."""
    from dtec.runs import describe
    from dtec.summary import duration, rows

    _format(format)
    found = _find(run)
    facts = describe(found)
    if format == "json":
        sys.stdout.write(json.dumps({**facts, "summary": found.summary()}, indent=2) + "\n")
        return
    lines = [
        ("run", f"{facts['id']} ({facts['twin']} on {facts['target']})"),
        ("status", facts["status"] + (f" ({facts['detail']})" if facts["detail"] else "")),
        ("job", facts["job"] or "-"),
        ("started", _when(facts["started"])),
        ("duration", duration(facts["duration_s"])),
        ("folder", facts["folder"]),
    ]
    summary = found.summary()
    if isinstance(summary, dict) and not facts["status"] in ("running", "pending"):
        lines += [row for row in rows(summary) if row[0] != "status"]
    if facts["resume"]:
        lines.append(("resume", facts["resume"]))
    width = max(len(key) for key, _ in lines)
    for key, value in lines:
        typer.echo(f"{key.ljust(width)}  {value}")


def logs(
    run: RunArgument,
    follow: Annotated[
        bool, typer.Option("--follow", "-F", help="Keep printing while the run goes on.")
    ] = False,
) -> None:
    """Print a run's output: the launcher's log, the Slurm job's logs, or its pods' logs."""
    import subprocess

    from dtec.runner import print_growth
    from dtec.runs import kube_logs, log_files, state

    found = _find(run)
    job = found.job or {}
    if job.get("kind") == "kubernetes":
        raise typer.Exit(subprocess.call(kube_logs(job, follow)))
    positions: dict[Path, int] = {}
    while True:
        active = follow and state(found).active
        files = log_files(found)
        print_growth(files, positions)
        if not active:
            break
        time.sleep(1.0)
    if not files:
        _stderr(f"dtec: run {found.id} has no logs yet")


def cancel(run: RunArgument, format: FormatOption = "text") -> None:
    """Stop a run: locally its ranks checkpoint first; on Slurm scancel; kubectl delete."""
    from dtec.runs import RunError
    from dtec.runs import cancel as stop

    _format(format)
    found = _find(run)
    try:
        done = stop(found)
    except RunError as exc:
        _stderr(f"dtec: {exc}")
        raise typer.Exit(1) from None
    if format == "json":
        sys.stdout.write(json.dumps({"run": found.id, "cancelled": True, "how": done}) + "\n")
    else:
        typer.echo(f"dtec: {done}; `{found.resume_command()}` continues it")


def report(
    folders: Annotated[list[Path], typer.Argument(help="Study or run folders (several: compared in one report).")],
    output: Annotated[
        Optional[Path], typer.Option("--output", "-o", help="Report folder (default: <first folder>/report).")
    ] = None,
) -> None:
    """Write a scaling study's, runs' or a sweep's report: report.html (self-contained), report.md, PNG/SVG figures, JSON/CSV."""
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        _stderr("dtec: the report draws its figures with matplotlib, which is not installed: pip install 'dtec[report]'")
        raise typer.Exit(2)
    from dtec import sweepreport
    from dtec.report import ReportError, write

    out = output or folders[0] / "report"
    try:
        sweeps = [f for f in folders if sweepreport.is_sweep(f)]
        if sweeps and len(folders) != 1:
            raise ReportError(f"a sweep's report is made alone: name only its folder ({sweeps[0]})")
        with _writing():
            page = sweepreport.write(folders[0], out) if sweeps else write(folders, out)
    except ReportError as exc:
        _stderr(f"dtec: {exc}")
        raise typer.Exit(1) from None
    typer.echo(f"dtec: report written: {page} (and report.md, PNG/SVG figures, JSON/CSV data in {out}/)")
