"""The `dtec` command line: the only package that touches the terminal and the file system."""

from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer

from dtec import __version__
from dtec.cli import blueprints, data, editor, evaluation, jobs, machines, runs, tracking

app = typer.Typer(
    name="dtec",
    help="The digital-twin engine compiler: .twin blueprints to PyTorch training jobs.",
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"dtec {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        Optional[bool],
        typer.Option("--version", "-V", callback=_version, is_eager=True, help="Print the version and exit."),
    ] = None,
) -> None:
    """The digital-twin engine compiler."""


for command in (blueprints.lint, blueprints.explain, blueprints.fmt):
    app.command()(command)
app.add_typer(machines.targets_app, name="targets")
app.add_typer(data.data_app, name="data")
app.add_typer(tracking.export_app, name="export")
app.command("compile")(jobs.compile_)
for command in (jobs.schema, jobs.graph, runs.run, jobs.check, machines.env):
    app.command()(command)
app.command("runs")(runs.runs_)
for command in (runs.status, runs.logs, runs.cancel, runs.report, evaluation.evaluate, editor.lsp):
    app.command()(command)


def main() -> None:
    """Run the CLI; unexpected exceptions exit 2 with a short report instead of a traceback."""
    try:
        app()
    except SystemExit:
        raise
    except KeyboardInterrupt:
        sys.stderr.write("dtec: interrupted\n")
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - the last line of defence for users
        sys.stderr.write(f"dtec: internal error: {type(exc).__name__}: {exc}\n")
        sys.stderr.write("please report this at the project's issue tracker, with the blueprint\n")
        sys.exit(2)
