"""`dtec report` of a sweep: optimisation history, parameter importances, parallel coordinates,
each trial's curve and a verdict, read from the study's storage and its trials' metrics.jsonl
(docs/sweeps.md). Written by dtec/report.py's `publish`, as a scaling report is; Optuna (the
`sweep` extra) is imported only here, and only for a sweep's report.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from dtec import study as studies
from dtec.lang.sweep import Dimension, dimensions, value_text
from dtec.report import ReportError, figure, publish

STATES = {"complete": "#4c72b0", "pruned": "#999999", "fail": "#c44e52", "running": "#dd8452", "stopped": "#bbbbbb"}


def is_sweep(folder: Path) -> bool:
    """Whether `folder` is a sweep's study folder (its study.json names a sweep)."""
    return "sweep" in (studies._spec(folder) or {})


def _study(folder: Path, spec: dict):
    try:
        import optuna
    except ImportError:
        raise ReportError("a sweep's report reads its Optuna study: pip install 'dtec[sweep]'") from None
    # The study's own folder, wherever it is now: journal.log beside study.json, or its database.
    spec = spec | {"storage": studies.storage_url(spec["sweep"], folder)}
    try:
        return optuna.load_study(study_name=spec["id"], storage=studies.storage(spec))
    except KeyError:
        raise ReportError(f"{folder} holds no trial yet (its study {spec['id']} is not in its storage)") from None


def collect(folder: Path, spec: dict, found) -> tuple[dict, list[dict]]:
    """The study's description and its trials: state, value, values of the space, curve, reason."""
    dims = dimensions(spec["sweep"])
    metric = spec["sweep"].get("metric", "val_loss")
    trials = []
    for t in found.get_trials(deepcopy=False):
        if t.state.name == "WAITING":
            continue  # enqueued, never started: nothing to show
        run = Path(t.user_attrs.get("folder") or folder / f"trial-{t.number:04d}")
        curve = studies.epoch_values(_in(folder, run) / "run" / "metrics.jsonl", metric)
        trials.append({
            "number": t.number, "state": studies.state_name(t).lower(), "value": t.value,
            "params": dict(zip((d.key for d in dims), studies.shown_params(dims, t))),
            "coordinates": {d.key: _coordinate(d, t.params[d.key]) for d in dims if d.key in t.params},
            "curve": curve or [t.intermediate_values[k] for k in sorted(t.intermediate_values)],
            "reason": studies.reason(t), "retry_of": t.user_attrs.get("retry_of"),
        })
    if not trials:
        raise ReportError(f"{folder} holds no trial yet")
    about = {"study": spec["id"], "blueprint": spec.get("blueprint"), "target": spec.get("target"), "metric": metric,
             "goal": spec["goal"], "sampler": spec["sweep"].get("sampler", "tpe"), "pruner": spec["sweep"].get("pruner", "median"),
             "budget": spec["sweep"]["trials"]}
    return about, trials


def _in(folder: Path, run: Path) -> Path:
    """A trial's folder inside the study folder as it is now (the study may have been moved)."""
    return folder / run.name if not run.is_dir() else run


def _coordinate(d: Dimension, value) -> float:
    """A trial's value on its axis, from 0 (the space's low end) to 1: log axes for log spaces."""
    if d.fn == "choice":
        return value / (len(d.values) - 1) if len(d.values) > 1 else 0.5
    scale = math.log if d.fn == "loguniform" or d.log else float
    low, high = scale(d.low), scale(d.high)
    return (scale(value) - low) / (high - low) if high > low else 0.5


def _importances(found) -> dict:
    """Optuna's fANOVA importance of each parameter (seeded: the same study gives the same numbers), or why none."""
    import optuna

    done = [t for t in found.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    if len(done) < 2:
        return {"method": None, "values": {}, "reason": "needs two completed trials"}
    try:
        values = optuna.importance.get_param_importances(found, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0))
    except ImportError:
        return {"method": None, "values": {}, "reason": "fANOVA needs scikit-learn: pip install 'dtec[sweep]'"}
    except (ValueError, RuntimeError) as exc:
        return {"method": None, "values": {}, "reason": str(exc)}
    return {"method": "fANOVA (Optuna, seed 0)", "values": dict(values), "reason": None}


def best(about: dict, trials: list[dict]) -> dict | None:
    """The best completed trial (the earliest of equals), as the study itself picks it."""
    done = [t for t in trials if t["state"] == "complete"]
    sign = 1 if about["goal"] == "minimize" else -1
    return min(done, key=lambda t: (sign * t["value"], t["number"])) if done else None


def verdict(about: dict, trials: list[dict], importances: dict) -> list[str]:
    """What the sweep found, in plain words."""
    top = best(about, trials)
    metric = about["metric"]
    lines = []
    if top is None:
        lines.append(f"No trial completed: no best value of {metric}.")
    else:
        values = ", ".join(f"{k} = {_text(v)}" for k, v in top["params"].items())
        lines.append(f"Best trial {top['number']}: {metric} {top['value']:.6g} ({about['goal']}) with {values}; best.twin holds these values.")
    count = {s: sum(t["state"] == s for t in trials) for s in STATES}
    lines.append(f"{len(trials)} trials for a budget of {about['budget']}: {count['complete']} complete, "
                 f"{count['pruned']} pruned (stopped early by the {about['pruner']} pruner), {count['fail']} failed"
                 + (f", {count['running']} still running" if count["running"] else "")
                 + (f", {count['stopped']} stopped by Ctrl-C and run again" if count["stopped"] else "") + ".")
    reasons: dict[str, int] = {}
    for t in trials:
        if t["state"] == "fail":
            reasons[t["reason"] or "no reason recorded"] = reasons.get(t["reason"] or "no reason recorded", 0) + 1
    if reasons:
        retried = sum(1 for t in trials if t["retry_of"] is not None)
        lines.append("Failures: " + "; ".join(f"{why} ({n})" for why, n in reasons.items())
                     + (f"; {retried} trial(s) ran again" if retried else "") + ".")
    if importances["values"]:
        key, share = max(importances["values"].items(), key=lambda kv: kv[1])
        lines.append(f"Most important parameter: {key} ({share:.0%} of the objective's variance, fANOVA).")
    else:
        lines.append(f"Parameter importances not computed: {importances['reason']}.")
    return lines


def _text(value) -> str:
    return value_text(value) if isinstance(value, (int, float)) else str(value)


def _figures(about: dict, trials: list[dict], importances: dict, dims: list[Dimension]) -> dict:
    """The figures, each a matplotlib Figure by file stem."""
    metric = about["metric"]
    pick = min if about["goal"] == "minimize" else max
    figures = {}

    fig = figure()
    axis = fig.subplots()
    for state, marker in (("complete", "o"), ("pruned", "x"), ("running", "s")):
        shown = [t for t in trials if t["state"] == state and (t["value"] if state == "complete" else t["curve"])]
        if shown:  # a pruned trial is drawn at its last reported value
            axis.plot([t["number"] for t in shown], [t["value"] if state == "complete" else t["curve"][-1] for t in shown],
                      marker, color=STATES[state], linestyle="none", label=state)
    failed = [t["number"] for t in trials if t["state"] == "fail"]
    if failed:  # no value: marked along the bottom
        axis.plot(failed, [0.02] * len(failed), "v", color=STATES["fail"], transform=axis.get_xaxis_transform(), label="failed")
    done = sorted((t for t in trials if t["state"] == "complete"), key=lambda t: t["number"])
    if done:
        so_far, steps = [], []
        for t in done:
            so_far.append(pick([*so_far[-1:], t["value"]]))
            steps.append(t["number"])
        axis.step(steps + [trials[-1]["number"]], so_far + so_far[-1:], where="post", color="k", label="best so far")
    figures["history"] = _counted(fig, axis, "trial", metric, f"optimisation history ({about['goal']})")

    fig = figure()
    axis = fig.subplots()
    if importances["values"]:
        ranked = sorted(importances["values"].items(), key=lambda kv: kv[1])
        axis.barh([k for k, _ in ranked], [v for _, v in ranked], color=STATES["complete"])
        axis.set_xlabel("share of the objective's variance")
    else:
        axis.text(0.5, 0.5, f"not computed: {importances['reason']}", ha="center", transform=axis.transAxes)
        axis.set_axis_off()
    axis.set_title("parameter importances (fANOVA)")  # the method in full is in the report's text
    fig.tight_layout()
    figures["importances"] = fig

    fig = figure()
    axis = fig.subplots()
    drawn = [t for t in trials if t["state"] in ("complete", "pruned") and (t["value"] is not None or t["curve"])]
    objective = [t["value"] if t["value"] is not None else t["curve"][-1] for t in drawn]
    low, high = (min(objective), max(objective)) if objective else (0.0, 1.0)
    import matplotlib

    colours = matplotlib.colormaps["viridis" if about["goal"] == "minimize" else "viridis_r"]  # darker: better
    for t, value in zip(drawn, objective):
        height = (value - low) / (high - low) if high > low else 0.5
        ys = [t["coordinates"].get(d.key, math.nan) for d in dims] + [height]
        if t["state"] == "complete":
            axis.plot(range(len(ys)), ys, color=colours(height), alpha=0.8)
        else:
            axis.plot(range(len(ys)), ys, color=STATES["pruned"], linestyle="--", alpha=0.6)
    names = [d.key for d in dims] + [metric]
    ends = [d.corners for d in dims] + [(f"{low:.3g}", f"{high:.3g}")]
    for i, (bottom, top) in enumerate(ends):
        axis.axvline(i, color="k", linewidth=0.8)
        axis.text(i, -0.04, bottom, ha="center", va="top", fontsize=7)
        axis.text(i, 1.04, top, ha="center", va="bottom", fontsize=7)
    axis.set_xticks(range(len(names)), names, fontsize=7, rotation=10)
    axis.set_yticks([])
    axis.set_ylim(-0.12, 1.12)
    axis.set_title("parallel coordinates (darker: better; pruned: dashed, at their last value)", fontsize=10)
    fig.tight_layout()
    figures["parallel"] = fig

    fig = figure()
    axis = fig.subplots()
    top = best(about, trials)
    styles = {"complete": "-", "pruned": "--", "fail": ":", "running": "-.", "stopped": ":"}
    for t in trials:
        if t["curve"]:
            thick = top is not None and t["number"] == top["number"]
            axis.plot(range(1, len(t["curve"]) + 1), t["curve"], styles[t["state"]], marker=".", color=STATES[t["state"]],
                      linewidth=2.5 if thick else 1, label=f"best: trial {t['number']}" if thick else None)
    for state, style in styles.items():
        if any(t["state"] == state and t["curve"] for t in trials):
            axis.plot([], [], style, color=STATES[state], label=state)
    figures["curves"] = _counted(fig, axis, "epoch", metric, f"{metric} per epoch, every trial")
    return figures


def _counted(fig, axis, x: str, y: str, title: str):
    """Label a figure whose x axis counts (trials, epochs: whole numbers only); return it laid out."""
    axis.set_xlabel(x)
    axis.xaxis.get_major_locator().set_params(integer=True)
    axis.set_ylabel(y)
    axis.set_title(title)
    axis.legend(fontsize=8)
    fig.tight_layout()
    return fig


def write(folder: Path, out: Path) -> Path:
    """Write the sweep's report into `out`; return report.html's path."""
    spec = studies._spec(folder)
    found = _study(folder, spec)
    about, trials = collect(folder, spec, found)
    importances = _importances(found)
    dims = dimensions(spec["sweep"])
    said = verdict(about, trials, importances)
    out.mkdir(parents=True, exist_ok=True)
    data = {"about": about, "verdict": said, "importances": importances, "best": best(about, trials), "trials": trials}
    (out / "report.json").write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    studies.write_trials(out / "trials.csv", dims, found.get_trials(deepcopy=False))
    title = f"Sweep report: {_twin(folder) or Path(about['blueprint'] or folder.name).stem}, {about['study']}"
    return publish(out, title, said, _table(trials, dims), _figures(about, trials, importances, dims), _method(about))


def _twin(folder: Path) -> str | None:
    """The twin's name, from the study's ir.json (older studies have none)."""
    try:
        return json.loads((folder / "ir.json").read_text(encoding="utf-8"))["twin"]["name"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _table(trials: list[dict], dims: list[Dimension]) -> list[list[str]]:
    header = ["trial", "state", "value", *[d.key for d in dims], "epochs", "reason"]
    return [header, *[[str(t["number"]), t["state"], "-" if t["value"] is None else f"{t['value']:.6g}",
                       *[_text(t["params"][d.key]) for d in dims], str(len(t["curve"])), t["reason"]] for t in trials]]


def _method(about: dict) -> str:
    return (
        f"\nMethod: Optuna study, sampler {about['sampler']}, pruner {about['pruner']}; each trial's value is the "
        f"{'lowest' if about['goal'] == 'minimize' else 'highest'} {about['metric']} of its epochs, read from its "
        "metrics.jsonl. Importances: Optuna's fANOVA evaluator (a random forest over the completed trials' values, "
        "seed 0). Parallel coordinates: every axis from the space's low to high end (log axes for log spaces; the "
        "objective from the lowest to the highest value seen). Trials that failed have no value: they are marked "
        "along the bottom of the history and listed in the table with their reason.\n"
    )
