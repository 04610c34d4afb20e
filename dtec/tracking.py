"""Experiment tracking: a run's parameters as trackers log them, and `dtec export mlflow`."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from dtec.diagnostics import Diagnostic, diag
from dtec.lang.tracking import uri_kind
from dtec.resources import data_path
from dtec.source import argument_span

# MLflow's longest parameter value (mlflow.utils.validation.MAX_PARAM_VAL_LENGTH).
_PARAM_LENGTH = 6000
# The IR's parts that say how dtec got there, not what trains; decisions are logged on their own.
_NOT_PARAMS = ("schema_version", "estimate", "decisions")


def tracking_params(ir: dict[str, Any]) -> dict[str, str]:
    """The IR (as ir.json holds it) as MLflow parameters: dotted keys, lists as JSON, and each
    decision of the plan as `decision.<subject>`."""
    params: dict[str, str] = {}

    def add(name: str, value: Any) -> None:
        if isinstance(value, dict) and value:
            for key, item in value.items():
                add(f"{name}.{key}" if name else str(key), item)
        else:
            text = value if isinstance(value, str) else json.dumps(value)
            params[name] = text[:_PARAM_LENGTH]

    add("", {k: v for k, v in ir.items() if k not in _NOT_PARAMS})
    for decision in ir.get("decisions") or []:
        params[f"decision.{decision['subject']}"] = str(decision["value"])[:_PARAM_LENGTH]
    return params


@cache
def tracked_values() -> Callable[[dict], tuple[int, int, dict[str, float]]]:
    """The function train.py logs each metrics.jsonl record with (train/track_values.py), as is."""
    path = data_path("backends", "templates", "train", "track_values.py")
    spec = importlib.util.spec_from_file_location("dtec_track_values", path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    module.__dict__["math"] = __import__("math")  # train.py imports it for the included code
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module.tracked_values


@dataclass
class ExportResult:
    """What `dtec export mlflow` did: per run, pushed (with the MLflow run id) or already there."""

    pushed: list[dict[str, str]] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)


def export_mlflow(runs: Sequence[str], uri: str, experiment: str | None = None) -> ExportResult:
    """Push finished runs to the MLflow store at `uri`; a run already there (by its dtec id) is not pushed again."""
    from dtec.runs import RunError, find

    result = ExportResult()
    if uri_kind(uri) is None:
        result.diagnostics.append(diag("DT373", f"`{uri}` is no tracking URI MLflow takes", argument_span("--uri", uri),
                                       "write `http(s)://host:5000`, `sqlite:////abs/mlflow.db` or `postgresql://…`"))
        return result
    for name in runs:
        try:
            folder = find(name).folder
        except RunError as exc:
            result.diagnostics.append(diag("DT373", str(exc), argument_span("", name), "name a run folder, a run id or `latest`"))
            continue
        problem = _unfinished(folder / "run")
        if problem is not None:
            result.diagnostics.append(diag("DT373", f"run `{name}` {problem}", argument_span("", name),
                                           "push it once `dtec status` says it completed, failed or was cancelled"))
            continue
        try:
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


def _push(folder: Path, uri: str, experiment: str | None) -> dict[str, str]:
    """Push one finished run; return its dtec id, MLflow run id and whether it was pushed now."""
    from mlflow.entities import Metric, Param
    from mlflow.tracking import MlflowClient

    run_dir = folder / "run"
    ir = json.loads((folder / "ir.json").read_text())
    record = _json(run_dir / "run.json")
    summary = _json(run_dir / "summary.json")
    run_id = str(record.get("id") or folder.name)
    client = MlflowClient(uri)
    name = experiment or ir["twin"]["name"]
    found = client.get_experiment_by_name(name)
    experiment_id = found.experiment_id if found is not None else client.create_experiment(name)
    for old in client.search_runs([experiment_id], f"tags.`dtec.run_id` = '{run_id}'"):
        if old.info.status != "RUNNING":  # a push cut short stays RUNNING: pushed again below
            return {"run": run_id, "mlflow_run_id": old.info.run_id, "pushed": "already there"}
        client.delete_run(old.info.run_id)
    inputs = summary.get("inputs") or {}
    tags = {"dtec.run_id": run_id, "dtec.twin": ir["twin"]["name"], "dtec.target": ir["target"]["name"],
            "dtec.ir_sha256": str(inputs.get("ir_sha256")), "dtec.blueprint_sha256": str(inputs.get("blueprint_sha256")),
            "dtec.exported": "true"}
    records = [json.loads(line) for line in _lines(run_dir / "metrics.jsonl")]
    started = int(records[0]["time"] * 1000) if records else None
    run = client.create_run(experiment_id, start_time=started, run_name=run_id, tags=tags)
    params = {**tracking_params(ir), "dtec.sets": " ".join(inputs.get("sets") or []) or "(none)",
              "dtec.target": ir["target"]["name"]}
    items = sorted(params.items())
    for start in range(0, len(items), 100):
        client.log_batch(run.info.run_id, params=[Param(k, v) for k, v in items[start:start + 100]])
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
