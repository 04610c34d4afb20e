"""`dtec data inspect`: what a blueprint's data blocks resolve to."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

data_app = typer.Typer(help="Look at the data a blueprint reads.", no_args_is_help=True)


@data_app.command("inspect")
def inspect(
    path: Annotated[Path, typer.Argument(help="A blueprint.")],
    run: Annotated[Optional[Path], typer.Option("--run", help="A run folder: show its normalisation statistics (stats.json).")] = None,
    format: Annotated[str, typer.Option("--format", "-f", help="text or json.")] = "text",
) -> None:
    """Print files, variables, dimensions, sample shapes and samples per split of each data block."""
    from dtec.datainfo import inspect_data, render_text
    from dtec.render import render, write

    if format not in ("text", "json"):
        write(sys.stderr, f"dtec: unknown format `{format}`; choose text or json\n")
        raise typer.Exit(2)
    result, entries = inspect_data(path, run)
    if result.diagnostics:
        write(sys.stderr, render(list(result.diagnostics), "text", files=[path]) + "\n")
    if not result.ok:
        raise typer.Exit(1)
    write(sys.stdout, json.dumps(entries, indent=2) + "\n" if format == "json" else render_text(entries))
