"""CLI command `dtec evaluate`: a finished run's model on its test split or another data file."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Optional

import typer

from dtec.cli.jobs import _report
from dtec.cli.runs import FormatOption, RunArgument, _format


def evaluate(
    run: RunArgument,
    data: Annotated[
        Optional[str],
        typer.Option("--data", help="A data file of the run's source kind (npz, csv), scored whole."),
    ] = None,
    checkpoint: Annotated[
        str, typer.Option("--checkpoint", help="final (final_model.pt), best (checkpoints/best.pt), or a path.")
    ] = "final",
    format: FormatOption = "text",
) -> None:
    """Score a finished run's model on its test split (or --data); keep the result in the run.

    Each evaluation is a new file, run/evaluations/evaluation-NNN.json: none is written over.
    """
    from dtec.evaluation import evaluate_run, metric_rows

    _format(format)
    found = evaluate_run(run, data=data, checkpoint=checkpoint)
    _report(found.diagnostics)
    if found.result is None:
        raise typer.Exit(1)
    if format == "json":
        sys.stdout.write(json.dumps({**found.result, "file": str(found.file)}, indent=2) + "\n")
        return
    rows = [*metric_rows(found.result), ("file", str(found.file))]
    width = max(len(key) for key, _ in rows)
    for key, value in rows:
        typer.echo(f"{key.ljust(width)}  {value}")
