"""MLflow parent runs of scaling studies and sweeps: the points and trials nest under them.

`dtec run` opens the parent when the study starts (`start_parent`) and gives each point or trial
a link to it in its run.json (`child_link`), which train.py follows (train/tracking.py.jinja);
`finish_parent` logs the study's summary when it ends; `dtec export mlflow` of a study folder
pushes the parent and its children with the same functions (`describe`, `summary`).
"""

from __future__ import annotations

import csv
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dtec.tracked import log_params, mlflow_store, tracking_params

TRACKING_FILE = "tracking.json"  # in the parent's home, as in a run's run dir


@dataclass(frozen=True)
class Parent:
    """A study folder as a parent run: what it stands for and its children's run folders."""

    kind: str  # "study" (scaling) or "sweep"
    id: str
    folder: Path
    home: Path  # where its store, tracking.json and tensorboard/ are: a study's run/, a sweep's folder
    ir: dict
    definition: dict
    sets: list[str]
    children: list[Path]

    def params(self) -> dict[str, str]:
        return {**tracking_params(self.ir), **tracking_params({self.kind: self.definition}),
                "dtec.sets": " ".join(self.sets) or "(none)", "dtec.target": self.ir["target"]["name"]}

    def tags(self) -> dict[str, str]:
        return {"dtec.run_id": self.id, "dtec.kind": self.kind, "dtec.twin": self.ir["twin"]["name"],
                "dtec.target": self.ir["target"]["name"]}


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def describe(folder: Path) -> Parent | None:
    """The study or sweep in `folder`, or None when it is neither (or predates ir.json there)."""
    ir = _json(folder / "ir.json")
    record = _json(folder / "run" / "run.json")
    spec = _json(folder / "study.json")
    if not isinstance(ir, dict):
        return None
    if isinstance(record, dict) and record.get("kind") == "study":
        return Parent("study", str(record.get("id") or folder.name), folder, folder / "run", ir,
                      record.get("scaling") or {}, list(record.get("sets") or []),
                      [folder / "points" / str(name) for name in record.get("points") or []])
    if isinstance(spec, dict) and isinstance(spec.get("sweep"), dict):
        return Parent("sweep", str(spec.get("id") or folder.name), folder, folder, ir, spec["sweep"],
                      list(spec.get("sets") or []), sorted(p for p in folder.glob("trial-*") if (p / "run" / "run.json").is_file()))
    return None


def mlflow_tracker(ir: dict) -> dict | None:
    """The IR's MLflow tracker, its experiment defaulted to the twin's name; None: it does not track to MLflow."""
    for tracker in (ir.get("monitor") or {}).get("track") or []:
        if tracker.get("kind") == "mlflow":
            return {**tracker, "experiment": tracker.get("experiment") or ir["twin"]["name"]}
    return None


def _client(uri: str):
    from mlflow.tracking import MlflowClient

    if uri.startswith("file:"):
        os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"  # MLflow 3.10+ refuses file stores otherwise
    return MlflowClient(uri)


def start_parent(kind: str, folder: Path, ir_json: str) -> dict:
    """Write the study's ir.json and, when it tracks, open its parent run (the one saved in
    tracking.json when the study runs again); return the link its children follow ({}: none)."""
    (folder / "ir.json").write_text(ir_json, encoding="utf-8")
    parent = describe(folder)
    assert parent is not None and parent.kind == kind, folder  # the caller wrote the study's record first
    home = parent.home.resolve()  # absolute: the children log from their own folders
    kinds = {t.get("kind") for t in (parent.ir.get("monitor") or {}).get("track") or []}
    link: dict[str, Any] = {"tensorboard": str(home / "tensorboard")} if "tensorboard" in kinds else {}
    tracker = mlflow_tracker(parent.ir)
    if tracker is None:
        return link
    saved = _json(parent.home / TRACKING_FILE) or {}
    if saved.get("uri", "") == tracker["uri"] and saved.get("mlflow_run_id"):
        client = _client(saved["mlflow_uri"])
        client.update_run(saved["mlflow_run_id"], status="RUNNING")
        return {**link, **saved}
    store = mlflow_store()
    uri = store.mlflow_uri(tracker["uri"], home)
    client = _client(uri)
    experiment_id = store.mlflow_experiment(client, tracker, home)
    run = client.create_run(experiment_id, run_name=parent.id, tags=parent.tags())
    log_params(client, run.info.run_id, parent.params())
    saved = {"uri": tracker["uri"], "mlflow_uri": uri, "mlflow_run_id": run.info.run_id, "experiment_id": experiment_id}
    (parent.home / TRACKING_FILE).write_text(json.dumps(saved, indent=2) + "\n", encoding="utf-8")
    return {**link, **saved}


def child_link(link: dict, name: str) -> dict:
    """What a point or trial named `name` records in its run.json to nest under the parent."""
    return {**link, "tensorboard": str(Path(link["tensorboard"]) / name)} if link.get("tensorboard") else dict(link)


def summary(parent: Parent) -> tuple[list[tuple[str, float, int]], dict[str, Any], str]:
    """The study's result as MLflow takes it: (name, value, step) metrics, artifacts (a file, or
    data logged as JSON) by name, and the run's status."""
    if parent.kind == "study":
        return _study_summary(parent)
    return _sweep_summary(parent)


def _study_summary(parent: Parent):
    from dtec.report import ReportError, collect, summarise

    statuses = [(_json(child / "run" / "summary.json") or {}).get("status") for child in parent.children]
    status = "FINISHED" if statuses and all(s == "completed" for s in statuses) else "FAILED"
    try:
        found, _ = collect([parent.folder])
    except ReportError:
        return [], {}, status
    rows = summarise(found, parent.definition.get("mode") or "strong")
    metrics = []
    for row in rows:  # each point at its world size: the curves MLflow draws are the scaling curves
        for key in ("step_time_s", "samples_per_s", "speedup", "efficiency", "comm_share"):
            if isinstance(row.get(key), (int, float)):
                metrics.append((f"scaling/{key}", float(row[key]), int(row["ranks"])))
    report = parent.folder / "report"
    artifacts: dict[str, Any] = {"scaling.json": rows}
    artifacts |= {p.name: p for p in (report / "report.html", report / "report.md") if p.is_file()}
    return metrics, artifacts, status


def _sweep_summary(parent: Parent):
    try:
        with (parent.folder / "trials.csv").open(newline="", encoding="utf-8") as handle:
            trials = list(csv.DictReader(handle))
    except OSError:
        trials = []
    metrics: list[tuple[str, float, int]] = []
    values = []
    for trial in trials:
        if trial.get("state") == "complete" and trial.get("value"):
            values.append(float(trial["value"]))
            metrics.append(("sweep/value", values[-1], int(trial["number"])))  # the optimisation history
    for state in ("complete", "pruned", "fail"):
        metrics.append((f"sweep/trials_{state}", float(sum(t.get("state") == state for t in trials)), 0))
    if values:
        pick = max if parent.definition.get("goal") == "maximize" else min
        metrics.append(("sweep/best_value", pick(values), 0))
    artifacts = {p.name: p for p in (parent.folder / "trials.csv", parent.folder / "best.twin") if p.is_file()}
    return metrics, artifacts, "FINISHED" if values else "FAILED"


def log_summary(client, run_id: str, parent: Parent, at_ms: int | None = None) -> None:
    """Log the study's summary metrics and artifacts to its parent run and end the run."""
    from mlflow.entities import Metric

    metrics, artifacts, status = summary(parent)
    at = at_ms if at_ms is not None else int(time.time() * 1000)
    found = [Metric(key, value, at, step) for key, value, step in metrics]
    for start in range(0, len(found), 1000):
        client.log_batch(run_id, metrics=found[start:start + 1000])
    for name, item in artifacts.items():
        if isinstance(item, Path):
            client.log_artifact(run_id, str(item))
        else:
            client.log_dict(run_id, item, name)
    client.set_terminated(run_id, status=status)


def finish_parent(folder: Path) -> None:
    """The study ended: log its summary to the parent run `start_parent` opened (if any)."""
    parent = describe(folder)
    saved = _json(parent.home / TRACKING_FILE) if parent is not None else None
    if parent is None or not isinstance(saved, dict) or not saved.get("mlflow_run_id"):
        return
    log_summary(_client(saved["mlflow_uri"]), saved["mlflow_run_id"], parent)
