"""`dtec report`: a scaling study's (or several runs') figures, tables and verdict (docs/scaling.md);
a sweep's are drawn by dtec/sweepreport.py with the same page.

Writes report.html (one file, figures embedded as data: URLs, nothing fetched), report.md with
PNG and SVG figures beside it, and the data as report.json and points.csv. matplotlib is
imported only here (`pip install 'dtec[report]'`).
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import statistics
from pathlib import Path

from dtec import runs

PHASES = ("data", "compute", "comm", "optimizer", "rest")
COLOURS = {"data": "#4c72b0", "compute": "#55a868", "comm": "#c44e52", "optimizer": "#8172b2", "rest": "#999999"}
GOOD_EFFICIENCY = 0.8
FIGURE_SIZE = (6.4, 4.0)  # inches; at DPI, the PNGs' size in pixels
DPI = 100


class ReportError(Exception):
    """A folder that holds nothing to report, said in one line."""


def _read(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def load_point(folder: Path) -> dict | None:
    """A run's measurements: its run/scaling.json, or what its summary says; None without either."""
    found = _read(folder / "run" / "scaling.json")
    summary = _read(folder / "run" / "summary.json") or {}
    if not isinstance(found, dict):
        if not isinstance(summary, dict) or not summary.get("samples_per_s"):
            return None
        found = {"ranks": summary.get("world_size"), "samples_per_s": summary["samples_per_s"], "step_time_s": None}
    losses = []
    try:
        for line in (folder / "run" / "metrics.jsonl").read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            if record.get("kind") == "step" and isinstance(record.get("loss"), float):
                losses.append((record["step"], record["loss"]))
    except (OSError, ValueError):
        pass
    energy = found.get("energy")
    if isinstance(energy, dict) and not energy.get("available"):
        found = {**found, "energy": _job_energy(folder, energy, summary, found.get("global_batch"))}
    return {**found, "name": folder.name, "folder": str(folder), "losses": losses}


def _job_energy(folder: Path, measured: dict, summary: dict, batch) -> dict:
    """Where train.py measured no energy: what Slurm recorded for the run's jobs (all its steps' samples)."""
    from dtec.jobenergy import slurm_energy

    run = runs.load(folder)
    jobs = [str(j["job_id"]) for j in (run.launches if run else []) if j.get("kind") == "slurm"]
    if not jobs:
        return measured
    said = slurm_energy(jobs, runs._tool)
    samples = (summary.get("steps") or 0) * (batch or 0) if isinstance(summary, dict) else 0
    if not said["available"] or not samples:
        why = said.get("reason") or "the run recorded no steps"
        return {"available": False, "reason": f"{measured.get('reason', 'not measured')}; {why}"}
    return {**said, "samples": samples, "samples_per_joule": samples / said["joules"]}


def collect(paths: list[Path]) -> tuple[list[dict], dict]:
    """The points of the studies and runs named, and what the first study says about itself."""
    found, about = [], {}
    for path in paths:
        run = runs.load(path)
        if run is None:
            raise ReportError(f"{path} is not a run or study folder (no run/run.json)")
        members = runs.study_points(run) or [run]
        if run.record.get("kind") == "study" and not about:
            about = {"study": run.id, "twin": run.record.get("twin"), "target": run.record.get("target"),
                     "scaling": run.record.get("scaling") or {}}
        for member in members:
            point = load_point(member.folder)
            if point is not None:
                found.append(point)
    if not found:
        raise ReportError("nothing measured in " + ", ".join(map(str, paths)) + " (no run/scaling.json or summary.json)")
    return found, about


def summarise(found: list[dict], mode: str) -> list[dict]:
    """One row per world size (repeats: the median), with speed-up and efficiency against the smallest."""
    by_ranks: dict[int, list[dict]] = {}
    for point in found:
        by_ranks.setdefault(int(point.get("ranks") or 1), []).append(point)
    rows = []
    for ranks, group in sorted(by_ranks.items()):
        timed = [p for p in group if p.get("step_time_s")]
        middle = sorted(timed, key=lambda p: p["step_time_s"])[len(timed) // 2] if timed else group[0]
        row = {
            "ranks": ranks, "repeats": len(group), "name": middle["name"],
            "step_time_s": statistics.median(p["step_time_s"] for p in timed) if timed else None,
            "samples_per_s": statistics.median(p["samples_per_s"] for p in group),
            "phases_s": middle.get("phases_s") or {},
            "comm_share": middle.get("comm_share"),
            "comm_method": middle.get("comm_method"),
            "comm_nosync_s": middle.get("comm_nosync_s"),
            "comm_check": middle.get("comm_check"),
            "global_batch": middle.get("global_batch"),
            "cpu_utilisation_percent": middle.get("cpu_utilisation_percent"),
            "peak_memory_bytes": middle.get("peak_memory_bytes"),
            "gpu": middle.get("gpu") or {"available": False, "reason": "not recorded"},
            "energy": middle.get("energy") or {"available": False, "reason": "not recorded"},
            "device": middle.get("device", "cpu"),
        }
        # GPU-hours (rank-hours on CPUs) per sample: ranks busy for one sample's share of a step.
        row["samples_per_rank_hour"] = row["samples_per_s"] * 3600 / ranks
        row["samples_per_joule"] = row["energy"].get("samples_per_joule") if row["energy"].get("available") else None
        rows.append(row)
    base = rows[0]
    for row in rows:
        if base["step_time_s"] and row["step_time_s"]:
            ratio = base["step_time_s"] / row["step_time_s"]
            row["speedup"] = ratio if mode == "strong" else ratio * row["ranks"] / base["ranks"]
            row["efficiency"] = ratio * base["ranks"] / row["ranks"] if mode == "strong" else ratio
        else:
            throughput = row["samples_per_s"] / base["samples_per_s"]
            row["speedup"], row["efficiency"] = throughput, throughput * base["ranks"] / row["ranks"]
    return rows


def verdict(rows: list[dict], mode: str) -> list[str]:
    """The study's findings in plain words."""
    unit = "GPU-hour" if rows[0]["device"] == "cuda" else "rank-hour"
    lines = []
    low = next((r for r in rows[1:] if r["efficiency"] < GOOD_EFFICIENCY), None)
    kind = "Strong" if mode == "strong" else "Weak"
    if low is None:
        lines.append(f"{kind} scaling efficiency stays at or above {GOOD_EFFICIENCY:.0%} up to {rows[-1]['ranks']} ranks.")
    else:
        lines.append(f"{kind} scaling efficiency drops below {GOOD_EFFICIENCY:.0%} at {low['ranks']} ranks "
                     f"({low['efficiency']:.0%}, speed-up {low['speedup']:.2f}× over {rows[0]['ranks']}).")
    best = max(rows, key=lambda r: r["samples_per_rank_hour"])
    lines.append(f"Most samples per {unit}: {best['ranks']} rank(s), {best['samples_per_rank_hour']:,.0f}.")
    with_energy = [r for r in rows if r["samples_per_joule"]]
    if with_energy:
        best = max(with_energy, key=lambda r: r["samples_per_joule"])
        lines.append(f"Most samples per joule: {best['ranks']} rank(s), {best['samples_per_joule']:.3g} ({best['energy'].get('method')}).")
    else:
        lines.append(f"Energy not available: {rows[0]['energy'].get('reason', 'not recorded')}.")
    shares = [r for r in rows if r["comm_share"] is not None]
    if shares:
        worst = max(shares, key=lambda r: r["comm_share"])
        lines.append(f"Exposed communication takes up to {worst['comm_share']:.0%} of a step (at {worst['ranks']} ranks).")
    return lines


def figure():
    """A new figure of the report's size, drawn without a display."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    return Figure(figsize=FIGURE_SIZE, dpi=DPI)


def _figures(rows: list[dict], found: list[dict], mode: str) -> dict:
    """The figures, each a matplotlib Figure by file stem."""
    ranks = [r["ranks"] for r in rows]
    labels = [str(n) for n in ranks]
    figures = {}

    fig = figure()
    left, right = fig.subplots(1, 2)
    if mode == "strong":
        left.plot(ranks, [r["speedup"] for r in rows], "o-", label="measured")
        left.plot(ranks, [n / ranks[0] for n in ranks], "k--", label="ideal")
        left.set_title("speed-up (strong)")
        left.legend()
    else:
        left.plot(ranks, [r["samples_per_s"] for r in rows], "o-")
        left.set_title("samples/s (weak)")
    right.plot(ranks, [r["efficiency"] * 100 for r in rows], "o-", label="measured")
    right.axhline(100, color="k", linestyle="--", label="ideal")
    right.axhline(GOOD_EFFICIENCY * 100, color="#c44e52", linestyle=":", label=f"{GOOD_EFFICIENCY:.0%}")
    right.set_title(f"efficiency ({mode}), %")
    right.set_ylim(0, 110)
    right.legend()
    for axis in (left, right):
        axis.set_xlabel("ranks")
        axis.set_xticks(ranks)
    fig.tight_layout()
    figures["scaling"] = fig

    fig = figure()
    axis = fig.subplots()
    bottom = [0.0] * len(rows)
    for phase in PHASES:
        values = [r["phases_s"].get(phase, 0.0) * 1000 for r in rows]
        axis.bar(labels, values, bottom=bottom, label=phase, color=COLOURS[phase])
        bottom = [b + v for b, v in zip(bottom, values)]
    axis.set_xlabel("ranks")
    axis.set_ylabel("ms per step")
    axis.set_title("time per step, by phase")
    axis.legend()
    fig.tight_layout()
    figures["phases"] = fig

    fig = figure()
    axis = fig.subplots()
    axis.bar(labels, [(r["comm_share"] or 0.0) * 100 for r in rows], color=COLOURS["comm"])
    axis.set_xlabel("ranks")
    axis.set_ylabel("% of the step")
    axis.set_title("exposed communication")
    fig.tight_layout()
    figures["comm_share"] = fig

    fig = figure()
    left, right = fig.subplots(1, 2)
    left.bar(labels, [r["samples_per_s"] for r in rows])
    left.set_title("samples/s")
    if all(r["samples_per_joule"] for r in rows):
        right.bar(labels, [r["samples_per_joule"] for r in rows], color="#dd8452")
        right.set_title("samples per joule")
    else:
        unit = "GPU-hour" if rows[0]["device"] == "cuda" else "rank-hour"
        right.bar(labels, [r["samples_per_rank_hour"] for r in rows], color="#dd8452")
        right.set_title(f"samples per {unit}")
    for axis in (left, right):
        axis.set_xlabel("ranks")
    fig.tight_layout()
    figures["throughput"] = fig

    fig = figure()
    axis = fig.subplots()
    if any(r["gpu"].get("available") for r in rows):
        axis.bar(labels, [r["gpu"].get("utilisation_percent", 0.0) for r in rows], color="#55a868")
        axis.set_ylabel("%")
        axis.set_ylim(0, 100)
    else:
        axis.bar(labels, [r["cpu_utilisation_percent"] or 0.0 for r in rows], color="#999999")
        axis.set_ylabel("CPU % per rank")
        axis.text(0.5, 0.92, "GPU: " + rows[0]["gpu"].get("reason", "not available"), ha="center",
                  transform=axis.transAxes, fontsize=8)
    axis.set_xlabel("ranks")
    axis.set_title("utilisation")
    fig.tight_layout()
    figures["utilisation"] = fig

    fig = figure()
    axis = fig.subplots()
    for point in found:
        if point["losses"]:
            steps, losses = zip(*point["losses"])
            axis.plot(steps, losses, label=point["name"])
    axis.set_xlabel("optimizer step")
    axis.set_ylabel("training loss")
    axis.set_title("loss of every point")
    if any(p["losses"] for p in found):
        axis.legend()
    fig.tight_layout()
    figures["loss"] = fig
    return figures


def write(paths: list[Path], out: Path) -> Path:
    """Write the report of `paths` (a scaling study's, runs') into `out`; return report.html's path."""
    found, about = collect(paths)
    mode = (about.get("scaling") or {}).get("mode") or "strong"
    rows = summarise(found, mode)
    said = verdict(rows, mode)
    out.mkdir(parents=True, exist_ok=True)
    data = {"about": about, "mode": mode, "verdict": said, "points": rows}
    (out / "report.json").write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    columns = ("ranks", "repeats", "step_time_s", "samples_per_s", "speedup", "efficiency", "comm_share", "comm_nosync_s",
               *(f"{p}_s" for p in PHASES), "samples_per_rank_hour", "samples_per_joule", "cpu_utilisation_percent")
    with (out / "points.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for row in rows:
            flat = {**row, **{f"{p}_s": row["phases_s"].get(p) for p in PHASES}}
            writer.writerow(["" if flat.get(c) is None else flat[c] for c in columns])
    title = f"Scaling report: {about.get('twin') or ', '.join(p.name for p in paths)}"
    return publish(out, title, said, _table(rows), _figures(rows, found, mode), _method(mode))


def publish(out: Path, title: str, said: list[str], table: list[list[str]], figures: dict, method: str) -> Path:
    """Write the figures as PNG and SVG, report.md, and report.html with them embedded; return its path."""
    images = {}
    for stem, fig in figures.items():
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png")  # drawn once: the file and the page's copy
        (out / f"{stem}.png").write_bytes(buffer.getvalue())
        fig.savefig(out / f"{stem}.svg")
        images[stem] = base64.b64encode(buffer.getvalue()).decode("ascii")
    (out / "report.md").write_text(
        f"# {title}\n\n" + "".join(f"- {line}\n" for line in said) + "\n" + _markdown(table)
        + "".join(f"\n![{stem}]({stem}.png)\n" for stem in images) + method, encoding="utf-8")
    page = (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{html.escape(title)}</title><style>body{{font-family:sans-serif;max-width:60em;margin:2em auto}}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2em .5em;text-align:right}"
        "img{max-width:100%}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><ul>" + "".join(f"<li>{html.escape(line)}</li>" for line in said) + "</ul>"
        + _html_table(table)
        + "".join(f'<figure><img alt="{stem}" src="data:image/png;base64,{data_}"></figure>' for stem, data_ in images.items())
        + f"<pre>{html.escape(method)}</pre></body></html>\n"
    )
    (out / "report.html").write_text(page, encoding="utf-8")
    return out / "report.html"


def _table(rows: list[dict]) -> list[list[str]]:
    header = ["ranks", "ms/step", "samples/s", "speed-up", "efficiency", "comm share", *[f"{p} ms" for p in PHASES],
              "comm ms (no_sync check)"]
    body = [[
        str(r["ranks"]),
        "-" if r["step_time_s"] is None else f"{r['step_time_s'] * 1000:.2f}",
        f"{r['samples_per_s']:,.0f}", f"{r['speedup']:.2f}", f"{r['efficiency']:.0%}",
        "-" if r["comm_share"] is None else f"{r['comm_share']:.1%}",
        *[f"{r['phases_s'].get(p, 0.0) * 1000:.2f}" for p in PHASES],
        "-" if r.get("comm_nosync_s") is None else f"{r['comm_nosync_s'] * 1000:.2f}",
    ] for r in rows]
    return [header, *body]


def _markdown(table: list[list[str]]) -> str:
    lines = ["| " + " | ".join(table[0]) + " |", "|" + "---|" * len(table[0])]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in table[1:]]) + "\n"


def _html_table(table: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in table[0])
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in table[1:])
    return f"<table><tr>{head}</tr>{body}</table>"


def _method(mode: str) -> str:
    batch = "fixed global batch" if mode == "strong" else "fixed batch per rank"
    return (
        f"\nMethod: {mode} scaling ({batch}). Step times are the mean over the measured steps after the "
        "warm-up, averaged over ranks; speed-up S(N) = T(N0)/T(N), efficiency S(N)·N0/N (strong) or "
        "T(N0)/T(N) (weak). Exposed communication: time from DDP's last gradient bucket being handed to "
        "its communication hook to the end of backward (docs/scaling.md); cross-checked by the column 'comm ms "
        "(no_sync check)': the mean step minus the mean of compute-only steps run under DDP's no_sync at the "
        "end of the warm-up, which also counts how much the overlapped all-reduce slowed compute. Repeats: the median point.\n"
    )
