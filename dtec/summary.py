"""A run's summary.json (SI values) said for people: seconds or minutes, MiB or GiB, samples/s."""

from __future__ import annotations

# The one throughput dtec shows, and what it means.
THROUGHPUT = "training samples / this session's wall time (setup, evaluation included), all ranks"


def duration(seconds: float | None) -> str:
    """`0.68 s`, `42 s`, `3.5 min`, `2.1 h`."""
    if seconds is None:
        return "n/a"
    if seconds < 10:
        return f"{seconds:.2f} s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def size(count: float | None) -> str:
    """Bytes as `342 MiB` or `1.50 GiB`."""
    if count is None:
        return "n/a"
    if count < 2**30:
        return f"{count / 2**20:.0f} MiB"
    return f"{count / 2**30:.2f} GiB"


def rate(per_s: float | None) -> str:
    """`5,254 samples/s`."""
    return "n/a" if per_s is None else f"{per_s:,.0f} samples/s"


def number(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def energy(summary: dict) -> str:
    """Joules as kJ or MJ, or `n/a (why)`."""
    final = summary.get("final") if isinstance(summary.get("final"), dict) else {}
    measured = final.get("energy") if isinstance(final.get("energy"), dict) else {}
    joules = summary.get("energy_j")
    if isinstance(joules, (int, float)):
        return f"{joules / 1e3:,.1f} kJ" if joules < 1e7 else f"{joules / 1e6:,.1f} MJ"
    if summary.get("device") == "cpu":
        return "n/a (no GPU)"
    return f"n/a ({measured.get('reason') or 'not measured'})"


def _count(n: object, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def rows(summary: dict) -> list[tuple[str, str]]:
    """The lines of a summary table: what, value."""
    final = summary.get("final") if isinstance(summary.get("final"), dict) else {}
    ranks = summary.get("world_size")
    epochs = _count(summary.get("epochs"), "epoch")
    training = duration(summary.get("train_time"))
    out = [
        ("status", str(summary.get("status"))),
        ("run", f"{summary.get('twin')}: {summary.get('strategy')}, {_count(ranks, 'rank')} "
                f"on {summary.get('device')}, {summary.get('precision')}"),
        ("steps", f"{summary.get('steps')} of {summary.get('total_steps')} ({epochs})"),
        ("time", f"{duration(summary.get('total_time'))} (training {training})"),
        ("throughput", f"{rate(summary.get('samples_per_s'))} ({THROUGHPUT})"),
    ]
    # The losses and the validation metrics; per-target lists stay in summary.json.
    losses = [
        f"{k.replace('_', ' ')} {number(v)}"
        for k, v in final.items()
        if (k == "train_loss" or k.startswith("val_")) and isinstance(v, (int, float))
    ]
    if losses:
        out.append(("final", ", ".join(losses)))
    test = summary.get("test")
    if isinstance(test, dict) and test:
        out.append(("test", ", ".join(f"{k.replace('_', ' ')} {number(v)}" for k, v in test.items())))
    export = summary.get("export")
    if isinstance(export, dict) and export.get("format") not in (None, "none"):
        out.append(("export", str(export.get("file") or f"none ({export.get('error')})")))
    if "peak_mem" in final:
        out.append(("peak memory", f"{size(final['peak_mem'])} per rank"))
    out.append(("energy", energy(summary)))
    if summary.get("resumed_from"):
        out.append(("resumed from", str(summary["resumed_from"])))
    if summary.get("error"):
        out.append(("error", str(summary["error"])))
    return out


def print_summary(run) -> None:
    """Print a run's summary as a table on stderr, with where its files are."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    summary = run.summary()
    if not isinstance(summary, dict):
        return
    table = Table(title=f"Run {run.id}", show_header=False)
    for key, value in [*rows(summary), ("files", str(run.outputs))]:
        table.add_row(escape(key), escape(value))
    Console(stderr=True).print(table)
