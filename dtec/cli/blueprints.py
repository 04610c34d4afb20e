"""The commands that read and rewrite blueprints: lint, explain, fmt."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer


def lint(
    paths: Annotated[list[Path], typer.Argument(help="Blueprint files or folders (searched recursively).")],
    format: Annotated[str, typer.Option("--format", "-f", help="text, json, github or sarif.")] = "text",
    strict: Annotated[bool, typer.Option("--strict", help="Fail on warnings too.")] = False,
    target: Annotated[
        Optional[list[str]],
        typer.Option("--target", "-t", help="Check against these machines only (default: every target a blueprint declares)."),
    ] = None,
    machines: Annotated[
        Optional[list[Path]],
        typer.Option("--machines", help="Extra folder of machine profiles (also env DTEC_MACHINES)."),
    ] = None,
    jobs: Annotated[
        int, typer.Option("--jobs", "-j", min=0, help="Processes for many files (0: one per CPU; 1: no pool).")
    ] = 0,
) -> None:
    """Check blueprints and report every problem with its code and place."""
    import os

    from dtec.lint import Crash, expand, lint_files
    from dtec.render import FORMATS, render, summary, write

    if format not in FORMATS:
        _usage(f"unknown format `{format}`; choose one of {', '.join(FORMATS)}")
    files = expand(paths)
    found = lint_files(files, jobs=jobs, targets=target or None, machine_dirs=machines or ())
    crashes = [f for f in found if isinstance(f, Crash)]
    diagnostics = [d for f in found if not isinstance(f, Crash) for d in f]
    no_color = "NO_COLOR" in os.environ
    color = format == "text" and sys.stdout.isatty() and not no_color
    text = render(diagnostics, format, color=color, files=files)
    if text:
        write(sys.stdout, text if text.endswith("\n") else text + "\n")
    # The summary is status, not report: stderr keeps stdout parseable in every format.
    write(sys.stderr, summary(diagnostics, len(files), color=sys.stderr.isatty() and not no_color) + "\n")
    for crash in crashes:
        write(sys.stderr, f"dtec: internal error while checking {crash.path}: {crash.error}\n"
              "please report this at the project's issue tracker, with the blueprint\n")
    failing = {"error", "warning"} if strict else {"error"}
    raise typer.Exit(2 if crashes else 1 if any(d.severity.value in failing for d in diagnostics) else 0)


def explain(
    rule: Annotated[
        Optional[str],
        typer.Argument(help="A rule code ([bold]DT101[/]) or name; none lists every rule."),
    ] = None,
) -> None:
    """Show what a diagnostic rule checks, why, and how to fix it."""
    from dtec.render import write
    from dtec.rules import RULES
    from dtec.rules import rule as find_rule
    from dtec.suggest import did_you_mean

    tty = sys.stdout.isatty()
    if rule is None:
        rows = [(r.code, r.name, r.severity, r.summary) for r in RULES.values()]
        if tty:
            from rich.console import Console
            from rich.markup import escape
            from rich.table import Table

            table = Table("code", "name", "severity", "summary")
            for row in rows:
                table.add_row(*map(escape, row))
            Console().print(table)
        else:
            widths = [max(len(row[i]) for row in rows) for i in range(3)]
            for row in rows:
                typer.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[3])
        return
    try:
        found = find_rule(rule.strip())
    except KeyError:
        hint = did_you_mean(rule.strip(), [*RULES, *(r.name for r in RULES.values())])
        _usage(f"unknown rule `{rule}`; " + (hint or "run `dtec explain` to list the rules"))
        return
    doc = found.doc or f"# {found.code} {found.name}\n\n{found.summary}.\n"
    if tty:
        from rich.console import Console
        from rich.markdown import Markdown

        Console().print(Markdown(doc))
    else:
        write(sys.stdout, doc if doc.endswith("\n") else doc + "\n")


def fmt(
    paths: Annotated[
        list[Path],
        typer.Argument(help="Blueprint files or folders (recursive); [bold]-[/]: stdin to stdout."),
    ],
    check: Annotated[
        bool, typer.Option("--check", help="Change nothing; exit 1 if a file would be reformatted.")
    ] = False,
    diff: Annotated[
        bool, typer.Option("--diff", help="Print unified diffs instead of rewriting files.")
    ] = False,
) -> None:
    """Rewrite blueprints in the canonical style, keeping every comment; broken files stay as is."""
    from dtec.format.files import format_bytes, format_path, replace_text, summary, unified_diff
    from dtec.lint import expand
    from dtec.output import OutputError
    from dtec.render import render, write

    dry = check or diff
    changed = unchanged = failed = code = 0
    for path in expand(paths):
        stdin = str(path) == "-"
        data = sys.stdin.buffer.read() if stdin else b""
        outcome = format_bytes("<stdin>", data) if stdin else format_path(path)
        if outcome.formatted is None:
            failed += 1
            if outcome.error is not None:
                write(sys.stderr, f"dtec: {outcome.error}\n")
            else:
                text = render(outcome.diagnostics, "text")
                write(sys.stderr, text if text.endswith("\n") else text + "\n")
            code = 2 if outcome.error is not None else max(code, 1)
            if stdin and not dry:
                sys.stdout.buffer.write(data)  # a pipe back into the same buffer must not lose it
            continue
        if stdin and not dry:
            sys.stdout.buffer.write(outcome.formatted.encode("utf-8"))
        if not outcome.changed:
            unchanged += 1
            continue
        if not (dry or stdin):
            try:
                replace_text(path, outcome.formatted)
            except OutputError as exc:  # say it, and go on with the other files
                write(sys.stderr, f"dtec: {exc}\n")
                failed, code = failed + 1, max(code, 1)
                continue
            write(sys.stderr, f"reformatted {outcome.name}\n")
        changed += 1
        if diff:
            write(sys.stdout, unified_diff(outcome))
        if dry:
            write(sys.stderr, f"would reformat {outcome.name}\n")
            code = max(code, int(check))
    write(sys.stderr, summary(changed, unchanged, failed, dry=dry) + "\n")
    raise typer.Exit(code)


def _usage(message: str) -> None:
    typer.echo(f"dtec: {message}", err=True)
    raise typer.Exit(2)
