"""The bundle's standalone `train.py`: its context, made from the IR, and its rendering."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from dtec import __version__
from dtec.backends.templating import render
from dtec.ir import IR
from dtec.lang.schema import CLASSIFICATION_LOSSES, OPTIMIZER
from dtec.runs import ir_sha256

TEMPLATE = "train.py.jinja"

# The dtype each resolved precision computes in (None: float32 throughout).
AMP_DTYPES = {"fp32": None, "bf16": "bfloat16", "fp16": "float16"}
# The loss function of each `train.loss`, and the torch.optim class of each optimizer.
_LOSS_FUNCTIONS = {
    "mse": "F.mse_loss",
    "mae": "F.l1_loss",
    "huber": "F.huber_loss",
    "cross_entropy": "F.cross_entropy",
    "bce": "F.binary_cross_entropy_with_logits",
}
_OPTIMIZERS = {
    "adamw": "torch.optim.AdamW",
    "adam": "torch.optim.Adam",
    "sgd": "torch.optim.SGD",
    "rmsprop": "torch.optim.RMSprop",
}
# Standard-library modules every script imports, and those a strategy adds.
_STDLIB = ("argparse", "itertools", "json", "math", "os", "random", "re", "resource", "shutil",
           "signal", "sys", "time", "traceback")
_STDLIB_FROM = ("from dataclasses import asdict, dataclass, field",
                "from datetime import timedelta", "from pathlib import Path")
_STRATEGY_STDLIB = {"ddp": ("contextlib",), "deepspeed": ("contextlib", "warnings")}
_NUMPY = "import numpy as np"
_FSDP_IMPORTS = [
    "from torch.distributed.checkpoint.state_dict import (",
    "    StateDictOptions,",
    "    get_model_state_dict,",
    "    get_optimizer_state_dict,",
    "    set_model_state_dict,",
    "    set_optimizer_state_dict,",
    ")",
    "from torch.distributed.device_mesh import init_device_mesh",
]
_TITLES = {
    "single": "one process",
    "ddp": "DistributedDataParallel",
    "fsdp": "FullyShardedDataParallel (FSDP2)",
    "deepspeed": "DeepSpeed ZeRO-{zero}",
}
# Optimizer steps between the ranks' pre-emption checks. Each check is an all-reduce (541 us of
# CPU per call on two gloo ranks, 1.3 % of a quickstart DDP step: docs/benchmarks.md); a signal
# comes minutes before a time limit, so acting on it up to this many steps late costs nothing.
STOP_CHECK_EVERY = 10


def render_train(ir: IR, template_dirs: Iterable[str | os.PathLike] = ()) -> str:
    """Return the source of `train.py` for the planned blueprint `ir`."""
    return render(TEMPLATE, template_dirs, **train_context(ir))


def train_context(ir: IR) -> dict[str, Any]:
    """The template's whole context (docs/CONTRACTS.md): the only place it is made.

    The blueprint's values, as the IR holds them (checked, defaults filled in, resolved for the
    target), shaped as the script's configuration; the facts derived from them; and the names of
    the templates the script is composed of.
    """
    config = _configuration(ir)
    strategy, arch = config["strategy"]["kind"], config["model"]["arch"]
    templates = {
        "strategy": f"train/strategy/{strategy}.py.jinja",
        "model": f"train/model/{arch}.py.jinja",
        "data": f"train/data/{config['data']['source']['kind']}.py.jinja",
    }
    return {**config, "script": _script_facts(config), "templates": templates}


def _configuration(ir: IR) -> dict[str, Any]:
    """The values the script's configuration section holds (TWIN, DATA, MODEL, ...)."""
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
            "seed": options["seed"],
        }
    elif data.source == "python":
        # Extra keyword arguments of a `python(...)` call are there only when given.
        source |= {"callable": options["callable"], "kwargs": options.get("kwargs", {})}
    else:
        source |= {k: v for k, v in options.items() if k in ("path", "x", "y", "target")}
        if isinstance(options.get("features"), list):  # columns by name; a count only checks
            source["features"] = options["features"]
    params = dict(model.params)
    if model.arch == "python":  # its extra keyword arguments, as those of a python source
        params = {"class": params["class"], "kwargs": params.get("kwargs", {})}
    # Only the settings of the chosen optimizer and schedule (the IR holds None for the others).
    scheduler = train.scheduler.model_dump(exclude_none=True)
    if scheduler["name"] == "none":
        scheduler = {"name": "none"}
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
            "optimizer": train.optimizer.model_dump(exclude_none=True),
            "scheduler": scheduler,
            "epochs": train.epochs,
            "max_steps": train.max_steps,
            "precision": train.precision,
            "seed": train.seed,
            "grad_accum": train.grad_accum,
            "clip_grad": train.clip_grad,
            "checkpoint": _checkpoint(train.checkpoint),
            **({"stop_early": train.stop_early.model_dump()} if train.stop_early else {}),
        },
        "strategy": {"kind": ir.strategy.kind, "zero": ir.strategy.zero},
        "monitor": ir.monitor.model_dump(),
        "run": {"ir_sha256": ir_sha256(ir.model_dump(mode="json"))},  # as of ir.json's data
        "deterministic": train.deterministic,
    }


def _checkpoint(checkpoint) -> dict[str, Any]:
    """Every and keep; the best epoch's metric and mode, and `final`, only when one is kept."""
    found = checkpoint.model_dump()
    return found if checkpoint.best else {k: found[k] for k in ("every", "keep")}


def _script_facts(ctx: dict[str, Any]) -> dict:
    """Values derived from the configuration that pick the script's code paths."""
    strategy = ctx["strategy"]["kind"]
    loss = ctx["train"]["loss"]
    arch = ctx["model"]["arch"]
    source = ctx["data"]["source"]["kind"]
    precision = ctx["train"]["precision"]
    scheduler = ctx["train"]["scheduler"]["name"]
    optimizer = ctx["train"]["optimizer"]["name"]
    user_code = arch == "python" or source == "python"
    title = _TITLES[strategy].format(zero=ctx["strategy"]["zero"])
    imports = _imports(strategy, source, user_code, ctx["monitor"]["energy"], scheduler, precision)
    return {
        "version": __version__,
        # The compiled configuration's hash (dtec.runs.ir_sha256): checkpoints resume only under it.
        "ir_sha256": (ctx.get("run") or {}).get("ir_sha256"),
        "title": f"{title}, {precision}",
        "requires": "PyTorch and DeepSpeed" if strategy == "deepspeed" else "PyTorch",
        "imports": "\n".join(imports),
        "numpy": _NUMPY in imports,
        "scheduler": scheduler,
        "amp_dtype": AMP_DTYPES[precision],
        # What backward() is called on: the loss of a micro-batch, scaled for fp16.
        "scaled_loss": (
            "scaler.scale(loss / accumulate)" if precision == "fp16" else "(loss / accumulate)"
        ),
        "loss_fn": _LOSS_FUNCTIONS[loss],
        # Every setting of the optimizer is passed to its torch.optim class by its own name.
        "optimizer": _call(_OPTIMIZERS[optimizer], tuple(OPTIMIZER.functions[optimizer].params)),
        # class: integer labels (cross entropy); binary: 0/1 floats (bce); values: regression
        "target_kind": {"cross_entropy": "class", "bce": "binary"}.get(loss, "values"),
        "imports_user_code": user_code,
        # checkpoints/best.pt kept by a monitored metric; final_model.pt its weights (final = best).
        "keeps_best": "best" in ctx["train"]["checkpoint"],
        "final_is_best": ctx["train"]["checkpoint"].get("final") == "best",
        # Early stopping and the plateau schedule watch a validation metric, agreed by all ranks.
        "stops_early": "stop_early" in ctx["train"],
        "watches": "stop_early" in ctx["train"] or scheduler == "plateau",
        "deterministic": ctx["deterministic"],
        # One process reads its own flag, which costs nothing: it checks after every step.
        "stop_check_every": 1 if strategy == "single" else STOP_CHECK_EVERY,
    }


def _imports(strategy: str, source: str, user_code: bool, energy: bool, scheduler: str,
             precision: str) -> list[str]:
    """The script's import lines: the standard library's, then numpy's and torch's."""
    stdlib = set(_STDLIB) | set(_STRATEGY_STDLIB.get(strategy, ()))
    stdlib |= {"csv"} if source == "csv" else set()
    stdlib |= {"importlib"} if user_code else set()
    stdlib |= {"subprocess", "threading"} if energy else set()
    stdlib |= {"bisect"} if scheduler == "multistep" else set()
    lines = [f"import {name}" for name in sorted(stdlib)] + list(_STDLIB_FROM) + [""]
    lines += [_NUMPY] if source == "npz" else []
    lines += ["import torch"]
    lines += ["import torch.distributed as dist"] if strategy != "single" else []
    lines += ["import torch.nn as nn", "import torch.nn.functional as F"]
    lines += ["from torch.distributed.elastic.multiprocessing.errors import record"]
    if strategy == "ddp":
        lines += ["from torch.nn.parallel import DistributedDataParallel as DDP"]
    elif strategy == "fsdp":
        lines += _FSDP_IMPORTS
        policy = "MixedPrecisionPolicy, " if AMP_DTYPES[precision] else ""
        lines += [f"from torch.distributed.fsdp import {policy}fully_shard"]
    lines += ["from torch.optim.lr_scheduler import LRScheduler"] if scheduler != "none" else []
    datasets = ", TensorDataset" if source in ("npz", "csv") else ""
    data_names = f"DataLoader, Dataset, DistributedSampler{datasets}, Subset"
    lines += [f"from torch.utils.data import {data_names}"]
    return lines


def _call(function: str, keywords: tuple[str, ...]) -> str:
    """`function(parameters, key=settings["key"], ...)`, one argument a line when too long."""
    arguments = ["parameters", *(f'{key}=settings["{key}"]' for key in keywords)]
    flat = f"{function}({', '.join(arguments)})"
    if len("    return ") + len(flat) <= 100:
        return flat
    return f"{function}(\n" + "".join(f"        {a},\n" for a in arguments) + "    )"
