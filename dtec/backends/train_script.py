"""Render the bundle's standalone `train.py` from the training-script context."""

from __future__ import annotations

import copy
import os
from collections.abc import Iterable, Mapping
from typing import Any

from dtec import __version__
from dtec.backends.templating import render

TEMPLATE = "train.py.jinja"

STRATEGIES = ("single", "ddp", "fsdp", "deepspeed")
ARCHS = ("mlp", "lstm", "cnn", "unet", "transformer", "python")
SOURCES = ("synthetic", "npz", "csv", "python")
LOSSES = ("mse", "mae", "huber", "cross_entropy", "bce")
OPTIMIZERS = ("adamw", "adam", "sgd")
SCHEDULERS = ("none", "cosine", "step")
PRECISIONS = {"fp32": None, "bf16": "bfloat16", "fp16": "float16"}
TASKS = ("regression", "classification")

_TITLES = {
    "single": "one process",
    "ddp": "DistributedDataParallel",
    "fsdp": "FullyShardedDataParallel (FSDP2)",
    "deepspeed": "DeepSpeed ZeRO-{zero}",
}
# Module types that become their own FSDP unit, per architecture (names as the script spells them).
_FSDP_UNITS = {
    "mlp": (),
    "lstm": (),
    "cnn": ("ConvBlock",),
    "unet": ("DoubleConv",),
    "transformer": ("nn.TransformerEncoderLayer",),
    "python": (),
}
# Optimizer steps between the ranks' pre-emption checks. Each check is an all-reduce (541 us of
# CPU per call on two gloo ranks, 1.3 % of a quickstart DDP step: docs/benchmarks.md); a signal
# comes minutes before a time limit, so acting on it up to this many steps late costs nothing.
STOP_CHECK_EVERY = 10
# Optional keys and their defaults, filled in when the caller leaves them out.
_DEFAULTS = {
    ("data", "shuffle"): True,
    ("data", "workers"): 0,
    ("train", "max_steps"): None,
    ("train", "grad_accum"): 1,
    ("train", "clip_grad"): None,
    ("strategy", "zero"): None,
    ("monitor", "timing"): True,
    ("monitor", "energy"): False,
    ("monitor", "profiler"): None,
    ("monitor", "log_every"): None,
}


def render_train(ctx: Mapping[str, Any], template_dirs: Iterable[str | os.PathLike] = ()) -> str:
    """Return the source of `train.py` for `ctx` (docs/CONTRACTS.md); ValueError if unusable."""
    ctx = _with_defaults(ctx)
    _validate(ctx)
    return render(TEMPLATE, template_dirs, **ctx, script=_script_facts(ctx))


def _with_defaults(ctx: Mapping[str, Any]) -> dict:
    """Copy `ctx` and fill the optional keys."""
    if not isinstance(ctx, Mapping):
        raise ValueError(f"training context must be a dict, not {type(ctx).__name__}")
    out = copy.deepcopy(dict(ctx))
    out.setdefault("code", [])  # folders of the user's code: relative to the bundle, or absolute
    for (section, key), value in _DEFAULTS.items():
        if isinstance(out.get(section), dict):
            out[section].setdefault(key, value)
    if isinstance(out.get("train"), dict):
        optimizer = out["train"].get("optimizer")
        if isinstance(optimizer, dict):
            optimizer.setdefault("weight_decay", 0.0)
            optimizer.setdefault("momentum", 0.0)
    return out


def _get(ctx: Mapping[str, Any], path: str) -> Any:
    """Return `ctx[a][b]...` for `path` "a.b...", or raise ValueError naming the missing key."""
    value: Any = ctx
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            raise ValueError(f"training context lacks `{path}`")
        value = value[part]
    return value


def _choice(ctx: Mapping[str, Any], path: str, allowed: Iterable[str]) -> str:
    value = _get(ctx, path)
    if value not in allowed:
        raise ValueError(f"`{path}` is {value!r}; expected one of {', '.join(allowed)}")
    return value


def _positive_int(ctx: Mapping[str, Any], path: str, optional: bool = False) -> None:
    value = _get(ctx, path)
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"`{path}` must be a positive integer, not {value!r}")


def _validate(ctx: Mapping[str, Any]) -> None:
    """Check the keys the template relies on."""
    for section in ("twin", "data", "model", "train", "strategy", "monitor"):
        if not isinstance(ctx.get(section), Mapping):
            raise ValueError(f"training context lacks the section `{section}`")
    _get(ctx, "twin.name")
    _get(ctx, "model.name")
    source = _choice(ctx, "data.source.kind", SOURCES)
    arch = _choice(ctx, "model.arch", ARCHS)
    task = _choice(ctx, "task", TASKS)
    loss = _choice(ctx, "train.loss", LOSSES)
    _choice(ctx, "train.optimizer.name", OPTIMIZERS)
    _get(ctx, "train.optimizer.lr")
    scheduler = _choice(ctx, "train.scheduler.name", SCHEDULERS)
    _choice(ctx, "train.precision", PRECISIONS)
    strategy = _choice(ctx, "strategy.kind", STRATEGIES)
    for path in ("data.batch", "train.epochs", "train.grad_accum", "train.checkpoint.keep"):
        _positive_int(ctx, path)
    _positive_int(ctx, "train.max_steps", optional=True)
    _positive_int(ctx, "monitor.log_every", optional=True)
    _get(ctx, "train.seed")
    _get(ctx, "train.checkpoint.every")
    split = _get(ctx, "data.split")
    if not 0 < split.get("train", 0) <= 1 or not 0 <= split.get("val", 0) < 1:
        raise ValueError(f"`data.split` needs 0 < train <= 1 and 0 <= val < 1, not {split!r}")
    if strategy == "deepspeed" and _get(ctx, "strategy.zero") not in (1, 2, 3):
        zero = ctx["strategy"]["zero"]
        raise ValueError(f"`strategy.zero` must be 1, 2 or 3 for deepspeed, not {zero!r}")
    if scheduler == "cosine":
        _get(ctx, "train.scheduler.warmup")
    if scheduler == "step":
        _positive_int(ctx, "train.scheduler.every")
        _get(ctx, "train.scheduler.gamma")
    classifying = loss in ("cross_entropy", "bce")
    if classifying != (task == "classification"):
        raise ValueError(f"loss `{loss}` does not suit task `{task}`")
    if source == "synthetic":
        for key in ("samples", "shape", "seed"):
            _get(ctx, f"data.source.{key}")
        _check_synthetic_outputs(ctx)
    elif source == "npz":
        for key in ("path", "x", "y"):
            _get(ctx, f"data.source.{key}")
    elif source == "csv":
        _get(ctx, "data.source.path")
        _get(ctx, "data.source.target")
    else:
        _get(ctx, "data.source.callable")
    if arch == "python":
        _get(ctx, "model.params.class")
    profiler = ctx["monitor"]["profiler"]
    if profiler is not None:
        if not isinstance(profiler, Mapping) or profiler.get("fn", "torch") != "torch":
            raise ValueError(f"`monitor.profiler` must be None or torch(...), not {profiler!r}")
        for key in ("wait", "warmup", "active"):
            _get(ctx, f"monitor.profiler.{key}")


def _check_synthetic_outputs(ctx: Mapping[str, Any]) -> None:
    """Synthetic data needs a target count that suits the loss."""
    source, loss = ctx["data"]["source"], ctx["train"]["loss"]
    classes, targets = source.get("classes"), source.get("targets")
    if loss == "cross_entropy":
        count = classes
    elif loss == "bce" and classes is not None:
        if classes != 2:
            raise ValueError(f"`bce` scores two classes, but `data.source.classes` is {classes!r}")
        count = 1
    else:
        count = targets
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        wanted = "classes" if loss == "cross_entropy" else "targets"
        raise ValueError(f"synthetic data for loss `{loss}` needs `data.source.{wanted}` >= 1")


def _script_facts(ctx: Mapping[str, Any]) -> dict:
    """Values derived from the context that pick the script's code paths."""
    strategy = ctx["strategy"]["kind"]
    loss = ctx["train"]["loss"]
    arch = ctx["model"]["arch"]
    precision = ctx["train"]["precision"]
    title = _TITLES[strategy].format(zero=ctx["strategy"]["zero"])
    return {
        "version": __version__,
        "title": f"{title}, {precision}",
        "strategy": strategy,
        "source": ctx["data"]["source"]["kind"],
        "arch": arch,
        "scheduler": ctx["train"]["scheduler"]["name"],
        "amp_dtype": PRECISIONS[precision],
        # class: integer labels (cross entropy); binary: 0/1 floats (bce); values: regression
        "target_kind": {"cross_entropy": "class", "bce": "binary"}.get(loss, "values"),
        # U-Net targets keep the input's spatial shape.
        "per_position": arch == "unet",
        # Convolutional models read [channels, *positions]; the others [*positions, features].
        "channels_first": arch in ("cnn", "unet"),
        "imports_user_code": arch == "python" or ctx["data"]["source"]["kind"] == "python",
        "fsdp_units": list(_FSDP_UNITS[arch]),
        # One process reads its own flag, which costs nothing: it checks after every step.
        "stop_check_every": 1 if strategy == "single" else STOP_CHECK_EVERY,
    }
