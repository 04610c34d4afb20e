"""The bundle's standalone `train.py`: its context, made from the IR, and its rendering."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from dtec import __version__
from dtec.backends.templating import render
from dtec.ir import IR
from dtec.ir.model import Loss
from dtec.lang.objectives import target_channels
from dtec.lang.schema import OPTIMIZER, WINDOWED_SOURCES, metric_name
from dtec.runs import ir_sha256
from dtec.tracked import tracking_params

TEMPLATE = "train.py.jinja"
PREDICT_TEMPLATE = "predict.py.jinja"

# The dtype each resolved precision computes in (None: float32 throughout).
AMP_DTYPES = {"fp32": None, "bf16": "bfloat16", "fp16": "float16"}
# The function of train/loss.py.jinja that sums each loss over a batch (rmse: mse's sums, rooted
# in loss_value), and those that take the term's options.
_LOSS_SUMS = {"rmse": "mse"}
_LOSS_OPTIONS = ("huber", "bce", "cross_entropy", "nll", "python")
# The targets a loss scores, as the script's code paths name them (data/*.py.jinja, check_prediction).
_TARGET_KINDS = {"classes": "class", "binary": "binary", "values": "values"}
# The optimizer class of each `train.optimizer`, with its settings.
_OPTIMIZERS = {
    "adamw": "torch.optim.AdamW",
    "adam": "torch.optim.Adam",
    "sgd": "torch.optim.SGD",
    "rmsprop": "torch.optim.RMSprop",
}
# The optimizers DeepSpeed tests ZeRO with (deepspeed.runtime.zero.utils.ZERO_SUPPORTED_OPTIMIZERS).
_ZERO_TESTED_OPTIMIZERS = ("adamw", "adam")
# What a data source's train.py imports beyond PyTorch and NumPy, and the packages that provide it
# (the bundle's manifest.json lists them: `pip install 'dtec[data]'` installs them all).
DATA_IMPORTS = {"zarr": "import xarray as xr", "netcdf": "import xarray as xr", "hdf5": "import h5py"}
DATA_PACKAGES = {"zarr": ["xarray", "zarr"], "netcdf": ["xarray", "netCDF4"], "hdf5": ["h5py"]}
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
# The file each `train { export }` writes in the run dir, beside final_model.pt (predict.py reads it).
EXPORT_FILES = {"torch_export": "model.pt2", "torchscript": "model.ts", "none": None}
# Optimizer steps between the ranks' pre-emption checks. Each check is an all-reduce (541 us of
# CPU per call on two gloo ranks, 1.3 % of a quickstart DDP step: docs/benchmarks.md); a signal
# comes minutes before a time limit, so acting on it up to this many steps late costs nothing.
STOP_CHECK_EVERY = 10


def render_train(ir: IR, template_dirs: Iterable[str | os.PathLike] = ()) -> str:
    """Return the source of `train.py` for the planned blueprint `ir`."""
    return render(TEMPLATE, template_dirs, **train_context(ir))


def render_predict(ir: IR, template_dirs: Iterable[str | os.PathLike] = ()) -> str | None:
    """Return the source of `predict.py`, or None when the model is not exported."""
    if ir.train.export == "none":
        return None
    data = ir.data[ir.models[ir.train.model].input]
    task = train_context(ir)["task"]
    export = {
        "format": ir.train.export,
        "file": EXPORT_FILES[ir.train.export],
        "array": data.options.get("x", "x"),
        "batch": data.batch,
        "sample_shape": data.sample_shape,
        "classification": task == "classification",
    }
    return render(PREDICT_TEMPLATE, template_dirs, twin=ir.twin.model_dump(), version=__version__, export=export,
                  normalize=data.normalize != "none")  # scale the input with the run's stats.json


def _fields(fields: dict, others: list[str]) -> dict:
    """`input` and `target` as written (a channel split's channels always as a list), and the
    other fields the batch carries to the objective."""
    channels = target_channels(fields.get("target"))
    return (fields | ({"target": {"fn": "channels", "index": channels}} if channels is not None else {})
            | ({"others": others} if others else {}))


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
        "metrics": "train/metrics.py.jinja",
    }
    if ir.train.optimizers:  # several models, built and saved together
        templates["model"] = "train/models.py.jinja"
    # The validation metrics besides the loss, by the name they are recorded under (`f1_micro`).
    metrics = [metric_name({"fn": m.name, "average": m.average}) for m in ir.train.metrics]
    script = {**_script_facts(config), **_loss_facts(ir), "objective": _objective_facts(ir, config)}
    templates["loss"] = "train/loss.py.jinja"
    templates["objective"] = f"train/objective/{ir.train.objective.name}.py.jinja"
    return {**config, "metrics": metrics, "script": script, "templates": templates, "tracking": _tracking(ir)}


def _tracking(ir: IR) -> dict[str, Any] | None:
    """What train/tracking.py.jinja logs to and the run's parameters; None: the run does not track."""
    if not ir.monitor.track:
        return None
    trackers = [{**t.model_dump(), "experiment": t.experiment or ir.twin.name} for t in ir.monitor.track]
    return {"trackers": trackers, "target": ir.target.name, "params": tracking_params(ir.model_dump(mode="json"))}


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
        if data.sample_shape:  # declared: held against the first sample
            source["shape"] = data.sample_shape
    elif data.source == "sampler":
        source |= {k: options[k] for k in ("shape", "batches", "val_samples", "seed")}
    elif data.source in WINDOWED_SOURCES:
        source |= {k: options[k] for k in ("path", "inputs", "targets", "window", "horizon", "stride", "dim")}
    else:
        source |= {k: v for k, v in options.items() if k in ("path", "x", "y", "target")}
        if isinstance(options.get("features"), list):  # columns by name; a count only checks
            source["features"] = options["features"]
    # Only the settings of the chosen optimizer and schedule (the IR holds None for the others).
    scheduler = train.scheduler.model_dump(exclude_none=True)
    if scheduler["name"] == "none":
        scheduler = {"name": "none"}
    objective = ir.train.objective
    several = {
        "models": {name: _model_config(ir.models[name]) for name in sorted({o.model for o in train.optimizers.values()})},
    } if train.optimizers else {}
    return {
        **several,
        "twin": ir.twin.model_dump(),
        # A scaling study's measurement settings (train/phases.py.jinja); None: nothing measured.
        "scaling": ir.scaling.model_dump() if ir.scaling else None,
        "data": {
            "name": data.name,
            "source": source,
            **({"fields": _fields(data.fields, data.batch_fields)} if data.fields else {}),
            "split": data.split.model_dump(),
            "normalize": data.normalize,
            "batch": data.batch,
            "workers": data.workers,
            "shuffle": data.shuffle,
        },
        "model": {**_model_config(model), **_start(model)},
        # Every code folder of the blueprint serves data and model modules alike: on sys.path.
        "code": list(dict.fromkeys(p for p in [*(m.path for m in ir.models.values()), *(d.path for d in ir.data.values()), train.path] if p)),
        # Data that does not say (python() without `classes`, npz without `targets` or `classes`)
        # takes the loss's task; where neither says (a python() loss), regression.
        "task": data.task or ("classification" if train.loss and train.loss.scores in ("classes", "binary") else "regression"),
        "train": {
            **({"objective": {"name": objective.name, **objective.options}} if objective.name != "supervised" else {}),
            **({"loss": _loss(train.loss)} if train.loss else {}),
            "optimizer": train.optimizer.model_dump(exclude_none=True),
            **({"optimizers": {name: {"model": o.model, **o.optimizer.model_dump(exclude_none=True)}
                               for name, o in train.optimizers.items()}} if train.optimizers else {}),
            "scheduler": scheduler,
            "epochs": train.epochs,
            "max_steps": train.max_steps,
            "precision": train.precision,
            "seed": train.seed,
            **({"seed_per_rank": True} if train.seed_per_rank else {}),
            "grad_accum": train.grad_accum,
            "clip_grad": train.clip_grad,
            "checkpoint": _checkpoint(train.checkpoint),
            "export": train.export,
            **({"stop_early": train.stop_early.model_dump()} if train.stop_early else {}),
        },
        "strategy": {"kind": ir.strategy.kind, "zero": ir.strategy.zero,
                     **({"find_unused_parameters": True} if ir.strategy.find_unused_parameters else {})},
        "monitor": ir.monitor.model_dump(exclude={"track"}),  # the trackers: train/tracking.py.jinja
        "run": {"ir_sha256": ir_sha256(ir.model_dump(mode="json"))},  # as of ir.json's data
        "deterministic": train.deterministic,
    }


def _model_config(model) -> dict[str, Any]:
    """A model's name, architecture, parameters and named outputs, as MODEL holds them."""
    params = dict(model.params)
    if model.arch == "python":  # its extra keyword arguments, as those of a python source
        params = {"class": params["class"], "kwargs": params.get("kwargs", {})}
    return {"name": model.name, "arch": model.arch, "params": params,
            **({"outputs": model.outputs} if model.outputs else {}),
            **({"init": model.init} if model.init else {})}


def _start(model) -> dict[str, Any]:
    """Initial weights and frozen parameters, only when the model has them."""
    found: dict[str, Any] = {}
    if model.weights is not None:
        found["weights"] = {"twin": model.weights.twin, "model": model.weights.model}
    if model.weights is not None or model.freeze:
        found["freeze"] = list(model.freeze)
    return found
def _loss(loss: Loss) -> dict[str, Any]:
    """The loss as the blueprint writes it: `{"fn": "bce", "pos_weight": 3.0}`, or a sum's terms and weights."""
    terms = [{"fn": term.name, **term.options} for term in loss.terms]
    return {"fn": "sum", "terms": terms, "weights": loss.weights} if loss.summed else terms[0]


def _objective_facts(ir: IR, config: dict[str, Any]) -> dict[str, Any]:
    """What the objective's template (train/objective/<name>.py.jinja) and forward() need."""
    outputs = ir.models[ir.train.model].outputs
    strategy = config["strategy"]["kind"]
    discriminator = ir.train.objective.options.get("discriminator")
    return {
        # gan: the discriminator's named outputs, the real/fake logit first (empty: one tensor).
        "discriminator_outputs": ir.models[discriminator].outputs if discriminator else [],
        "name": ir.train.objective.name,
        # The output `supervised` scores (the first named one); None: the model returns one tensor.
        "prediction": outputs[0] if outputs else None,
        # The model's result in float32: one tensor, or its named outputs (train/outputs.py.jinja).
        "output": "named_outputs(model(x))" if outputs else "model(x).float()",
        # A python() step runs in the autocast forward() would use (FSDP and DeepSpeed cast themselves).
        "autocast": bool(AMP_DTYPES[config["train"]["precision"]]) and strategy in ("single", "ddp"),
        # The batch's target is a dict with the data's other fields (`fields`, train/fields.py.jinja).
        "carries": bool(ir.data[ir.models[ir.train.model].input].batch_fields),
    }


def _loss_facts(ir: IR) -> dict[str, Any]:
    """What train/loss.py.jinja and the checks of the prediction need: see that template."""
    loss = ir.train.loss
    data = ir.data[ir.models[ir.train.model].input]
    output = ir.models[ir.train.model].params.get("output")
    if loss is None:  # a python() step: it scores what it likes; there is no loss template
        kind = "class" if data.task == "classification" else "values"
        return {"target_kind": kind, "loss": {"scored_by": None, "count": 0, "functions": []}}
    if loss.scores is not None:
        kind = _TARGET_KINDS[loss.scores]
    elif data.task == "classification":  # python() loss: the data says what it scores
        kind = "binary" if data.classes == 2 and output == 1 else "class"
    else:
        kind = "values"
    options = 'TRAIN["loss"]' if not loss.summed else "terms[{}]"
    sums, means = [], []
    for i, term in enumerate(loss.terms):
        function = _LOSS_SUMS.get(term.name, term.name)
        arguments = ", " + options.format(i) if term.name in _LOSS_OPTIONS else ""
        sums.append(f"{function}_sums(pred, target{arguments})")
        mean = f"sums[{2 * i}] / sums[{2 * i + 1}]"
        mean = f"torch.sqrt({mean})" if term.name == "rmse" else mean
        means.append(f"weights[{i}] * ({mean})" if loss.summed else mean)
    names = [term.name for term in loss.terms]
    scored_by = next((n for n in names if n != "python"), None)
    ignore = next((t.options["ignore_index"] for t in loss.terms if "ignore_index" in t.options), None)
    return {
        # class: integer labels; binary: 0/1 floats (one logit each); values: regression
        "target_kind": kind,
        "loss": {
            "label": loss.label,
            "summed": loss.summed,
            "functions": sorted({_LOSS_SUMS.get(n, n) for n in names}),
            "sums": sums,  # the calls whose (sum, count) pairs loss_sums() returns, in order
            "value": means,  # each term's mean (weighted in a sum): loss_value() adds them up
            "count": 2 * len(names),
            # The loss that names the targets in the prediction's checks; None: only python()
            # losses, which check what they score themselves.
            "scored_by": scored_by,
            "ignore_index": ignore,
        },
    }


def _checkpoint(checkpoint) -> dict[str, Any]:
    """Every and keep; the best epoch's metric and mode, and `final`, only when one is kept."""
    found = checkpoint.model_dump()
    return found if checkpoint.best else {k: found[k] for k in ("every", "keep")}


def _script_facts(ctx: dict[str, Any]) -> dict:
    """Values derived from the configuration that pick the script's code paths."""
    strategy = ctx["strategy"]["kind"]
    loss = ctx["train"].get("loss")
    arch = ctx["model"]["arch"]
    source = ctx["data"]["source"]["kind"]
    precision = ctx["train"]["precision"]
    scheduler = ctx["train"]["scheduler"]["name"]
    losses = {t["fn"] for t in loss.get("terms", [loss])} if loss else set()
    user_objective = ctx["train"].get("objective", {}).get("name") in ("python", "reverse_kl")  # a step, an action
    python_loss = "python" in losses or user_objective  # each is imported once (functools.cache)
    user_code = arch == "python" or source == "python" or python_loss
    starts_from = "freeze" in ctx["model"]
    export = ctx["train"]["export"]
    optimizer = ctx["train"]["optimizer"]["name"]
    title = _TITLES[strategy].format(zero=ctx["strategy"]["zero"])
    several = "optimizers" in ctx["train"]
    # torch.nn.functional: the U-Net pads with it, losses but mape and python() compute with it.
    functional = arch == "unet" or bool(losses - {"mape", "python"}) or several
    imports = _imports(
        strategy, source, precision, scheduler, user_code=user_code,
        energy=ctx["monitor"]["energy"] or ctx["scaling"] is not None,
        weights="weights" in ctx["model"], export=export, python_loss=python_loss,
        functional=functional, several=several,
    )
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
        # Every setting of the optimizer is passed to its torch.optim class by its own name.
        "optimizer": _call(_OPTIMIZERS[optimizer], tuple(OPTIMIZER.functions[optimizer].params)),
        "zero_untested_optimizer": optimizer not in _ZERO_TESTED_OPTIMIZERS,
        "imports_user_code": user_code,
        # Initial weights or frozen parameters: train/weights.py.jinja.
        "starts_from": starts_from,
        "loads_weights": "weights" in ctx["model"],
        # checkpoints/best.pt kept by a monitored metric; final_model.pt its weights (final = best).
        "keeps_best": "best" in ctx["train"]["checkpoint"],
        "final_is_best": ctx["train"]["checkpoint"].get("final") == "best",
        # Early stopping and the plateau schedule watch a validation metric, agreed by all ranks.
        "stops_early": "stop_early" in ctx["train"],
        "watches": "stop_early" in ctx["train"] or scheduler == "plateau",
        "deterministic": ctx["deterministic"],
        # One process reads its own flag, which costs nothing: it checks after every step.
        "stop_check_every": 1 if strategy == "single" else STOP_CHECK_EVERY,
        "export_file": EXPORT_FILES[export],
        # Several models trained together (train/models.py.jinja): the objective owns its
        # updates (training_step), each model's optimizer called as `train.optimizer` would be.
        "several": several,
        "optimizers": {name: _call(_OPTIMIZERS[o["name"]], tuple(OPTIMIZER.functions[o["name"]].params))
                       for name, o in ctx["train"].get("optimizers", {}).items()},
        # A scaling study times the phases of each step (train/phases.py.jinja).
        "phases": ctx["scaling"] is not None,
    }


def _imports(strategy: str, source: str, precision: str, scheduler: str, *, user_code: bool,
             energy: bool, weights: bool, export: str, python_loss: bool,
             functional: bool, several: bool = False) -> list[str]:
    """The script's import lines: the standard library's, then numpy's and torch's."""
    stdlib = set(_STDLIB) | set(_STRATEGY_STDLIB.get(strategy, ()))
    stdlib |= {"io", "warnings"} if export != "none" else set()  # --check exports into memory
    stdlib |= {"functools"} if python_loss else set()
    stdlib |= {"contextlib"} if several else set()  # the gan's autocast() may be a nullcontext
    stdlib |= {"csv"} if source == "csv" else set()
    stdlib |= {"importlib"} if user_code else set()
    stdlib |= {"subprocess", "threading"} if energy else set()
    stdlib |= {"hashlib"} if weights else set()
    stdlib |= {"bisect"} if scheduler == "multistep" or source in WINDOWED_SOURCES else set()
    stdlib |= {"glob"} if source == "netcdf" else {"warnings"} if source == "zarr" else set()
    lines = [f"import {name}" for name in sorted(stdlib)] + list(_STDLIB_FROM) + [""]
    lines += [_NUMPY] if source in ("npz", *DATA_PACKAGES) else []
    lines += [DATA_IMPORTS[source]] if source in DATA_IMPORTS else []
    lines += ["import torch"]
    lines += ["import torch.distributed as dist"] if strategy != "single" else []
    lines += ["import torch.nn as nn"] + (["import torch.nn.functional as F"] if functional else [])
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
