"""Pydantic models of the IR, the interoperability contract other tools can build on."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_serializer

from dtec import __version__
from dtec.lang.blueprint import Blueprint
from dtec.lang.schema import (
    ARCH, DATA_SOURCE, EXPORTERS, LOSSES, METRIC, METRICS, NORMALIZATIONS, OBJECTIVE, OPTIMIZER,
    PRECISIONS, SCALING_MODES, SCHEDULER, SEVERAL_MODELS, STRATEGIES, WINDOWED_SOURCES,
)
from dtec.lang.gan import trained_models
from dtec.lang.losses import loss_terms, loss_weights, scored_targets
from dtec.lang.objectives import has_prediction
from dtec.lang.semantics import label_count, sample_shape, training_task
from dtec.plan import Decision, Plan

IR_VERSION = "1.1"
IR_SCHEMA_ID = "https://dtec.dev/schema/ir/1.1.json"


# The vocabulary's names (dtec.lang.schema is their one source), less `auto`, which planning resolves.
DataSource = Literal[tuple(DATA_SOURCE.functions)]  # type: ignore[valid-type]
OptimizerName = Literal[tuple(OPTIMIZER.functions)]  # type: ignore[valid-type]
SchedulerName = Literal[tuple(SCHEDULER.functions)]  # type: ignore[valid-type]
LossName = Literal[LOSSES]  # type: ignore[valid-type]
Precision = Literal[tuple(p for p in PRECISIONS if p != "auto")]  # type: ignore[valid-type]
StrategyKind = Literal[tuple(s for s in STRATEGIES if s != "auto")]  # type: ignore[valid-type]
ScalingMode = Literal[SCALING_MODES]  # type: ignore[valid-type]


_CODE_PATH = "the code folder: `code/<name>` in the bundle (a copy), or an absolute path on the machine"


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Twin(_Model):
    """The digital twin's identity."""

    name: str
    description: str
    version: str


class Split(_Model):
    """Fractions of the samples for training, validation and test, and how samples are assigned."""

    train: float = Field(gt=0, le=1)
    val: float = Field(ge=0, le=1)
    test: float = Field(0.0, ge=0, le=1)
    order: Literal["random", "time"] = "random"  # `auto` resolved: time for windowed sources


class Data(_Model):
    """A data set: its source, shape, labels and loading."""

    name: str
    source: DataSource
    options: dict[str, Any] = Field(
        description="the source's arguments, as in the blueprint (a relative file path is relative to the data root)"
    )
    sample_shape: list[int] | None
    task: Literal["regression", "classification"] | None
    targets: int | None
    classes: int | None
    split: Split
    normalize: Literal[NORMALIZATIONS] = Field("none", description="input scaling, statistics of the train split")  # type: ignore[valid-type]
    batch: int = Field(ge=1, description="batch size per rank")
    workers: int = Field(ge=0)
    shuffle: bool
    path: str | None = Field(None, description=_CODE_PATH)
    fields: dict[str, Any] = Field(
        {}, description="`input` and `target` as written, when given: `{\"fn\": \"field\", \"name\": \"X\"}` or `{\"fn\": \"input\"}`"
    )
    batch_fields: list[str] = Field([], description="other fields of dict items the batch carries to the objective by name (`fields`)")


class Weights(_Model):
    """Where a model's initial weights come from: a run folder, or another blueprint's newest run."""

    run: str | None = Field(description="a run folder, relative to the blueprint")
    blueprint: str | None = Field(description="another blueprint, relative to this one")
    twin: str = Field(description="the twin that trained them")
    model: str = Field(description="the model of that twin")


class Model(_Model):
    """A network, its architecture and the data set it reads."""

    name: str
    arch: str = Field(
        description="an architecture of the vocabulary",
        json_schema_extra=lambda schema: schema.update(enum=list(ARCH.functions)),
    )
    params: dict[str, Any]
    input: str
    path: str | None = Field(description=_CODE_PATH)
    parameters: int | None = Field(description="trainable parameters, when known statically")
    weights: Weights | None = Field(None, description="the initial weights (`dtec run` passes their file as $DTEC_WEIGHTS)")
    freeze: list[str] = Field([], description="name prefixes of the parameters not trained")
    outputs: list[str] = Field([], description="names of the parts the model returns (a tuple or dict); empty: one tensor")
    init: dict[str, Any] | None = Field(None, description="how the weights are initialised, as written (`{\"fn\": \"normal\", \"mean\": 0.0, \"std\": 0.02}`); None: each layer's own")

    @field_validator("arch")
    @classmethod
    def _known_arch(cls, value: str) -> str:
        # The vocabulary's list, read when validating: an architecture is added in one place.
        if value not in ARCH.functions:
            raise ValueError(f"unknown architecture {value!r}")
        return value


class Optimizer(_Model):
    """The optimizer and its settings; those another optimizer takes are None."""

    name: OptimizerName
    lr: float = Field(gt=0)
    weight_decay: float = Field(ge=0)
    momentum: float | None = Field(None, ge=0, le=1, description="SGD, RMSprop")
    nesterov: bool | None = Field(None, description="SGD")
    betas: list[float] | None = Field(None, min_length=2, max_length=2, description="Adam, AdamW")
    eps: float | None = Field(None, gt=0, description="Adam, AdamW, RMSprop")
    alpha: float | None = Field(None, ge=0, lt=1, description="RMSprop")


class ModelOptimizer(_Model):
    """The optimizer of one of several models trained together (an `optimizer` block)."""

    model: str
    optimizer: Optimizer


class Monitored(_Model):
    """A validation metric and the direction in which it improves."""

    metric: Literal[tuple(METRICS)]  # type: ignore[valid-type]
    mode: Literal["min", "max"]


class Metric(_Model):
    """A validation metric the script records besides the loss, as `val_<name>`."""

    name: Literal[tuple(METRIC.functions)]  # type: ignore[valid-type]
    average: Literal["macro", "micro"] | None = Field(
        None, description="precision, recall and F1: over the classes (macro) or all decisions (micro)"
    )


class Scheduler(_Model):
    """The learning-rate schedule and its linear warm-up (optimizer steps); unused settings are None."""

    name: SchedulerName
    warmup: int = Field(0, ge=0)
    every: int | None = Field(None, ge=1, description="step: epochs between decays")
    gamma: float | None = Field(None, gt=0, le=1, description="step, exponential, multistep")
    milestones: list[int] | None = Field(None, description="multistep: epochs, increasing")
    max_lr: float | None = Field(None, gt=0, description="onecycle")
    pct_start: float | None = Field(None, gt=0, lt=1, description="onecycle")
    monitor: Monitored | None = Field(None, description="plateau")
    factor: float | None = Field(None, gt=0, lt=1, description="plateau")
    patience: int | None = Field(None, ge=0, description="plateau: epochs")
    min_lr: float | None = Field(None, ge=0, description="plateau")


class StopEarly(_Model):
    """Stop when the monitored metric has not improved by `min_delta` for `patience` epochs."""

    monitor: Monitored
    patience: int = Field(ge=1)
    min_delta: float = Field(ge=0)


class Checkpoint(_Model):
    """How often checkpoints are written, how many are kept, and which epoch is the best."""

    every: int = Field(ge=1)
    keep: int = Field(ge=1)
    best: Monitored | None = None
    final: Literal["last", "best"] = "last"


class LossTerm(_Model):
    """One loss function with the options the blueprint gives it."""

    name: LossName
    options: dict[str, Any] = Field(description="its arguments as written (a python() loss: `callable` and `kwargs`)")


class Loss(_Model):
    """The training loss: one function, or the weighted sum of several (`sum(terms, weights)`)."""

    terms: list[LossTerm] = Field(min_length=1)
    weights: list[float] = Field(description="one per term; 1 for a loss alone")
    scores: Literal["classes", "binary", "values"] | None = Field(
        description="what the prediction is scored against: class numbers, 0/1 targets or values; None: only python() terms, which do not say"
    )
    summed: bool = Field(description="written as `sum(...)`")

    @property
    def label(self) -> str:
        """The loss in one line: `bce`, `mse + 0.1 * python`."""
        return " + ".join(t.name if w == 1 else f"{w:g} * {t.name}" for t, w in zip(self.terms, self.weights))


class Objective(_Model):
    """What one training step optimises (docs/custom-training.md)."""

    name: Literal[tuple(OBJECTIVE.functions)]  # type: ignore[valid-type]
    options: dict[str, Any] = Field(
        {}, description="its arguments but the loss it brings (elbo: `kl_weight`; python: `callable`, `kwargs`)"
    )


class Train(_Model):
    """The training loop."""

    model: str
    objective: Objective = Objective(name="supervised")
    loss: Loss | None = Field(description="the loss of the prediction (elbo: its `recon`); None: a python() step's own")
    optimizer: Optimizer = Field(description="the optimizer of `model`")
    optimizers: dict[str, ModelOptimizer] = Field(
        {}, description="several models trained together (gan): each model's optimizer, by name; empty: `model` alone"
    )
    scheduler: Scheduler
    epochs: int = Field(ge=1)
    max_steps: int | None
    precision: Precision
    seed: int = Field(ge=0)
    seed_per_rank: bool = Field(False, description="each rank reseeds its generators with a stream of its own once the weights are initialised")
    grad_accum: int = Field(ge=1)
    clip_grad: float | None
    metrics: list[Metric] = Field(
        default_factory=list,
        description="recorded besides the loss: the accuracy always for classification, then `train.metrics`",
    )
    checkpoint: Checkpoint
    export: Literal[EXPORTERS] = Field("torch_export", description="how the final model is exported for predict.py")  # type: ignore[valid-type]
    path: str | None = Field(None, description=_CODE_PATH)
    stop_early: StopEarly | None = None
    deterministic: bool = False

    @property
    def loss_label(self) -> str:
        """What a step optimises, in one line: `mse`, `elbo: mse + 0.1 * kl`, `step losses:step`."""
        options = self.objective.options
        if self.loss is None:
            return f"step {options['callable']}"
        if self.objective.name == "elbo":
            return f"elbo: {self.loss.label} + {options['kl_weight']:g} * kl"
        return self.loss.label


class Strategy(_Model):
    """How the training is distributed, resolved for the target."""

    kind: StrategyKind
    zero: int | None = Field(default=None, ge=1, le=3)
    nodes: int = Field(ge=1)
    ranks_per_node: int = Field(ge=1)
    gpus_per_node: int = Field(ge=0)
    world_size: int = Field(ge=1)
    device: Literal["cuda", "cpu"]
    backend: str
    global_batch: int = Field(ge=1)
    find_unused_parameters: bool = Field(False, description="DDP looks for parameters a step leaves without gradient")


class Tracker(_Model):
    """An experiment tracker the run logs to (rank 0): MLflow or TensorBoard."""

    kind: Literal["mlflow", "tensorboard"]
    uri: str | None = Field(None, description="mlflow: the tracking URI; None: an SQLite store in run/mlflow/")
    experiment: str | None = Field(None, description="mlflow: the experiment; None: the twin's name")
    system_metrics: bool = Field(False, description="mlflow: sample CPU, memory and GPU as system/… metrics")


class Monitor(_Model):
    """What the training script measures."""

    timing: bool
    energy: bool
    profiler: dict[str, Any] | None
    log_every: int | None = Field(
        default=None, ge=1, description="optimizer steps between step records; None: about ten per epoch"
    )
    track: list[Tracker] = Field(default_factory=list, description="experiment trackers; absent: none")

    @model_serializer(mode="wrap")
    def _untracked_as_before(self, handler: Any) -> dict[str, Any]:
        # Without trackers the key is left out: the IR (and its hash) of an untracked run is unchanged.
        data = handler(self)
        if not self.track:
            data.pop("track", None)
        return data


class Scaling(_Model):
    """A scaling study: its points (world sizes or node counts) and what each measures."""

    ranks: list[int] | None = Field(description="world sizes, when the study names them")
    nodes: list[int] | None = Field(description="node counts, when the study names them")
    mode: ScalingMode
    steps: int = Field(ge=1, description="measured optimizer steps per point")
    warmup: int = Field(ge=0, description="optimizer steps before measuring")
    repeats: int = Field(ge=1, description="launches per point")


class Target(_Model):
    """The machine and the site settings of the job."""

    name: str
    machine: str = Field(description="the machine profile: the target's `profile`, else its name")
    scheduler: Literal["slurm", "local", "kubernetes", "kubeflow", "interlink"]
    partition: str | None
    qos: str | None
    account: str | None
    walltime_s: int = Field(ge=1)
    cpus_per_rank: int = Field(ge=1)
    container: str | None
    modules: list[str]
    venv: str | None
    setup: list[str]
    env: dict[str, str]
    image: str | None
    namespace: str | None
    exclusive: bool | None
    reservation: str | None
    data_root: str | None = Field(
        None, description="where relative data paths are read from on the machine (`$DTEC_DATA_ROOT` overrides it)"
    )
    queue: str | None = Field(None, description="Kubernetes: the Kueue LocalQueue (`kueue.x-k8s.io/queue-name`)")
    priority_class: str | None = Field(
        None, description="Kubernetes: the Kueue WorkloadPriorityClass (`kueue.x-k8s.io/priority-class`)"
    )
    runtime: str | None = Field(None, description="Kubeflow TrainJob: the ClusterTrainingRuntime (default: the profile's)")


class Estimate(_Model):
    """Static estimates: parameters and bytes per rank."""

    parameters: int | None
    parameter_bytes: int | None
    gradient_bytes: int | None
    optimizer_bytes: int | None
    activation_bytes: int | None
    total_bytes: int | None
    limit_bytes: int | None


class IR(_Model):
    """A blueprint planned for one target."""

    schema_version: Literal["1.1"] = IR_VERSION
    dtec_version: str
    twin: Twin
    data: dict[str, Data]
    models: dict[str, Model]
    train: Train
    strategy: Strategy
    monitor: Monitor
    scaling: Scaling | None
    target: Target
    estimate: Estimate
    decisions: list[Decision]


def ir_schema() -> dict[str, Any]:
    """Return the JSON Schema (draft 2020-12) of the IR."""
    schema = IR.model_json_schema(mode="serialization")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": IR_SCHEMA_ID,
        "version": IR_VERSION,
        **schema,
    }


def _weights(weights: dict | None) -> Weights | None:
    if weights is None:
        return None
    return Weights(**{k: weights.get(k) for k in ("run", "blueprint", "twin", "model")})


def build_ir(bp: Blueprint, plan: Plan, code: Mapping[str, str] | None = None) -> IR:
    """Build the IR of a checked blueprint (without errors) and its plan.

    `code` maps each code folder as written to where the bundle finds it (BundledCode.folders).
    Data paths stay as written: relative ones are read from the data root where the job runs.
    """
    v = bp.values
    code = code or {}
    train = v["train"]
    optimizers = _optimizers(v, trained_models(bp))
    optimizer = next((o for o in (v.get("optimizer") or {}).values() if o["model"] == train["model"]), None)
    optimizer = optimizer["fn"] if optimizer else train["optimizer"]
    scheduler = train["scheduler"]
    profiler = v["monitor"]["profiler"]
    memory = plan.memory
    settings = plan.settings
    return IR(
        dtec_version=__version__,
        twin=Twin(name=v["twin"]["name"], description=v["twin"]["description"], version=v["twin"]["version"]),
        data={name: _data(name, d, plan, code) for name, d in sorted(v["data"].items())},
        models={
            name: Model(
                name=name,
                arch=m["arch"]["fn"],
                params={k: val for k, val in m["arch"].items() if k != "fn"},
                input=m["input"],
                path=code.get(m["path"], m["path"]),
                parameters=plan.parameters if name == train["model"] else None,
                weights=_weights(m.get("weights")),
                freeze=m.get("freeze") or [],
                outputs=m.get("outputs") or [],
                init=m.get("init"),
            )
            for name, m in sorted(v["model"].items())
        },
        train=Train(
            model=train["model"],
            objective=_objective(train["objective"]),
            loss=None if train["loss"] is None else _loss(train["loss"]),
            optimizer=_optimizer(optimizer),
            optimizers=optimizers if train["objective"]["fn"] in SEVERAL_MODELS else {},
            scheduler=Scheduler(name=scheduler["fn"], **{k: _monitored(val) if k == "monitor" else val for k, val in scheduler.items() if k != "fn"}),
            epochs=train["epochs"],
            max_steps=train["max_steps"],
            precision=plan.precision,
            seed=train["seed"],
            seed_per_rank=train["seed_per_rank"],
            grad_accum=train["grad_accum"],
            clip_grad=train["clip_grad"],
            metrics=_metrics(train, training_task(bp)) if has_prediction(bp) else [],
            checkpoint=_checkpoint(train["checkpoint"]),
            export=train["export"],
            path=code.get(train["path"], train["path"]),
            stop_early=train.get("stop_early") and StopEarly(**{**train["stop_early"], "monitor": _monitored(train["stop_early"]["monitor"])}),
            deterministic=train["deterministic"],
        ),
        strategy=Strategy(
            kind=plan.strategy,
            zero=plan.zero,
            nodes=plan.nodes,
            ranks_per_node=plan.ranks_per_node,
            gpus_per_node=plan.gpus_per_node,
            world_size=plan.world_size,
            device=plan.device,
            backend=plan.backend,
            global_batch=plan.global_batch,
            find_unused_parameters=_find_unused(v, plan.strategy),
        ),
        monitor=Monitor(
            timing=v["monitor"]["timing"],
            energy=v["monitor"]["energy"],
            profiler=None if profiler["fn"] == "none" else profiler,
            log_every=v["monitor"]["log_every"],
            track=_trackers(v["monitor"].get("track")),
        ),
        scaling=_scaling(v.get("scaling") or {}),
        target=Target(
            name=plan.target,
            machine=plan.machine.name,
            scheduler=plan.machine.scheduler,
            **plan.site_flags,  # account, partition, qos, reservation
            walltime_s=plan.walltime_s,
            cpus_per_rank=plan.cpus_per_rank,
            container=settings.get("container"),
            modules=list(settings.get("modules") or []),
            venv=settings.get("venv"),
            setup=list(settings.get("setup") or []),
            env=dict(sorted((settings.get("env") or {}).items())),
            image=settings.get("image"),
            namespace=settings.get("namespace"),
            exclusive=settings.get("exclusive"),
            data_root=settings.get("data_root"),
            queue=settings.get("queue"),
            priority_class=settings.get("priority_class"),
            runtime=settings.get("runtime"),
        ),
        estimate=Estimate(
            parameters=plan.parameters,
            parameter_bytes=memory.parameters if memory else None,
            gradient_bytes=memory.gradients if memory else None,
            optimizer_bytes=memory.optimizer if memory else None,
            activation_bytes=memory.activations if memory else None,
            total_bytes=memory.total if memory else None,
            limit_bytes=plan.memory_limit,
        ),
        decisions=list(plan.decisions),
    )


def _optimizer(call: dict[str, Any]) -> Optimizer:
    return Optimizer(name=call["fn"], **{k: val for k, val in call.items() if k != "fn"})


def _optimizers(v: dict[str, Any], trained: list[str]) -> dict[str, ModelOptimizer]:
    """Each trained model's optimizer by name: its `optimizer` block, else a copy of `train.optimizer` named for the model."""
    blocks = v.get("optimizer") or {}
    if blocks:
        return {label: ModelOptimizer(model=b["model"], optimizer=_optimizer(b["fn"])) for label, b in sorted(blocks.items())}
    return {model: ModelOptimizer(model=model, optimizer=_optimizer(v["train"]["optimizer"])) for model in trained}


def _find_unused(v: dict[str, Any], strategy: str) -> bool:
    """As given; by default on for DDP with an objective whose updates use part of a model's outputs."""
    given = (v.get("strategy") or {}).get("find_unused_parameters")
    if given is not None:
        return given
    return strategy == "ddp" and v["train"]["objective"]["fn"] in SEVERAL_MODELS


def _loss(loss: dict[str, Any]) -> Loss:
    """The loss as its terms and weights; options left at no value are left out."""
    terms = [
        LossTerm(name=term["fn"], options={k: v for k, v in term.items() if k != "fn" and v is not None})
        for _, term in loss_terms(loss)
    ]
    return Loss(terms=terms, weights=loss_weights(loss), scores=scored_targets(loss)[0], summed=loss["fn"] == "sum")


def _objective(objective: dict[str, Any]) -> Objective:
    """The objective's name and options; elbo's `recon` is the training's loss, not an option."""
    options = {k: v for k, v in objective.items() if k not in ("fn", "recon") and v is not None}
    return Objective(name=objective["fn"], options=options)


def _checkpoint(c: dict[str, Any]) -> Checkpoint:
    """The checkpoint record; a monitored metric `min(val_loss)` as its metric and mode."""
    best = c.get("best") and _monitored(c["best"])
    return Checkpoint(every=c["every"], keep=c["keep"], best=best, final=c["final"])


def _metrics(train: dict[str, Any], task: str | None) -> list[Metric]:
    """`train.metrics` as recorded: for classification the accuracy first unless it is listed."""
    declared = [Metric(name=m["fn"], average=m.get("average")) for m in train["metrics"]]
    accuracy = Metric(name="accuracy")
    default = [accuracy] if task == "classification" and accuracy not in declared else []
    return default + declared


def _trackers(track: dict[str, Any] | list[dict[str, Any]] | None) -> list[Tracker]:
    """`track = mlflow(...)` or a list of trackers, as a list."""
    calls = track if isinstance(track, list) else [track] if track else []
    return [Tracker(kind=c["fn"], **{k: v for k, v in c.items() if k != "fn"}) for c in calls]


def _monitored(call: dict[str, Any]) -> Monitored:
    """A monitored metric, `min(val_loss)`, as its metric and mode."""
    return Monitored(metric=call["metric"], mode=call["fn"])


def _split_order(source: str, order: str) -> str:
    """`auto`: windows along time are split in time (no window of one part overlaps another's), samples at random."""
    return ("time" if source in WINDOWED_SOURCES else "random") if order == "auto" else order


def _data(name: str, d: dict[str, Any], plan: Plan, code: Mapping[str, str]) -> Data:
    source = dict(d["source"])
    labels = label_count(source)
    return Data(
        name=name,
        source=source["fn"],
        options={k: val for k, val in source.items() if k != "fn" and val is not None},
        sample_shape=sample_shape(source, d.get("target")),
        task=None if labels is None else ("classification" if labels[0] == "classes" else "regression"),
        targets=source.get("targets") if isinstance(source.get("targets"), int) else None,  # windowed: variable names
        classes=source.get("classes"),
        split=Split(**{**d["split"], "order": _split_order(source["fn"], d["split"]["order"])}),
        normalize=d.get("normalize", "none"),
        batch=d["batch"],
        workers=plan.workers if d["workers"] == "auto" else d["workers"],
        shuffle=d["shuffle"],
        path=code.get(d["path"], d["path"]),
        fields={k: d[k] for k in ("input", "target") if d.get(k) is not None},
        batch_fields=d.get("fields") or [],
    )


def _scaling(block: dict[str, Any]) -> Scaling | None:
    """The study of a `scaling` block that names its points (an absent block holds defaults only)."""
    if not (block.get("ranks") or block.get("nodes")):
        return None
    return Scaling(**{k: block.get(k) for k in ("ranks", "nodes", "mode", "steps", "warmup", "repeats")})
