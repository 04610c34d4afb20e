"""The `dtec` command line: the only module that touches the terminal and the file system."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from dtec import __version__

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


@app.command()
def lint(
    paths: Annotated[list[Path], typer.Argument(help="Blueprint files or folders (searched recursively).")],
    format: Annotated[str, typer.Option("--format", "-f", help="text, json, github or sarif.")] = "text",
    strict: Annotated[bool, typer.Option("--strict", help="Fail on warnings too.")] = False,
) -> None:
    """Check blueprints and report every problem with its code and place."""
    from dtec.lint import analyse, expand
    from dtec.render import FORMATS, render

    if format not in FORMATS:
        _usage(f"unknown format `{format}`; choose one of {', '.join(FORMATS)}")
    diagnostics = []
    for path in expand(paths):
        diagnostics.extend(analyse(path).diagnostics)
    text = render(diagnostics, format, color=format == "text" and sys.stdout.isatty())
    if text:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    failing = {"error", "warning"} if strict else {"error"}
    raise typer.Exit(1 if any(d.severity.value in failing for d in diagnostics) else 0)


def _usage(message: str) -> None:
    typer.echo(f"dtec: {message}", err=True)
    raise typer.Exit(2)


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
