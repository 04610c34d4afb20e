"""Training-script contexts for the tests: the quickstart blueprint, shrunk, and variants of it."""

from __future__ import annotations

import copy
from typing import Any


def quickstart() -> dict[str, Any]:
    """The context the compiler makes for blueprints/quickstart.twin, shrunk to run in seconds."""
    return {
        "twin": {"name": "flood-forecast", "description": "LSTM surrogate for daily river discharge",
                 "version": "1.0"},
        "data": {
            "name": "gauges",
            "source": {"kind": "synthetic", "samples": 512, "shape": [12, 4], "targets": 1,
                       "classes": None, "seed": 42},
            "split": {"train": 0.75, "val": 0.25},
            "batch": 16,
            "workers": 0,
            "shuffle": True,
        },
        "model": {"name": "surrogate", "arch": "lstm",
                  "params": {"input": 4, "hidden": 16, "layers": 1, "output": 1}, "path": None},
        "task": "regression",
        "train": {
            "loss": "mse",
            "optimizer": {"name": "adamw", "lr": 1e-2, "weight_decay": 0.01, "momentum": 0.0},
            "scheduler": {"name": "cosine", "warmup": 4},
            "epochs": 3,
            "max_steps": None,
            "precision": "fp32",
            "seed": 1234,
            "grad_accum": 1,
            "clip_grad": None,
            "checkpoint": {"every": 1, "keep": 2},
        },
        "strategy": {"kind": "ddp", "zero": None},
        "monitor": {"timing": True, "energy": True, "profiler": None},
    }


def variant(base: dict[str, Any] | None = None, **changes: Any) -> dict[str, Any]:
    """Return a copy of `base` (default: quickstart) with dotted keys replaced: `train__lr=...`.

    A key `a__b__c` sets `ctx["a"]["b"]["c"]`.
    """
    ctx = copy.deepcopy(base if base is not None else quickstart())
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        target = ctx
        for part in parents:
            target = target[part]
        target[last] = value
    return ctx


def classification(arch: str = "transformer", strategy: str = "ddp") -> dict[str, Any]:
    """A small classification context (cross entropy on synthetic classes)."""
    ctx = variant(task="classification", train__loss="cross_entropy")
    ctx["data"]["source"].update(targets=None, classes=3)
    ctx["strategy"]["kind"] = strategy
    if arch == "transformer":
        ctx["model"].update(arch="transformer",
                            params={"input": 4, "dim": 16, "heads": 2, "layers": 1, "output": 3})
    elif arch == "cnn":
        ctx["data"]["source"]["shape"] = [2, 8, 8]
        ctx["model"].update(arch="cnn", params={"channels": 2, "output": 3, "widths": [8, 16]})
    elif arch == "mlp":
        ctx["model"].update(arch="mlp", params={"input": 48, "hidden": [32], "output": 3})
    return ctx


MODELS = {
    "mlp": ({"input": 48, "hidden": [16, 16], "output": 1}, [12, 4]),
    "lstm": ({"input": 4, "hidden": 16, "layers": 1, "output": 1}, [12, 4]),
    "cnn": ({"channels": 2, "output": 1, "widths": [8, 16]}, [2, 8, 8]),
    "unet": ({"channels": 2, "output": 1, "depth": 2}, [2, 10, 12]),
    "transformer": ({"input": 4, "dim": 16, "heads": 2, "layers": 1, "output": 1}, [12, 4]),
}


def with_model(arch: str, base: dict[str, Any] | None = None) -> dict[str, Any]:
    """`base` with one of the built-in architectures and a matching synthetic shape."""
    params, shape = MODELS[arch]
    ctx = variant(base, model__arch=arch, model__params=copy.deepcopy(params))
    ctx["data"]["source"]["shape"] = list(shape)
    return ctx
