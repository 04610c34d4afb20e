"""Checks across blocks: data against model, loss against task, strategy consistency, unused blocks."""

from __future__ import annotations

from collections.abc import Mapping
from math import prod
from typing import Any

from dtec.diagnostics import Diagnostic, Related, diag, has_errors
from dtec.lang.blueprint import Blueprint
from dtec.lang.gan import check_several_models, trained_models
from dtec.lang.losses import loss_terms, scored_targets
from dtec.lang.objectives import check_objective, objective_name, target_channels
from dtec.lang.scaling import check_points
from dtec.lang.tracking import check_tracking
from dtec.lang.schema import (
    CLASSIFICATION_METRIC_NAMES, CLASSIFICATION_METRICS, LOSS_TARGETS, METRICS, NORMALIZED_SOURCES,
    OBJECTIVE_METRICS, REGRESSION_METRICS, WINDOWED_SOURCES, metric_name,
)

_SEQUENCE_ARCHS = ("lstm", "transformer")


def sample_shape(source: dict[str, Any], target: Any = None) -> list[int] | None:
    """Return the shape of one input sample when the blueprint states it (and it is valid).

    A channel split (`target`) leaves the input the channels that are not the target's.
    """
    shape = source.get("shape")
    if source.get("fn") == "csv":
        features = source.get("features")
        shape = [len(features)] if isinstance(features, list) else [features]
    if not (isinstance(shape, list) and all(isinstance(n, int) for n in shape)):
        return None
    channels = target_channels(target)
    if channels is None:
        return shape
    if len(shape) < 2 or any(c >= shape[0] for c in channels) or len(set(channels)) >= shape[0]:
        return None  # no input left, or out of range: DT376
    return [shape[0] - len(set(channels)), *shape[1:]]


def label_count(source: dict[str, Any]) -> tuple[str, int] | None:
    """Return ("targets", n) or ("classes", n) when the data states it.

    A CSV file has one target column: without `classes` it holds one regression target.
    """
    for key in ("classes", "targets"):
        if isinstance(source.get(key), int):
            return key, source[key]
    return ("targets", 1) if source.get("fn") == "csv" else None


def check_semantics(bp: Blueprint, *, errors_so_far: bool = False, facts: Mapping[str, dict | None] | None = None) -> list[Diagnostic]:
    """Run the cross-block checks; values already reported as invalid are skipped.

    `facts` completes a data set's source with what its file says (dtec.lang.files): the sample
    shape of an `.npz`, the feature count of a CSV; None for a file already reported.

    "Never used" warnings wait until the blueprint has no errors: a broken reference or a missing
    block would otherwise make its neighbours look unused.
    """
    found: list[Diagnostic] = []
    data = bp.values.get("data") or {}
    models = bp.values.get("model") or {}
    for name, block in data.items():
        found += _check_data(bp, name, block)
    for name, block in models.items():
        source = (data.get(block.get("input")) or {}).get("source")
        from_file = isinstance(source, dict) and block["input"] in (facts or {})
        if from_file:
            # The file's sizes complete the source; a file that contradicts it leaves none known.
            fact = facts[block["input"]]  # type: ignore[index]
            source = {} if fact is None else {**source, **fact}
        if isinstance(source, dict) and isinstance(block.get("arch"), dict):
            target = (data.get(block["input"]) or {}).get("target")
            found += _check_model(bp, name, block["arch"], source, block["input"], from_file, target)
    found += _check_training(bp, data, models)
    found += _check_metrics(bp)
    found += _check_best(bp)
    found += _check_optimization(bp)
    found += _check_strategy(bp)
    found += check_objective(bp)
    found += check_several_models(bp)
    found += check_points(bp)
    found += check_tracking(bp)
    if not errors_so_far and not has_errors(found):
        found += _check_unused(bp, data, models)
    return found


def _check_data(bp: Blueprint, name: str, block: dict) -> list[Diagnostic]:
    found = []
    source = block.get("source")
    if isinstance(source, dict) and source.get("fn") in ("synthetic", "python", "hdf5"):
        given = [k for k in ("targets", "classes") if source.get(k) is not None]
        if len(given) > 1 or (not given and source["fn"] == "synthetic"):  # python(): may leave the task to the loss
            found.append(
                diag(
                    "DT114",
                    f"`{source['fn']}` takes one of `targets` and `classes`, not both"
                    if given
                    else "`synthetic` needs `targets` (regression) or `classes` (classification)",
                    bp.span("data", name, "source"),
                    "give `targets = N` for regression or `classes = N` for classification",
                )
            )
    found += _check_split(bp, name, block.get("split"))
    found += _check_windowed(bp, name, block)
    return found


def _check_windowed(bp: Blueprint, name: str, block: dict) -> list[Diagnostic]:
    """Windows are split in time (DT331); `normalize` needs a source that streams statistics (DT332)."""
    source = block.get("source")
    fn = source.get("fn") if isinstance(source, dict) else None
    found = []
    if fn in WINDOWED_SOURCES and (block.get("split") or {}).get("order") == "random":
        found.append(diag("DT331", f"`{fn}` samples are overlapping windows along `{source.get('dim', 'time')}`: a random split puts "
                          "windows sharing the same steps in train and validation, which leaks", bp.span("data", name, "split", "order"),
                          "use `order = time` (or leave `order` out): the time axis is cut first, then windows are made inside each part"))
    normalize = block.get("normalize")
    if fn is not None and normalize not in (None, "none") and fn not in NORMALIZED_SOURCES:
        found.append(diag("DT332", f"`normalize = {normalize}` applies to zarr, netcdf and hdf5 sources, not `{fn}`",
                          bp.span("data", name, "normalize"), "scale the data beforehand, or remove `normalize`"))
    return found


_SPLIT_PARTS = ("train", "val", "test")


def _check_split(bp: Blueprint, name: str, split: Any) -> list[Diagnostic]:
    """The split's fractions add up to at most 1 (DT106); less leaves samples unused (DT319)."""
    if not isinstance(split, dict) or not all(isinstance(split.get(k), float) for k in _SPLIT_PARTS):
        return []
    total = sum(split[k] for k in _SPLIT_PARTS)
    given = " + ".join(k for k in _SPLIT_PARTS if split[k] or k == "train")
    span = bp.span("data", name, "split")
    if total > 1.0 + 1e-9:
        return [diag("DT106", f"`split` fractions add up to {total:g}, more than 1", span, f"make `{given}` at most 1")]
    if total < 1.0 - 1e-9:
        return [diag("DT319", f"`split` fractions add up to {total:g}: {1 - total:.0%} of the samples are never used",
                     span, "give the rest to `val` or `test`, or keep this line with `# dtec: ignore[DT319]`")]
    return []


def _check_model(bp: Blueprint, name: str, arch: dict, source: dict, data_name: str, from_file: bool = False,
                 target: Any = None) -> list[Diagnostic]:
    found = []
    fn = arch["fn"]
    shape = sample_shape(source, target)
    data_span = bp.span("data", data_name, "source", "shape") or bp.span("data", data_name, "source")
    note = f"data `{data_name}` reads samples of shape {shape} from this file" if from_file else f"data `{data_name}` is defined here"
    if shape is not None and target_channels(target) is not None:
        note = f"data `{data_name}` gives the model inputs of shape {shape}: the channels its `target` leaves"
    related = (Related(data_span, note),) if data_span else ()

    def mismatch(param: str, message: str, help: str) -> None:
        found.append(diag("DT300", message, bp.span("model", name, "arch", param), help, related))

    if shape is not None and fn != "python":
        shown = "[" + ", ".join(map(str, shape)) + "]"
        if fn == "mlp" and isinstance(arch.get("input"), int) and arch["input"] != prod(shape):
            mismatch("input", f"`mlp` input is {arch['input']} but samples of shape {shown} have {prod(shape)} features", f"set `input = {prod(shape)}`")
        elif fn in _SEQUENCE_ARCHS:
            if len(shape) != 2:
                mismatch("input", f"`{fn}` reads `[steps, features]` sequences but samples have shape {shown}", "give the data a two-dimensional `shape`")
            elif isinstance(arch.get("input"), int) and arch["input"] != shape[-1]:
                mismatch("input", f"`{fn}` input is {arch['input']} but each step of {shown} has {shape[-1]} features", f"set `input = {shape[-1]}`")
        elif fn in ("cnn", "unet"):
            dims = (3,) if fn == "cnn" else (2, 3)
            if len(shape) not in dims:
                wanted = "`[channels, height, width]`" if fn == "cnn" else "`[channels, length]` or `[channels, height, width]`"
                mismatch("channels", f"`{fn}` reads {wanted} samples but samples have shape {shown}", "change the data's `shape`")
            elif isinstance(arch.get("channels"), int) and arch["channels"] != shape[0]:
                mismatch("channels", f"`{fn}` has {arch['channels']} input channels but samples of shape {shown} have {shape[0]}", f"set `channels = {shape[0]}`")
    if fn == "transformer" and all(isinstance(arch.get(k), int) for k in ("dim", "heads")):
        if arch["dim"] % arch["heads"]:
            found.append(diag("DT114", f"`dim` {arch['dim']} is not a multiple of `heads` {arch['heads']}", bp.span("model", name, "arch", "heads"), "choose `heads` that divides `dim`"))
    labels = label_count(source)
    output = arch.get("output")
    if labels is not None and isinstance(output, int) and fn != "python":
        kind, count = labels
        expected = 1 if (kind == "classes" and scored_targets(bp.get("train", "loss"))[0] == "binary") else count
        if output != expected:
            noun = kind if count != 1 else kind[:-1]
            what = f"{count} {noun}" if expected == count else f"{count} classes scored by `bce`"
            mismatch("output", f"`{fn}` has {output} output{'s' if output != 1 else ''} but the data has {what}", f"set `output = {expected}`")
    return found


def _check_training(bp: Blueprint, data: dict, models: dict) -> list[Diagnostic]:
    train = bp.values.get("train") or {}
    model = models.get(train.get("model")) or {}
    source = (data.get(model.get("input")) or {}).get("source")
    loss = train.get("loss")
    labels = label_count(source) if isinstance(source, dict) else None
    if labels is None and isinstance(source, dict) and source.get("fn") in WINDOWED_SOURCES:
        labels = ("targets", 0)  # regression; how many outputs, only the files say
    found = _check_sum(bp, loss, labels is None)
    arch = model.get("arch") if isinstance(model.get("arch"), dict) else {}
    outputs = arch.get("output") if arch.get("fn") != "python" and isinstance(arch.get("output"), int) else None
    for index, term in loss_terms(loss):
        found += _check_term(bp, index, term, labels, outputs)
    return found


def _term_path(index: int | None) -> tuple:
    """Where a loss term is: the loss itself, or one of `sum(terms)`."""
    return ("train", "loss") if index is None else ("train", "loss", "terms", index)


_SCORED = {"classes": "class numbers", "binary": "targets from 0 to 1", "values": "values (regression)"}


def _check_sum(bp: Blueprint, loss: Any, task_unknown: bool) -> list[Diagnostic]:
    """A sum has one weight per term, and its terms score the same targets.

    Where the data says its task, each term is held to the data instead (_check_term).
    """
    if not isinstance(loss, dict) or loss.get("fn") != "sum" or not isinstance(loss.get("terms"), list):
        return []
    found = []
    weights, terms = loss.get("weights"), loss["terms"]
    if isinstance(weights, list) and len(weights) != len(terms):
        found.append(diag("DT114", f"`sum` has {_count(len(terms), 'term')} but {_count(len(weights), 'weight')}",
                          bp.span("train", "loss", "weights"), "give one weight per term, in the order of `terms`"))
    first = None
    for index, term in loss_terms(loss):
        scored = LOSS_TARGETS.get(term.get("fn"))
        if scored is None:
            continue
        if first is None:
            first = (term["fn"], scored)
        elif scored != first[1] and task_unknown:
            found.append(diag("DT301", f"`{term['fn']}` scores {_SCORED[scored]} but `{first[0]}`, an earlier term, scores {_SCORED[first[1]]}",
                              bp.span(*_term_path(index)), "the terms of a sum score one prediction against the same targets: use losses of one kind"))
    return found


def _check_term(bp: Blueprint, index: int | None, term: dict, labels: tuple[str, int] | None, outputs: int | None) -> list[Diagnostic]:
    """One loss term against the data's task, and its per-class weights against the classes or outputs."""
    name, scored = term.get("fn"), LOSS_TARGETS.get(term.get("fn"))
    span = bp.span(*_term_path(index))
    kind, count = labels or (None, 0)
    if kind == "classes" and scored == "values":
        return [diag("DT301", f"`{name}` is a regression loss but the data has {count} classes", span, "use `cross_entropy` (or `bce` for two classes)")]
    if kind == "targets" and scored in ("classes", "binary"):
        return [diag("DT301", f"`{name}` is a classification loss but the data has regression targets", span, "use `mse`, `mae` or `huber`, or give the data source `classes = N`")]
    if kind == "classes" and scored == "binary" and count != 2:
        return [diag("DT301", f"`bce` scores two classes but the data has {count}", span, "use `cross_entropy`")]
    key = {"classes": "weights", "binary": "pos_weight"}.get(scored or "")
    given = term.get(key) if key else None
    if not isinstance(given, list):
        return []
    # One weight per channel of the prediction: the model's outputs, which the data's classes fix.
    if scored == "classes" and kind == "classes":
        expected, what = count, f"the data has {count} classes"
    elif outputs is not None:
        expected, what = outputs, f"the model has {_count(outputs, 'output')}"
    elif scored == "binary" and kind == "classes":
        expected, what = 1, "`bce` scores the two classes with one logit"
    else:
        return []
    if len(given) == expected:
        return []
    per = "one per class" if scored == "classes" else "one per output channel, or one number"
    return [diag("DT323", f"`{key}` has {_count(len(given), 'value')} but {what}", bp.span(*_term_path(index), key),
                 f"give {_count(expected, 'value')}, {per}")]


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'s' if n != 1 else ''}"


def training_task(bp: Blueprint) -> str | None:
    """`classification` or `regression`, as the data says, else as the loss says; None: unknown."""
    train = bp.values.get("train") or {}
    model = (bp.values.get("model") or {}).get(train.get("model")) or {}
    source = ((bp.values.get("data") or {}).get(model.get("input")) or {}).get("source")
    labels = label_count(source) if isinstance(source, dict) else None
    if labels is not None:
        return "classification" if labels[0] == "classes" else "regression"
    if isinstance(source, dict) and source.get("fn") in WINDOWED_SOURCES:
        return "regression"  # targets are the variables' next steps
    scored = scored_targets(train.get("loss"))[0]
    return None if scored is None else ("regression" if scored == "values" else "classification")


def _without_validation(bp: Blueprint) -> str | None:
    """The trained data set when its split has no validation part (a python() source splits itself)."""
    train = bp.values.get("train") or {}
    name = ((bp.values.get("model") or {}).get(train.get("model")) or {}).get("input")
    data = (bp.values.get("data") or {}).get(name) or {}
    source, split = data.get("source"), data.get("split")
    if isinstance(source, dict) and source.get("fn") == "sampler":  # its own validation draws
        return name if source.get("val_samples") == 0 else None
    if not isinstance(source, dict) or source.get("fn") == "python" or not isinstance(split, dict):
        return None
    return name if split.get("val") == 0 else None


def _classifies(bp: Blueprint) -> bool | None:
    """Whether the training classifies (training_task); None: unknown."""
    task = training_task(bp)
    return None if task is None else task == "classification"


def _declared_metrics(bp: Blueprint) -> list[dict] | None:
    """The entries of `train.metrics`, or None when the list is invalid (already reported)."""
    metrics = bp.get("train", "metrics")
    return metrics if isinstance(metrics, list) else None


def _check_metrics(bp: Blueprint) -> list[Diagnostic]:
    """Each metric of `train.metrics` suits the task (by the loss) and is named once."""
    classifies = _classifies(bp)
    found: list[Diagnostic] = []
    seen: dict[str, int] = {}
    for i, metric in enumerate(_declared_metrics(bp) or []):
        fn, span = metric["fn"], bp.span("train", "metrics", i)
        if classifies is not None and (fn in CLASSIFICATION_METRIC_NAMES) != classifies:
            task, other = ("regression", "classification") if classifies else ("classification", "regression")
            instead = "`accuracy`, `precision`, `recall` or `f1`" if classifies else "`mae`, `rmse` or `r2`"
            found.append(diag("DT311", f"`{fn}` is a {task} metric but the training is {other}", span, f"use {instead}, or remove `{fn}`"))
        name = metric_name(metric)
        if name in seen:
            first = Related(bp.span("train", "metrics", seen[name]), "first named here")
            found.append(diag("DT312", f"`{name}` is named twice in `metrics`", span, "remove one of them", (first,)))
        seen.setdefault(name, i)
    return found


def check_monitored(bp: Blueprint, monitored: Any, path: tuple[str, ...]) -> list[Diagnostic]:
    """A monitored metric (`min(val_loss)`, at `path`) is recorded for the task and its direction fits."""
    if not isinstance(monitored, dict) or monitored.get("metric") not in METRICS:
        return []
    mode, metric = monitored["fn"], monitored["metric"]
    task = training_task(bp)
    span = bp.span(*path, "metric") or bp.span(*path)
    if (unvalidated := _without_validation(bp)) is not None:
        return [diag("DT310", f"`{metric}` is never recorded: the split of `{unvalidated}` leaves no validation samples", span,
                     "give the split a `val` fraction, e.g. `split = { train = 0.9, val = 0.1 }` (a sampler: `val_samples = N`)")]
    if (unrecorded := _unrecorded_by_objective(bp, metric)) is not None:
        return [diag("DT310", unrecorded, span, "monitor one of them, e.g. `min(val_loss)`")]
    if metric in OBJECTIVE_METRICS.get(objective_name(bp) or "", {}):  # the objective's own value
        return _check_direction(bp, mode, metric, path)
    for needed, metrics, declare in (("classification", CLASSIFICATION_METRICS, "classes"),
                                     ("regression", REGRESSION_METRICS, "targets")):
        if metric in metrics and task is None:
            return [diag("DT310", f"`{metric}` is recorded only for {needed}, but neither the data nor the loss says the task", span,
                         f"give the data source `{declare} = N`")]
        if metric in metrics and task != needed:
            return [diag("DT310", f"`{metric}` is recorded only for {needed}, but the training is {task}", span, f"monitor `{mode}(val_loss)`")]
    declared = _declared_metrics(bp)
    recorded = {"val_loss", "val_accuracy"} | {f"val_{metric_name(m)}" for m in declared or []}
    if task is not None and declared is not None and metric not in recorded:
        entry = metric.removeprefix("val_").replace("_micro", "(average = micro)")
        return [diag("DT310", f"`{metric}` is not recorded: only `val_loss`, the accuracy of classification and `train.metrics` are", span, f"add `{entry}` to `train.metrics`")]
    return _check_direction(bp, mode, metric, path)


def _check_direction(bp: Blueprint, mode: str, metric: str, path: tuple[str, ...]) -> list[Diagnostic]:
    """`min` of a metric that is better when higher keeps the worst epoch (and `max` likewise)."""
    if mode != METRICS[metric]:
        better = "lower" if METRICS[metric] == "min" else "higher"
        return [diag("DT310", f"`{mode}({metric})` keeps the worst epoch: {metric} is better when {better}", bp.span(*path), f"write `{METRICS[metric]}({metric})`")]
    return []


def _unrecorded_by_objective(bp: Blueprint, metric: str) -> str | None:
    """Why the objective does not record `metric` (elbo's and reverse_kl's own values); None: it may."""
    objective = objective_name(bp)
    if objective in (None, "python") or metric == "val_loss":  # a step records what it returns
        return None
    own = OBJECTIVE_METRICS.get(objective, {})
    another = any(metric in recorded for recorded in OBJECTIVE_METRICS.values())
    alone = objective in ("reverse_kl", "gan")  # they record their own values and no metrics
    if metric in own or not (another or alone):
        return None
    records = ", ".join(f"`{m}`" for m in ("val_loss", *own))
    return f"`{metric}` is not recorded: `{objective}` records {records}" + ("" if alone else " and the metrics")


def _check_best(bp: Blueprint) -> list[Diagnostic]:
    checkpoint = bp.get("train", "checkpoint")
    if not isinstance(checkpoint, dict):
        return []
    found = check_monitored(bp, checkpoint.get("best"), ("train", "checkpoint", "best"))
    if checkpoint.get("final") == "best" and checkpoint.get("best") is None:
        span = bp.span("train", "checkpoint", "final")
        found.append(diag("DT107", "`final = best` needs a best checkpoint", span, "add `best = min(val_loss)` to `checkpoint`"))
    return found


def _check_optimization(bp: Blueprint) -> list[Diagnostic]:
    """Optimizer settings torch refuses together; schedules and early stopping against the run."""
    train = bp.values.get("train") or {}
    optimizer, scheduler, stop = train.get("optimizer"), train.get("scheduler"), train.get("stop_early")
    epochs = train.get("epochs") if isinstance(train.get("epochs"), int) else None
    found: list[Diagnostic] = []
    if isinstance(optimizer, dict) and optimizer.get("nesterov") is True and optimizer.get("momentum") == 0:
        span = bp.span("train", "optimizer", "nesterov")
        found.append(diag("DT114", "Nesterov momentum needs a momentum, but `momentum` is 0", span, "set `momentum = 0.9`, or remove `nesterov`"))
    if isinstance(scheduler, dict):
        found += check_monitored(bp, scheduler.get("monitor"), ("train", "scheduler", "monitor"))
        milestones = scheduler.get("milestones")
        if isinstance(milestones, list):
            found += _check_milestones(bp, milestones, epochs)
        # The first epoch sets the best; the rate falls after `patience` + 1 epochs without improvement.
        if isinstance(scheduler.get("patience"), int) and epochs is not None and scheduler["patience"] + 1 >= epochs:
            found.append(_beyond_the_run(bp, ("train", "scheduler", "patience"), f"a patience of {scheduler['patience']} epochs", epochs))
    if isinstance(stop, dict):
        found += check_monitored(bp, stop.get("monitor"), ("train", "stop_early", "monitor"))
        # The first epoch sets the best; training stops after `patience` epochs without improvement.
        if isinstance(stop.get("patience"), int) and epochs is not None and stop["patience"] >= epochs:
            found.append(_beyond_the_run(bp, ("train", "stop_early", "patience"), f"a patience of {stop['patience']} epochs", epochs))
    return found


def _check_milestones(bp: Blueprint, milestones: list[int], epochs: int | None) -> list[Diagnostic]:
    path = ("train", "scheduler", "milestones")
    for i in range(1, len(milestones)):
        if milestones[i] <= milestones[i - 1]:
            return [diag("DT106", f"milestone {milestones[i]} does not come after {milestones[i - 1]}", bp.span(*path, i), "list the milestone epochs in increasing order")]
    late = [i for i, m in enumerate(milestones) if epochs is not None and m >= epochs]
    return [_beyond_the_run(bp, (*path, late[0]), f"milestone {milestones[late[0]]}", epochs)] if late else []


def _beyond_the_run(bp: Blueprint, path: tuple[str | int, ...], what: str, epochs: int) -> Diagnostic:
    """DT315: `what` (at `path`) takes effect only after the run's `epochs` epochs."""
    noun = "epoch" if epochs == 1 else "epochs"
    return diag("DT315", f"{what} never takes effect in a run of {epochs} {noun}", bp.span(*path), "make it shorter than the run, or train longer (`epochs`)")


def check_warmup(bp: Blueprint, world_size: int, target: str) -> list[Diagnostic]:
    """DT315: a warm-up at least as long as the run on `target`, where the run's optimizer steps are known.

    They are known from `max_steps`, or from a synthetic source's sample count and the ranks.
    """
    train = bp.values.get("train") or {}
    warmup = (train.get("scheduler") or {}).get("warmup") if isinstance(train.get("scheduler"), dict) else None
    if not isinstance(warmup, int) or warmup == 0:
        return []
    steps = _run_steps(bp, train, world_size)
    if not isinstance(steps, int) or warmup < steps:
        return []
    span = bp.span("train", "scheduler", "warmup")
    # The steps depend on the ranks, so each target may say its own: the message names it.
    return [diag("DT315", f"a warm-up of {warmup} steps lasts the whole run of {steps} optimizer steps ({world_size} rank{'s' if world_size != 1 else ''} on `{target}`)", span, f"make `warmup` shorter than {steps} steps (a tenth of the run is usual)")]


def _run_steps(bp: Blueprint, train: dict, world_size: int) -> int | None:
    """The run's optimizer steps, as the script counts them, when the blueprint says enough."""
    data = bp.get("data", bp.get("model", train.get("model"), "input")) or {}
    source = data.get("source") or {}
    steps = train.get("max_steps")
    numbers = source.get("samples"), data.get("batch"), train.get("epochs"), train.get("grad_accum")
    fraction = (data.get("split") or {}).get("train")
    if source.get("fn") == "synthetic" and all(isinstance(n, int) for n in numbers) and isinstance(fraction, float):
        samples, batch, epochs, accumulate = numbers
        whole = epochs * (round(samples * fraction) // world_size // batch // accumulate)
        steps = whole if steps is None else min(steps, whole)
    return steps


def _check_strategy(bp: Blueprint) -> list[Diagnostic]:
    strategy = bp.values.get("strategy") or {}
    kind = strategy.get("kind")
    found = []
    if isinstance(strategy.get("zero"), int) and isinstance(kind, str) and kind not in ("deepspeed", "auto"):
        found.append(diag("DT207", f"`zero` is a DeepSpeed setting but the strategy is `{kind}`", bp.span("strategy", "zero"), "remove `zero` or set `kind = deepspeed`"))
    if kind == "single":
        for key in ("nodes", "procs_per_node"):
            if isinstance(strategy.get(key), int) and strategy[key] > 1:
                found.append(diag("DT114", f"`single` runs one process but `{key}` is {strategy[key]}", bp.span("strategy", key), "use `kind = ddp` to run several processes"))
    return found


def _check_unused(bp: Blueprint, data: dict, models: dict) -> list[Diagnostic]:
    used_data = {m.get("input") for m in models.values()}
    used_models = {(bp.values.get("train") or {}).get("model"), *trained_models(bp)}
    found = []
    for kind, names, used in (("data", data, used_data), ("model", models, used_models)):
        for name in names:
            if name not in used:
                found.append(diag("DT115", f'`{kind} "{name}"` is never used', bp.span(kind, name), "remove it, or refer to it" + (" from a model's `input`" if kind == "data" else " from `train.model`")))
    return found
