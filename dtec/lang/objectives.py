"""The training objective (`train.objective`): the loss it brings, and what it needs of the
model's outputs, the data's fields and the metrics (DT350-DT355); data-free training with a
`sampler` source and `reverse_kl`, and weight initialisation (DT362-DT364)."""

from __future__ import annotations

from typing import Any

from dtec.diagnostics import Diagnostic, Related, diag
from dtec.lang.blueprint import Blueprint
from dtec.lang.losses import scored_targets
from dtec.lang.schema import OBJECTIVE_OUTPUTS
from dtec.suggest import did_you_mean

# Objectives that compute their losses themselves: `train.loss` is not theirs to use.
_OWN_LOSS = {"elbo": "scores its `recon` output with `elbo(recon = ...)`",
             "gan": "scores the discriminator's logit with binary cross-entropy (and its `extra` terms)",
             "python": "computes the losses in your step function",
             "reverse_kl": "computes mean(log q + S) from the model's `x` and `logdet`"}
# Objectives that make no prediction to score against a target: `metrics` do not apply.
_NO_PREDICTION = {"python": "a `python()` step makes none that dtec sees",
                  "gan": "`gan` has none that dtec sees",
                  "reverse_kl": "`reverse_kl` has no targets: it scores samples by their action"}
# Keys of a data block that a `sampler` source, which reads no data set, does not use.
_SAMPLER_UNUSED = {"split": "validation draws `val_samples` of its own",
                   "shuffle": "every batch is a fresh draw", "input": "it has no fields",
                   "target": "it has no targets", "path": "it reads no code"}


def objective_name(bp: Blueprint) -> str | None:
    """The objective's function name (`supervised` by default); None: invalid, already reported."""
    objective = bp.get("train", "objective")
    return objective["fn"] if isinstance(objective, dict) else None


def target_channels(target: Any) -> list[int] | None:
    """The channels a channel split (`target = channels(k)` or `channels([k, ...])`) takes; None: no split."""
    if not (isinstance(target, dict) and target.get("fn") == "channels"):
        return None
    index = target.get("index")
    return [index] if isinstance(index, int) else index if isinstance(index, list) else None


def has_prediction(bp: Blueprint) -> bool:
    """Whether the objective scores a prediction against the target (metrics need one)."""
    return objective_name(bp) not in _NO_PREDICTION


def resolve_objective(bp: Blueprint) -> list[Diagnostic]:
    """Give the training the loss its objective scores with: elbo's `recon` becomes `train.loss`.

    Done once, after the values are checked, so that every check of the loss (task, weights,
    sums) holds for the reconstruction loss as written, at its own span.
    """
    train = bp.values.get("train")
    name = objective_name(bp)
    if not isinstance(train, dict) or name is None:
        return []
    loss = train.get("loss")
    if name == "supervised":
        if loss is None:
            return [diag("DT107", "`train` needs `loss`: the loss function", bp.span("train"),
                         "add `loss = …` (e.g. `mse`), or choose another `objective`")]
        return []
    if loss is not None:
        return [diag("DT350", f"`loss` is not used: `{name}` {_OWN_LOSS[name]}", bp.span("train", "loss"),
                     "remove `loss`" + (", and give it as `elbo(recon = …)`" if name == "elbo" else ""))]
    if name == "elbo":
        train["loss"] = train["objective"]["recon"]
        prefix = ("train", "objective", "recon")
        for path, span in list(bp.spans.items()):
            if path[: len(prefix)] == prefix:
                bp.spans[("train", "loss", *path[len(prefix):])] = span
    return []


def check_objective(bp: Blueprint) -> list[Diagnostic]:
    """The objective against the model's outputs, the data's fields and the metrics."""
    found = _check_outputs(bp)
    found += _check_fields(bp)
    name = objective_name(bp)
    train = bp.values.get("train") or {}
    model_name = train.get("model")
    model = (bp.values.get("model") or {}).get(model_name)
    if name == "elbo":
        scored = scored_targets(train.get("loss"))
        if scored[0] in ("classes", "binary"):
            found.append(diag("DT352", f"`elbo` reconstructs its input, but `{scored[1]}` is a classification loss",
                              bp.span("train", "objective", "recon"), "use a regression loss: `recon = mse`, `mae` or `huber`"))
    needed = OBJECTIVE_OUTPUTS.get(name or "", ())
    if needed and isinstance(model, dict):
        outputs = model.get("outputs")
        given = outputs if isinstance(outputs, list) else []
        missing = [n for n in needed if n not in given]
        if missing:
            note = "the model's outputs are named here" if outputs is not None else f"model `{model_name}` is defined here"
            where = bp.span("model", model_name, *(("outputs",) if outputs is not None else ()))
            related = (Related(where, note),) if where else ()
            has = f"names {', '.join(f'`{n}`' for n in given)}" if given else "returns one tensor"
            found.append(diag("DT351", f"`{name}` needs the outputs {', '.join(f'`{n}`' for n in needed)}, "
                              f"but model `{model_name}` {has}", bp.span("train", "objective"),
                              f"name the model's outputs: `outputs = [{', '.join(needed)}]` (it returns them as a tuple, in that order, or a dict)",
                              related))
    metrics = train.get("metrics")
    if name in _NO_PREDICTION and isinstance(metrics, list) and metrics:
        instead = {"python": "return what you want validated from the step, e.g. `{\"loss\": …, \"mae\": …}`",
                   "gan": "validation records the discriminator's accuracies and each `extra` term",
                   "reverse_kl": "validation records `val_loss`, `val_ess` and `val_kl`"}[name]
        found.append(diag("DT353", f"`metrics` score a prediction against the target, but {_NO_PREDICTION[name]}",
                          bp.span("train", "metrics"), f"remove `metrics`: {instead}"))
    found += _check_sampler(bp, name, model)
    found += _check_init(bp)
    return found


def _check_sampler(bp: Blueprint, name: str | None, model: Any) -> list[Diagnostic]:
    """A `sampler` source and `reverse_kl` go together; the data keys a sampler does not use."""
    found = []
    for data_name, block in (bp.values.get("data") or {}).items():
        source = block.get("source")
        if not (isinstance(source, dict) and source.get("fn") == "sampler"):
            continue
        for key, why in _SAMPLER_UNUSED.items():
            if ("data", data_name, key) in bp.spans:  # written, not a default
                found.append(diag("DT363", f"`{key}` is not used by a `sampler` source: {why}", bp.span("data", data_name, key),
                                  f"remove `{key}`" + (" (give the sampler `val_samples = N`)" if key == "split" else "")))
    if name is None or not isinstance(model, dict):
        return found
    data_name = model.get("input")
    source = ((bp.values.get("data") or {}).get(data_name) or {}).get("source")
    kind = source.get("fn") if isinstance(source, dict) else None
    if kind == "sampler" and name != "reverse_kl":
        found.append(diag("DT362", f"data `{data_name}` is a `sampler`: it has no targets for `{name}` to score against",
                          bp.span("train", "objective") if ("train", "objective") in bp.spans else bp.span("data", data_name, "source"),
                          "train it with `objective = reverse_kl(prior = normal(), action = python(\"module:action\"))`, or read a data set"))
    elif name == "reverse_kl" and kind is not None and kind != "sampler":
        found.append(diag("DT362", f"`reverse_kl` trains on draws from its prior, but data `{data_name}` is `{kind}`",
                          bp.span("train", "objective"),
                          f"give data `{data_name}` `source = sampler(shape = [...], batches = N)`",
                          (Related(bp.span("data", data_name, "source"), "the data source"),) if bp.span("data", data_name, "source") else ()))
    return found


def _check_init(bp: Blueprint) -> list[Diagnostic]:
    """`init` is overwritten when the model starts from trained weights (it does nothing)."""
    found = []
    for name, model in (bp.values.get("model") or {}).items():
        if model.get("init") is not None and model.get("weights") is not None:
            found.append(diag("DT364", f"`init` does nothing: model `{name}` starts from trained weights, which replace every initialised one",
                              bp.span("model", name, "init"), "remove `init`, or `weights`"))
    return found


def _check_outputs(bp: Blueprint) -> list[Diagnostic]:
    """Outputs are named on python() models only (built-in ones return one tensor), each once."""
    found = []
    for name, model in (bp.values.get("model") or {}).items():
        outputs, arch = model.get("outputs"), model.get("arch")
        if not isinstance(outputs, list):
            continue
        span = bp.span("model", name, "outputs")
        if isinstance(arch, dict) and arch.get("fn") != "python":
            found.append(diag("DT355", f"`{arch['fn']}` returns one tensor: it has no outputs to name", span,
                              "remove `outputs`, or use your own model class, `arch = python(...)`"))
            continue
        twice = sorted({n for n in outputs if outputs.count(n) > 1})
        if twice:
            found.append(diag("DT355", f"output `{twice[0]}` is named twice", span, "give each output its own name"))
    return found


def _check_fields(bp: Blueprint) -> list[Diagnostic]:
    """`input` and `target` name the fields of a python() source's items (the others give pairs)."""
    found = []
    for name, block in (bp.values.get("data") or {}).items():
        source = block.get("source")
        kind = source.get("fn") if isinstance(source, dict) else None
        for key in ("input", "target", "fields"):
            value: Any = block.get(key)
            if value is None or kind in (None, "python", "sampler"):  # a sampler's: DT363
                continue
            what = "splits the channels of" if target_channels(value) is not None else "names fields of" if key == "fields" else "names a field of"
            found.append(diag("DT354", f"`{key}` {what} a `python()` source's items, but `{kind}` gives (input, target) pairs",
                              bp.span("data", name, key), "remove it" + (" (`x` and `y` name the file's arrays)" if kind == "npz" else "")
                              + ", or load the data with `source = python(...)`"))
        if kind == "python":
            found += _check_channels(bp, name, block)
            found += _check_carried(bp, name, block)
    return found


def batch_fields(bp: Blueprint, model: Any) -> list[str]:
    """The batch fields an objective may read of the data `model` trains on: `target` and the data's `fields`."""
    data_name = (bp.values.get("model") or {}).get(model, {}).get("input") if isinstance(model, str) else None
    carried = ((bp.values.get("data") or {}).get(data_name) or {}).get("fields")
    return ["target", *(carried if isinstance(carried, list) else [])]


def unknown_field(bp: Blueprint, name: str, model: Any, span: Any, what: str) -> Diagnostic:
    """DT377: `what` reads the batch field `name`, which the data of `model` does not carry."""
    known = batch_fields(bp, model)
    data_name = bp.get("model", model, "input")
    match = did_you_mean(name, known)
    hint = match or f"add it to the data's fields: `fields = [{', '.join([*known[1:], name])}]` (a key of its dict items)"
    return diag("DT377", f"{what} reads the batch field `{name}`, but data `{data_name}` carries {', '.join(f'`{k}`' for k in known)}", span, hint)


def _check_carried(bp: Blueprint, name: str, block: dict[str, Any]) -> list[Diagnostic]:
    """`fields` are other keys of dict items, each once, carried to an objective that reads them."""
    carried = block.get("fields")
    if not isinstance(carried, list):
        return []
    span = bp.span("data", name, "fields")
    taken = [n for n in carried if n in ("input", "target")]
    if taken:
        return [diag("DT378", f"`{taken[0]}` is the batch's own key: the model's input and its target are there already",
                     span, f"remove `{taken[0]}` from `fields`")]
    twice = sorted({n for n in carried if carried.count(n) > 1})
    if twice:
        return [diag("DT378", f"field `{twice[0]}` is carried twice", span, "name each field once")]
    given = block.get("input")
    if not (isinstance(given, dict) and given.get("fn") == "field"):
        return [diag("DT378", "`fields` picks keys of dict items, but `input` does not name one: the items are (input, target) pairs",
                     span, "name the input's key too: `input = field(\"X\")`")]
    train = bp.values.get("train") or {}
    readers = [m for m, model in (bp.values.get("model") or {}).items() if model.get("input") == name]
    objective = objective_name(bp)
    if objective not in ("gan", "python") and train.get("model") in readers:
        return [diag("DT378", f"`{objective}` reads the input and the target only: the fields would reach nothing",
                     span, "remove `fields`, or read them in your own step: `objective = python(\"module:step\")` gets them in `batch`")]
    return []


def _check_channels(bp: Blueprint, name: str, block: dict[str, Any]) -> list[Diagnostic]:
    """A channel split takes each channel once, of those the declared `shape` has, and leaves the input some."""
    channels = target_channels(block.get("target"))
    if channels is None:
        return []
    span = bp.span("data", name, "target", "index") or bp.span("data", name, "target")
    twice = sorted({c for c in channels if channels.count(c) > 1})
    if twice:
        return [diag("DT376", f"channel {twice[0]} is in the target twice", span, "name each channel once")]
    shape = block["source"].get("shape")
    if not isinstance(shape, list) or not all(isinstance(n, int) for n in shape):
        return []  # not declared: the script checks the first sample
    shown = "[" + ", ".join(map(str, shape)) + "]"
    declared = bp.span("data", name, "source", "shape")
    related = (Related(declared, "the samples' shape is declared here"),) if declared else ()
    if len(shape) < 2:
        return [diag("DT376", f"a channel split needs samples with a channel axis and values along it, but they have shape {shown}",
                     span, "split samples of shape `[channels, ...]`, or use `target = field(\"Y\")`", related)]
    beyond = [c for c in channels if c >= shape[0]]
    if beyond:
        return [diag("DT376", f"channel {beyond[0]} is not in samples of shape {shown}: they have channels 0 to {shape[0] - 1}",
                     span, f"take channels below {shape[0]}", related)]
    if len(channels) >= shape[0]:
        return [diag("DT376", f"the target takes all {shape[0]} channels of samples of shape {shown}: none is left for the input",
                     span, "leave the input at least one channel, or use `target = input` for an autoencoder", related)]
    return []
