"""`dtec export mlflow`: finished runs, studies and sweeps pushed to an MLflow store."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dtec.diagnostics import Diagnostic, diag
from dtec.lang.tracking import uri_kind
from dtec.source import argument_span
from dtec.tracked import log_params, tracked_values, tracking_params


@dataclass
class ExportResult:
    """What `dtec export mlflow` did: per run, pushed (with the MLflow run id) or already there."""

    pushed: list[dict[str, str]] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)


def export_mlflow(runs: Sequence[str], uri: str, experiment: str | None = None) -> ExportResult:
    """Push finished runs to the MLflow store at `uri`; a run already there (by its dtec id) is not pushed again."""
    from dtec.parent_run import describe
    from dtec.runs import RunError, find

    result = ExportResult()
    if uri_kind(uri) is None:
        result.diagnostics.append(diag("DT373", f"`{uri}` is no tracking URI MLflow takes", argument_span("--uri", uri),
                                       "write `http(s)://host:5000`, `sqlite:////abs/mlflow.db` or `postgresql://…`"))
        return result
    for name in runs:
        try:
            folder = Path(name) if (Path(name) / "study.json").is_file() else find(name).folder
        except RunError as exc:
            result.diagnostics.append(diag("DT373", str(exc), argument_span("", name), "name a run folder, a run id or `latest`"))
            continue
        parent = describe(folder)
        problem = _unfinished_study(parent) if parent is not None else _unfinished(folder / "run")
        if problem is not None:
            result.diagnostics.append(diag("DT373", f"run `{name}` {problem}", argument_span("", name),
                                           "push it once `dtec status` says it completed, failed or was cancelled"))
            continue
        try:
            if parent is not None:
                result.pushed += _push_study(parent, uri, experiment)
            else:
                result.pushed.append(_push(folder, uri, experiment))
        except Exception as exc:  # the server's refusal, or no server: one line, not a traceback
            result.diagnostics.append(diag("DT373", f"`{uri}` did not take run `{name}`: {type(exc).__name__}: {str(exc)[:300]}",
                                           argument_span("--uri", uri), "check that the server runs and this machine reaches it"))
    return result


def _unfinished(run_dir: Path) -> str | None:
    """Why the run in `run_dir` is not finished, or None."""
    try:
        summary = json.loads((run_dir / "summary.json").read_text())
    except (OSError, ValueError):
        return "has no summary.json: it has not finished"
    if summary.get("status") == "preempted":
        return "was stopped to be resumed: it has not finished"
    return None


def _unfinished_study(parent) -> str | None:
    """Why a study or sweep cannot be pushed yet, or None: a point without its summary, a sweep without trials.csv."""
    if parent.kind == "sweep":
        return None if (parent.folder / "trials.csv").is_file() else "has no trials.csv: the sweep has not finished"
    waiting = [child.name for child in parent.children if _unfinished(child / "run")]
    return f"has points that have not finished ({', '.join(waiting)})" if waiting else None


def _experiment(client, name: str) -> str:
    found = client.get_experiment_by_name(name)
    return found.experiment_id if found is not None else client.create_experiment(name)


def _push_study(parent, uri: str, experiment: str | None) -> list[dict[str, str]]:
    """Push a study or sweep: its parent run (once), then each finished point or trial nested under it."""
    from mlflow.tracking import MlflowClient

    from dtec.parent_run import log_summary

    client = MlflowClient(uri)
    experiment_id = _experiment(client, experiment or parent.ir["twin"]["name"])
    found = client.search_runs([experiment_id], f"tags.`dtec.run_id` = '{parent.id}'")
    if found:  # a push cut short left it RUNNING: its children and summary are pushed again below
        run_id, done = found[0].info.run_id, found[0].info.status != "RUNNING"
    else:
        run_id, done = client.create_run(experiment_id, run_name=parent.id, tags={**parent.tags(), "dtec.exported": "true"}).info.run_id, False
        log_params(client, run_id, parent.params())
    rows = [{"run": parent.id, "mlflow_run_id": run_id, "pushed": "already there" if done else "now"}]
    for child in parent.children:
        if (child / "run" / "summary.json").is_file():  # a sweep's trial that never trained has none
            rows.append(_push(child, uri, experiment, parent=run_id))
    if not done:
        log_summary(client, run_id, parent)
    return rows


def _push(folder: Path, uri: str, experiment: str | None, parent: str | None = None) -> dict[str, str]:
    """Push one finished run (nested under the MLflow run `parent`); return its dtec id, MLflow run
    id and whether it was pushed now."""
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    run_dir = folder / "run"
    ir = json.loads((folder / "ir.json").read_text())
    record = _json(run_dir / "run.json")
    summary = _json(run_dir / "summary.json")
    run_id = str(record.get("id") or folder.name)
    client = MlflowClient(uri)
    experiment_id = _experiment(client, experiment or ir["twin"]["name"])
    for old in client.search_runs([experiment_id], f"tags.`dtec.run_id` = '{run_id}'"):
        if old.info.status != "RUNNING":  # a push cut short stays RUNNING: pushed again below
            return {"run": run_id, "mlflow_run_id": old.info.run_id, "pushed": "already there"}
        client.delete_run(old.info.run_id)
    inputs = summary.get("inputs") or {}
    tags = {"dtec.run_id": run_id, "dtec.twin": ir["twin"]["name"], "dtec.target": ir["target"]["name"],
            "dtec.ir_sha256": str(inputs.get("ir_sha256")), "dtec.blueprint_sha256": str(inputs.get("blueprint_sha256")),
            "dtec.exported": "true", **({"mlflow.parentRunId": parent} if parent else {})}
    records = [json.loads(line) for line in _lines(run_dir / "metrics.jsonl")]
    started = int(records[0]["time"] * 1000) if records else None
    run = client.create_run(experiment_id, start_time=started, run_name=run_id, tags=tags)
    params = {**tracking_params(ir), "dtec.sets": " ".join(inputs.get("sets") or []) or "(none)",
              "dtec.target": ir["target"]["name"]}
    log_params(client, run.info.run_id, params)
    metrics = []
    for line in records:
        step, at, values = tracked_values()(line)
        metrics += [Metric(key, value, at, step) for key, value in values.items()]
    for start in range(0, len(metrics), 1000):
        client.log_batch(run.info.run_id, metrics=metrics[start:start + 1000])
    for artifact in ("final_model.pt", "summary.json"):
        if (run_dir / artifact).is_file():
            client.log_artifact(run.info.run_id, str(run_dir / artifact))
    status = {"completed": "FINISHED", "failed": "FAILED"}.get(summary.get("status"), "KILLED")
    ended = int(records[-1]["time"] * 1000) if records else None
    client.set_terminated(run.info.run_id, status=status, end_time=ended)
    return {"run": run_id, "mlflow_run_id": run.info.run_id, "pushed": "now"}


def _json(path: Path) -> dict[str, Any]:
    try:
        found = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def _lines(path: Path) -> list[str]:
    try:
        return [line for line in path.read_text().splitlines() if line.strip()]
    except OSError:
        return []
