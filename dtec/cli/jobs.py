"""CLI commands that build and check jobs: compile, check, graph, schema (`run` is in runs)."""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

SetOption = Annotated[
    Optional[list[str]],
    typer.Option("--set", "-s", help="Override a value: `strategy.nodes=4` (a .twin expression)."),
]
MachinesOption = Annotated[
    Optional[list[Path]],
    typer.Option("--machines", help="Extra folder of machine profiles (also env DTEC_MACHINES)."),
]
ForceOption = Annotated[
    bool, typer.Option("--force", help="Write into a folder that is not a dtec bundle, replacing files in the way.")
]
TargetOption = Annotated[str, typer.Option("--target", "-t", help="Machine to compile for (`dtec targets`).")]

def _stderr(text: str) -> None:
    sys.stderr.write(text if text.endswith("\n") else text + "\n")


def _report(diagnostics: list) -> None:
    """Show diagnostics on stderr, the way `lint` shows them."""
    if diagnostics:
        from dtec.render import render

        _stderr(render(diagnostics, "text", color=sys.stderr.isatty()))


def _build(file: Path, target: str, sets: list[str] | None, machines: list[Path] | None):
    from dtec.compiler import compile_blueprint

    bundle, diagnostics = compile_blueprint(file, target, sets=sets or (), machine_dirs=machines or ())
    _report(diagnostics)
    if bundle is None:
        _stderr(f"dtec: `{file}` was not compiled for `{target}`: fix the errors above")
        raise typer.Exit(1)
    return bundle


@contextlib.contextmanager
def _writing():
    """Turn a failed or refused write into one line on stderr and exit 1."""
    from dtec.output import OutputError

    try:
        yield
    except OutputError as exc:
        _stderr(f"dtec: {exc}")
        raise typer.Exit(1) from None


def _folder(output: Path | None, root: str, bundle) -> Path:
    from dtec.output import default_folder

    return output or default_folder(root, bundle.ir.twin.name, bundle.ir.target.name)


def _explain(bundle) -> None:
    from rich.console import Console
    from rich.table import Table

    from dtec.units import GIB

    table = Table(title=f"Decisions for `{bundle.ir.target.name}`", show_lines=False)
    for column in ("what", "value", "why"):
        table.add_column(column)
    for d in bundle.ir.decisions:
        table.add_row(d.subject, d.value, d.reason)
    s, e = bundle.ir.strategy, bundle.ir.estimate
    if e.total_bytes is not None:
        limit = f" of {e.limit_bytes / GIB:.1f} GiB" if e.limit_bytes else ""
        table.add_row("memory per rank", f"~{e.total_bytes / GIB:.2f} GiB{limit}", f"{e.parameters:,} parameters, {s.kind}")
    Console(stderr=True).print(table)


def compile_(
    file: Annotated[Path, typer.Argument(help="The blueprint.")],
    target: TargetOption = "local",
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Bundle folder (default build/<twin>-<target>).")] = None,
    emit: Annotated[str, typer.Option("--emit", help="`bundle` (all files) or `ir` (the IR as JSON).")] = "bundle",
    explain: Annotated[bool, typer.Option("--explain", help="Say what dtec decided and why.")] = False,
    force: ForceOption = False,
    set_: SetOption = None,
    machines: MachinesOption = None,
) -> None:
    """Compile a blueprint into a bundle: train.py, the launcher, ir.json and manifest.json."""
    from dtec.output import write_bundle, write_file

    if emit not in ("bundle", "ir"):
        _stderr(f"dtec: unknown --emit `{emit}`; choose `bundle` or `ir`")
        raise typer.Exit(2)
    bundle = _build(file, target, set_, machines)
    if explain:
        _explain(bundle)
    if emit == "ir":
        if output is None:
            sys.stdout.write(bundle.files["ir.json"])
            return
        with _writing():
            write_file(output, bundle.files["ir.json"])
        return
    folder = _folder(output, "build", bundle)
    with _writing():
        write_bundle(bundle.files, folder, force=force)
    typer.echo(f"compiled {file} for {target} into {folder}/ ({', '.join(bundle.files)})")


def schema(
    which: Annotated[str, typer.Argument(help="`ir` or `machine`.")] = "ir",
) -> None:
    """Print a JSON Schema of dtec's interoperability contract."""
    if which == "ir":
        from dtec.ir import ir_schema

        document = ir_schema()
    elif which == "machine":
        from dtec.machines.check import machine_schema

        document = machine_schema()
    else:
        _stderr(f"dtec: unknown schema `{which}`; choose `ir` or `machine`")
        raise typer.Exit(2)
    sys.stdout.write(json.dumps(document, indent=2) + "\n")


def graph(
    file: Annotated[Path, typer.Argument(help="The blueprint.")],
    target: TargetOption = "local",
    format: Annotated[str, typer.Option("--format", "-f", help="dot, mermaid or json.")] = "dot",
    set_: SetOption = None,
    machines: MachinesOption = None,
) -> None:
    """Draw the IR graph of a blueprint planned for a target."""
    from dtec.ir.graph import RENDERERS, build_graph

    if format not in RENDERERS:
        _stderr(f"dtec: unknown format `{format}`; choose one of {', '.join(RENDERERS)}")
        raise typer.Exit(2)
    from dtec.compiler import build

    built, diagnostics = build(file, target, sets=set_ or (), machine_dirs=machines or ())
    _report(diagnostics)
    if built is None:
        raise typer.Exit(1)
    sys.stdout.write(RENDERERS[format](build_graph(built[0])))


def check(
    file: Annotated[Path, typer.Argument(help="The blueprint.")],
    target: TargetOption = "local",
    set_: SetOption = None,
    machines: MachinesOption = None,
) -> None:
    """Build the data and the model of a bundle and run one training step on this computer's CPU."""
    bundle = _build(file, target, set_, machines)
    source = _weights(bundle)
    _preflight(bundle, quiet=False, env=source.env() if source else None)


def _weights(bundle, *, queued: bool = False):
    """The run whose weights the model starts from (None: none, or its earlier stage has not run)."""
    from dtec.chain import ChainError, find

    try:
        return find(bundle, queued=queued)
    except ChainError as exc:
        _stderr(f"dtec: {exc}")
        raise typer.Exit(1) from None


def _preflight(bundle, *, quiet: bool, env: dict[str, str] | None = None) -> None:
    """Run `train.py --check` of the bundle; report, and exit 1 on a failure.

    `env` holds $DTEC_WEIGHTS where the initial weights are at hand: they are loaded too.
    """
    from dtec.preflight import run_check, summary

    _stderr(f"dtec: checking `{bundle.ir.models[bundle.ir.train.model].name}` and its data on this computer's CPU")
    from dtec.diagnostics import has_errors

    result = run_check(bundle, extra_env=env)
    _report(result.diagnostics)  # a model that cannot be exported only warns
    if has_errors(result.diagnostics):
        _stderr("dtec: the check failed: fix the errors above" + (", or submit with --no-check" if quiet else ""))
        raise typer.Exit(1)
    lines = summary(bundle, result.report)
    _stderr("\n".join(lines[1:3] if quiet else lines))
