"""CLI command `dtec export mlflow`: finished runs pushed to an MLflow tracking server."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Optional

import typer

from dtec.cli.jobs import _report
from dtec.cli.runs import FormatOption, _format

export_app = typer.Typer(help="Push finished runs to experiment trackers.", no_args_is_help=True)


@export_app.command("mlflow")
def export_mlflow(
    runs: Annotated[list[str], typer.Argument(help="Run ids (or their unique starts), `latest`, or run folders.")],
    uri: Annotated[str, typer.Option("--uri", help="The tracking server (`http(s)://host:5000`) or database URI.")],
    experiment: Annotated[
        Optional[str], typer.Option("--experiment", help="The MLflow experiment (default: the twin's name).")
    ] = None,
    format: FormatOption = "text",
) -> None:
    """Push finished runs (parameters, metrics with their steps and times, model, summary) to MLflow.

    A run already there (tagged with its dtec run id) is not pushed again.
    """
    from dtec.tracking import export_mlflow as push

    _format(format)
    found = push(runs, uri, experiment)
    _report(found.diagnostics)
    if format == "json":
        sys.stdout.write(json.dumps(found.pushed, indent=2) + "\n")
    else:
        for row in found.pushed:
            typer.echo(f"{row['run']}: {'pushed' if row['pushed'] == 'now' else 'already there'} as MLflow run {row['mlflow_run_id']}")
    if found.diagnostics:
        raise typer.Exit(1)
