"""The training-script context: the IR's values, shaped for `train.py.jinja` (see docs/CONTRACTS.md)."""

from __future__ import annotations

from typing import Any

from dtec.ir import IR
from dtec.lang.schema import CLASSIFICATION_LOSSES


def train_context(ir: IR) -> dict[str, Any]:
    """Return the context `render_train` places into the training script."""
    train = ir.train
    model = ir.models[train.model]
    data = ir.data[model.input]
    options = dict(data.options)
    source: dict[str, Any] = {"kind": data.source}
    if data.source == "synthetic":
        source |= {
            "samples": options["samples"],
            "shape": options["shape"],
            "targets": data.targets,
            "classes": data.classes,
            "seed": options.get("seed", 0),
        }
    elif data.source == "python":
        source |= {"callable": options["callable"], "kwargs": options.get("kwargs", {})}
    else:
        source |= {k: v for k, v in options.items() if k in ("path", "x", "y", "target")}
        if isinstance(options.get("features"), list):  # columns by name; a count only checks
            source["features"] = options["features"]
    params = dict(model.params)
    if model.arch == "python":
        params = {"class": params["class"], "kwargs": params.get("kwargs", {})}
    scheduler: dict[str, Any] = {"name": train.scheduler.name}
    if train.scheduler.name == "cosine":
        scheduler["warmup"] = train.scheduler.warmup
    elif train.scheduler.name == "step":
        scheduler |= {"every": train.scheduler.every, "gamma": train.scheduler.gamma}
    return {
        "twin": ir.twin.model_dump(),
        "data": {
            "name": data.name,
            "source": source,
            "split": data.split.model_dump(),
            "batch": data.batch,
            "workers": data.workers,
            "shuffle": data.shuffle,
        },
        "model": {"name": model.name, "arch": model.arch, "params": params},
        # Every code folder of the blueprint serves data and model modules alike: on sys.path.
        "code": list(dict.fromkeys(p for p in [*(m.path for m in ir.models.values()), *(d.path for d in ir.data.values())] if p)),
        # Data that does not say (python(), npz without `targets` or `classes`) takes the loss's task.
        "task": data.task or ("classification" if train.loss in CLASSIFICATION_LOSSES else "regression"),
        "train": {
            "loss": train.loss,
            "optimizer": train.optimizer.model_dump(),
            "scheduler": scheduler,
            "epochs": train.epochs,
            "max_steps": train.max_steps,
            "precision": train.precision,
            "seed": train.seed,
            "grad_accum": train.grad_accum,
            "clip_grad": train.clip_grad,
            "checkpoint": train.checkpoint.model_dump(),
        },
        "strategy": {"kind": ir.strategy.kind, "zero": ir.strategy.zero},
        "monitor": ir.monitor.model_dump(),
    }
