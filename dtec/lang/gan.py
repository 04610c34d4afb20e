"""Several models trained together: `optimizer` blocks and the `gan` objective (DT356-DT361)."""

from __future__ import annotations

from typing import Any

from dtec.diagnostics import Diagnostic, Related, diag
from dtec.lang.blueprint import Blueprint
from dtec.lang.objectives import batch_fields, unknown_field
from dtec.lang.schema import SEVERAL_MODELS

# Strategies whose script shards or wraps one model and one optimizer, and why several are refused.
_ONE_MODEL_STRATEGIES = {
    "fsdp": "dtec's FSDP script gathers one model's and one optimizer's sharded state into its "
            "checkpoints and scatters them back on resume; it does not hold two models with two "
            "optimizers, so the run could not resume",
    "deepspeed": "a DeepSpeed engine wraps one model and one optimizer, steps them and owns their "
                 "checkpoints; the gan's alternating updates of two models would need two engines",
}


def trained_models(bp: Blueprint) -> list[str]:
    """The models the objective trains: a gan's generator and discriminator, else `train.model`."""
    train = bp.values.get("train") or {}
    objective = train.get("objective")
    if isinstance(objective, dict) and objective.get("fn") in SEVERAL_MODELS:
        return [m for m in (objective.get("generator"), objective.get("discriminator")) if isinstance(m, str)]
    return [train["model"]] if isinstance(train.get("model"), str) else []


def check_several_models(bp: Blueprint) -> list[Diagnostic]:
    """Optimizer blocks against the trained models; the gan's models, terms and settings."""
    found = _check_optimizers(bp)
    objective = (bp.values.get("train") or {}).get("objective")
    if isinstance(objective, dict) and objective.get("fn") == "gan":
        found += _check_gan(bp, objective)
    found += _check_find_unused(bp)
    return found


def _check_optimizers(bp: Blueprint) -> list[Diagnostic]:
    blocks = bp.values.get("optimizer") or {}
    if not blocks:
        return []
    trained = trained_models(bp)
    found = []
    if bp.spans.get(("train", "optimizer")) is not None:
        found.append(diag("DT357", "`train.optimizer` is given beside `optimizer` blocks", bp.span("train", "optimizer"),
                          "remove it: each `optimizer` block sets its model's optimizer"))
    owner: dict[str, str] = {}
    for label, block in blocks.items():
        model = block.get("model")
        if not isinstance(model, str):
            continue
        span = bp.span("optimizer", label, "model")
        if trained and model not in trained:
            found.append(diag("DT357", f"optimizer `{label}` trains model `{model}`, which the objective does not train", span,
                              "name a trained model: " + ", ".join(f"`model.{m}`" for m in trained)))
        elif model in owner:
            first = bp.span("optimizer", owner[model], "model")
            found.append(diag("DT357", f"model `{model}` has two optimizers, `{owner[model]}` and `{label}`", span,
                              "keep one optimizer block per model", (Related(first, "the first is here"),) if first else ()))
        else:
            owner[model] = label
    for model in trained:
        if model not in owner:
            found.append(diag("DT357", f"model `{model}` is trained but has no `optimizer` block", bp.span("train", "objective"),
                              f'add a block `optimizer "{model}"` with `model = model.{model}` and `fn = adamw(lr = 1e-3)`'))
    return found


def _check_gan(bp: Blueprint, gan: dict[str, Any]) -> list[Diagnostic]:
    models = bp.values.get("model") or {}
    train = bp.values.get("train") or {}
    generator, discriminator = gan.get("generator"), gan.get("discriminator")
    found = []
    if isinstance(generator, str) and generator == discriminator:
        found.append(diag("DT356", f"`gan` needs two models, but `{generator}` is both generator and discriminator",
                          bp.span("train", "objective", "discriminator"), "define a second model and name it as `discriminator`"))
        return found
    for role, name in (("generator", generator), ("discriminator", discriminator)):
        arch = (models.get(name) or {}).get("arch") if isinstance(name, str) else None
        if isinstance(arch, dict) and arch.get("fn") != "python":
            found.append(diag("DT356", f"the {role} `{name}` is a built-in `{arch['fn']}`, but a gan's models are your own classes",
                              bp.span("model", name, "arch"),
                              "use `arch = python(\"module:Class\")`: the generator reads noise, not the data's samples"))
        for key in ("weights", "freeze"):
            if isinstance(name, str) and (models.get(name) or {}).get(key) is not None:
                found.append(diag("DT359", f"`{key}` on the {role} `{name}`: a gan starts its models from their own initialisation",
                                  bp.span("model", name, key), f"remove `{key}`"))
    found += _check_terms(bp, gan, models.get(discriminator) if isinstance(discriminator, str) else None)
    found += _check_gan_fields(bp, gan)
    strategy = (bp.values.get("strategy") or {}).get("kind")
    if strategy in _ONE_MODEL_STRATEGIES:
        found.append(diag("DT358", f"`gan` trains two models, but {_ONE_MODEL_STRATEGIES[strategy]}",
                          bp.span("strategy", "kind"),
                          "use `kind = ddp`: each rank holds both models whole (a GAN's models fit one GPU), and DDP averages each one's gradients"))
    unsupported = {
        "grad_accum": (train.get("grad_accum") not in (None, 1), "each of its updates is one micro-batch"),
        "precision": (train.get("precision") == "fp16", "its two optimizers would need a loss scaler each; use `bf16`"),
        "scheduler": ((train.get("scheduler") or {}).get("fn") == "plateau", "each optimizer follows the schedule by step; a plateau watches one loss"),
        "export": (train.get("export") not in (None, "none"), "the generator reads noise, not a data sample to export it with"),
    }
    for key, (bad, why) in unsupported.items():
        if bad:
            found.append(diag("DT359", f"`gan` does not support this `{key}`: {why}", bp.span("train", key),
                              {"grad_accum": "remove `grad_accum`", "precision": "use `precision = bf16` or `fp32`",
                               "scheduler": "use a schedule by step or epoch: `cosine`, `step(...)`, ...",
                               "export": "set `export = none`"}[key]))
    return found


def _check_terms(bp: Blueprint, gan: dict[str, Any], discriminator: dict | None) -> list[Diagnostic]:
    """Each extra term scores one of the discriminator's named outputs but the first (the logit)."""
    terms = gan.get("extra")
    if not isinstance(terms, list) or not isinstance(discriminator, dict):
        return []
    outputs = discriminator.get("outputs")
    scored = outputs[1:] if isinstance(outputs, list) else []
    name = gan.get("discriminator")
    found = []
    for i, term in enumerate(terms):
        if not isinstance(term, dict) or not isinstance(term.get("output"), str) or term["output"] in scored:
            continue
        output = term["output"]
        if isinstance(outputs, list) and outputs and output == outputs[0]:
            why, hint = "its first output is the real/fake logit", "score another output; the logit is scored by the gan's own BCE"
        else:
            why = f"model `{name}` names the outputs {', '.join(f'`{o}`' for o in outputs)}" if isinstance(outputs, list) else f"model `{name}` returns one tensor"
            hint = f"name it in the discriminator's outputs: `outputs = [validity, {output}]` (the logit first)"
        found.append(diag("DT360", f"the extra term scores output `{output}`, but {why}",
                          bp.span("train", "objective", "extra", i, "output"), hint))
    return found


def _check_gan_fields(bp: Blueprint, gan: dict[str, Any]) -> list[Diagnostic]:
    """The batch fields the terms score against and the generator is conditioned on, each carried by the data."""
    generator = gan.get("generator")
    known = batch_fields(bp, generator)
    found = []
    terms = gan.get("extra")
    for i, term in enumerate(terms if isinstance(terms, list) else []):
        name = term.get("field") if isinstance(term, dict) else None
        if isinstance(name, str) and name not in known:
            found.append(unknown_field(bp, name, generator, bp.span("train", "objective", "extra", i, "field"), "the extra term"))
    condition = gan.get("condition")
    for i, name in enumerate(condition if isinstance(condition, list) else []):
        if isinstance(name, str) and name not in known[1:]:
            found.append(unknown_field(bp, name, generator, bp.span("train", "objective", "condition", i), "the generator's condition"))
    return found


def _check_find_unused(bp: Blueprint) -> list[Diagnostic]:
    strategy = bp.values.get("strategy") or {}
    kind = strategy.get("kind")
    if strategy.get("find_unused_parameters") is None or kind in (None, "auto", "ddp"):
        return []
    return [diag("DT361", f"`find_unused_parameters` is a DDP setting, but the strategy is `{kind}`",
                 bp.span("strategy", "find_unused_parameters"), "remove it, or set `kind = ddp`")]
