"""CLI commands about machines: `dtec targets` (list, show, check) and `dtec env`."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from dtec.cli.jobs import MachinesOption, SetOption, TargetOption, _report, _stderr, _writing

targets_app = typer.Typer(help="List the machines dtec can compile for.", no_args_is_help=False)
FORMATS = ("table", "json")


def _catalog(machines: list[Path] | None):
    from dtec.machines import load_machines

    return load_machines(tuple(machines or ()))


def _warn_broken(catalog) -> None:
    for error in catalog.errors:
        _stderr(f"warning[DT214]: machine profile ignored ({len(error.problems)} problem(s)):")
        for line in error.located():
            _stderr(f"  {line}")


@targets_app.callback(invoke_without_command=True)
def targets(
    ctx: typer.Context,
    machines: MachinesOption = None,
    format: Annotated[str, typer.Option("--format", "-f", help="table or json.")] = "table",
) -> None:
    """List the machines (`local` as detected on this computer)."""
    if ctx.invoked_subcommand is not None:
        return
    if format not in FORMATS:
        _stderr(f"dtec: unknown format `{format}`; choose {' or '.join(FORMATS)}")
        raise typer.Exit(2)
    from dtec.machines import detect_local, summary_rows

    catalog = _catalog(machines)
    rows = summary_rows(catalog, detect_local)
    _warn_broken(catalog)
    if format == "json":
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    _table(rows)


def _table(rows: list[dict]) -> None:
    """Print the machines in the terminal's width (80 columns when not a terminal)."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Machines (* default partition)", box=None, pad_edge=False)
    table.add_column("name", no_wrap=True)
    table.add_column("kind", no_wrap=True)
    table.add_column("node")
    table.add_column("partitions")
    notes = []
    for row in rows:
        gpus = f"{row['gpus_per_node']}x {row['gpu_model'] or 'GPU'}" if row["gpus_per_node"] else "no GPU"
        cpus = row['cpus_per_node']
        node = f"{gpus}, {cpus} CPU{'s' if cpus != 1 else ''}, {row['memory_gb']:g} GiB"
        parts = ", ".join(p + ("*" if p == row["default_partition"] else "") for p in row["partitions"])
        table.add_row(row["name"], row["scheduler"], node, parts)
        if row["replaces"]:
            notes.append(f"{row['name']}: {row['source']} replaces {', '.join(row['replaces'])}")
        elif row["user"]:
            notes.append(f"{row['name']}: {row['source']}")
    console = Console(width=shutil.get_terminal_size((80, 24)).columns)
    console.print(table)
    for note in notes:
        console.print(note, soft_wrap=True, highlight=False)


@targets_app.command("show")
def targets_show(
    name: Annotated[str, typer.Argument(help="Machine name.")],
    machines: MachinesOption = None,
) -> None:
    """Print one machine profile, resolved, as JSON (`local` as detected)."""
    from dtec.machines import detect_local
    from dtec.suggest import suggestion

    catalog = _catalog(machines)
    machine = catalog.get(name)
    if machine is None:
        hint = suggestion(catalog.suggest(name)) or "run `dtec targets` to list them"
        _stderr(f"dtec: no machine named `{name}`; {hint}")
        raise typer.Exit(2)
    if machine.scheduler == "local":
        machine = detect_local(machine)
    sys.stdout.write(json.dumps(machine.to_dict(), indent=2) + "\n")


@targets_app.command("check")
def targets_check(
    folders: Annotated[list[Path], typer.Argument(help="Folders of profiles to check.")],
) -> None:
    """Check the profiles in FOLDERS; print every problem as file:line: message (exit 1 if any)."""
    catalog = _catalog(folders)
    names = {str(p) for p in folders}
    problems = [line for e in catalog.errors for line in e.located()]
    for line in problems:
        sys.stdout.write(line + "\n")
    if problems:
        _stderr(f"dtec: {len(problems)} problem(s) in {len(catalog.errors)} file(s)")
        raise typer.Exit(1)
    checked = sorted(str(p) for folder in names for p in Path(folder).glob("*.toml"))
    sys.stdout.write(f"{len(checked)} profile(s) checked, no problems\n")


def env(
    file: Annotated[Path, typer.Argument(help="The blueprint.")],
    target: TargetOption = "local",
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write the script here (default: print it).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace the file given with -o.")] = False,
    set_: SetOption = None,
    machines: MachinesOption = None,
) -> None:
    """Write the script that builds a target's Python environment on the machine's login node."""
    from dtec.analysis import analyse
    from dtec.backends.environment import script
    from dtec.output import OutputError, write_file

    result = analyse(file, targets=[target], sets=set_ or (), machine_dirs=machines or ())
    _report([d for d in result.diagnostics if d.rule.code != "DT217"])  # DT217 asks for this script
    planned = result.plans.get(target)
    if not result.ok or planned is None or result.blueprint is None:
        _stderr(f"dtec: no environment for `{target}`: fix the errors above")
        raise typer.Exit(1)
    if planned.machine.scheduler != "slurm":
        _stderr(f"dtec: `{target}` is a {planned.machine.scheduler} target: its environment is the "
                + ("image" if planned.machine.is_kube else "Python that runs dtec"))
        raise typer.Exit(2)
    text = script(planned, result.blueprint.name)
    if output is None:
        sys.stdout.write(text)
        return
    with _writing():
        if output.exists() and not force:
            raise OutputError(output, "exists", "choose another file, or --force to replace it")
        write_file(output, text)
    _stderr(f"dtec: wrote {output}; run it on a login node of `{planned.machine.name}`")
