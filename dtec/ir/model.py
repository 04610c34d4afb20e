"""Pydantic models of the IR, the interoperability contract other tools can build on."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from dtec import __version__
from dtec.lang.blueprint import Blueprint
from dtec.lang.schema import (
    ARCH, DATA_SOURCE, LOSSES, METRICS, OPTIMIZER, PRECISIONS, SCALING_MODES, SCHEDULER, STRATEGIES,
)
from dtec.lang.semantics import label_count, sample_shape
from dtec.plan import Decision, Plan

IR_VERSION = "1.1"
IR_SCHEMA_ID = "https://dtec.dev/schema/ir/1.1.json"


# The vocabulary's names (dtec.lang.schema is their one source), less `auto`, which planning resolves.
DataSource = Literal[tuple(DATA_SOURCE.functions)]  # type: ignore[valid-type]
OptimizerName = Literal[tuple(OPTIMIZER.functions)]  # type: ignore[valid-type]
SchedulerName = Literal[tuple(SCHEDULER.functions)]  # type: ignore[valid-type]
Loss = Literal[LOSSES]  # type: ignore[valid-type]
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
    """Fractions of the samples for training and validation."""

    train: float = Field(gt=0, le=1)
    val: float = Field(ge=0, le=1)


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
    batch: int = Field(ge=1, description="batch size per rank")
    workers: int = Field(ge=0)
    shuffle: bool
    path: str | None = Field(None, description=_CODE_PATH)


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


class Monitored(_Model):
    """A validation metric and the direction in which it improves."""

    metric: Literal[tuple(METRICS)]  # type: ignore[valid-type]
    mode: Literal["min", "max"]


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


class Train(_Model):
    """The training loop."""

    model: str
    loss: Loss
    optimizer: Optimizer
    scheduler: Scheduler
    epochs: int = Field(ge=1)
    max_steps: int | None
    precision: Precision
    seed: int = Field(ge=0)
    grad_accum: int = Field(ge=1)
    clip_grad: float | None
    checkpoint: Checkpoint
    stop_early: StopEarly | None = None
    deterministic: bool = False


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


class Monitor(_Model):
    """What the training script measures."""

    timing: bool
    energy: bool
    profiler: dict[str, Any] | None
    log_every: int | None = Field(
        default=None, ge=1, description="optimizer steps between step records; None: about ten per epoch"
    )


class Scaling(_Model):
    """A scaling study over node counts."""

    nodes: list[int]
    mode: ScalingMode


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


def build_ir(bp: Blueprint, plan: Plan, code: Mapping[str, str] | None = None) -> IR:
    """Build the IR of a checked blueprint (without errors) and its plan.

    `code` maps each code folder as written to where the bundle finds it (BundledCode.folders).
    Data paths stay as written: relative ones are read from the data root where the job runs.
    """
    v = bp.values
    code = code or {}
    train = v["train"]
    optimizer = train["optimizer"]
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
            )
            for name, m in sorted(v["model"].items())
        },
        train=Train(
            model=train["model"],
            loss=train["loss"],
            optimizer=Optimizer(name=optimizer["fn"], **{k: val for k, val in optimizer.items() if k != "fn"}),
            scheduler=Scheduler(name=scheduler["fn"], **{k: _monitored(val) if k == "monitor" else val for k, val in scheduler.items() if k != "fn"}),
            epochs=train["epochs"],
            max_steps=train["max_steps"],
            precision=plan.precision,
            seed=train["seed"],
            grad_accum=train["grad_accum"],
            clip_grad=train["clip_grad"],
            checkpoint=_checkpoint(train["checkpoint"]),
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
        ),
        monitor=Monitor(
            timing=v["monitor"]["timing"],
            energy=v["monitor"]["energy"],
            profiler=None if profiler["fn"] == "none" else profiler,
            log_every=v["monitor"]["log_every"],
        ),
        scaling=Scaling(**v["scaling"]) if v.get("scaling", {}).get("nodes") else None,
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


def _checkpoint(c: dict[str, Any]) -> Checkpoint:
    """The checkpoint record; a monitored metric `min(val_loss)` as its metric and mode."""
    best = c.get("best") and _monitored(c["best"])
    return Checkpoint(every=c["every"], keep=c["keep"], best=best, final=c["final"])


def _monitored(call: dict[str, Any]) -> Monitored:
    """A monitored metric, `min(val_loss)`, as its metric and mode."""
    return Monitored(metric=call["metric"], mode=call["fn"])


def _data(name: str, d: dict[str, Any], plan: Plan, code: Mapping[str, str]) -> Data:
    source = dict(d["source"])
    labels = label_count(source)
    return Data(
        name=name,
        source=source["fn"],
        options={k: val for k, val in source.items() if k != "fn" and val is not None},
        sample_shape=sample_shape(source),
        task=None if labels is None else ("classification" if labels[0] == "classes" else "regression"),
        targets=source.get("targets"),
        classes=source.get("classes"),
        split=Split(**d["split"]),
        batch=d["batch"],
        workers=plan.workers if d["workers"] == "auto" else d["workers"],
        shuffle=d["shuffle"],
        path=code.get(d["path"], d["path"]),
    )
