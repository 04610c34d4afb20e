"""What trackers log, shared by train.py's tracking and dtec's: a run's parameters, the code
train.py includes to name its values and find its MLflow store, parameters logged in batches."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

from dtec.resources import data_path

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
def _included(name: str):
    """A plain Python file train.py includes (backends/templates/train/<name>.py), as a module."""
    path = data_path("backends", "templates", "train", f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"dtec_{name}", path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    module.__dict__.update(math=__import__("math"), Path=Path)  # train.py imports them for the included code
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def tracked_values() -> Callable[[dict], tuple[int, int, dict[str, float]]]:
    """The function train.py logs each metrics.jsonl record with (train/track_values.py), as is."""
    return _included("track_values").tracked_values


def mlflow_store():
    """train.py's `mlflow_uri` and `mlflow_experiment` (train/mlflow_store.py), as is."""
    return _included("mlflow_store")


def log_params(client, run_id: str, params: dict[str, str]) -> None:
    """Log parameters to an MLflow run, sorted, 100 to a batch (MLflow's limit)."""
    from mlflow.entities import Param

    items = sorted(params.items())
    for start in range(0, len(items), 100):
        client.log_batch(run_id, params=[Param(k, v) for k, v in items[start:start + 100]])
