"""The training objective (`train.objective`): the loss it brings, and what it needs of the
model's outputs, the data's fields and the metrics (DT350-DT355); data-free training with a
`sampler` source and `reverse_kl`, and weight initialisation (DT362-DT364)."""

from __future__ import annotations

from typing import Any

from dtec.diagnostics import Diagnostic, Related, diag
from dtec.lang.blueprint import Blueprint
from dtec.lang.losses import scored_targets
from dtec.lang.schema import OBJECTIVE_OUTPUTS

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
        for key in ("input", "target"):
            value: Any = block.get(key)
            if value is None or kind in (None, "python", "sampler"):  # a sampler's: DT363
                continue
            found.append(diag("DT354", f"`{key}` names a field of a `python()` source's items, but `{kind}` gives (input, target) pairs",
                              bp.span("data", name, key), "remove it" + (" (`x` and `y` name the file's arrays)" if kind == "npz" else "")
                              + ", or load the data with `source = python(...)`"))
    return found
