"""Plan a blueprint onto a machine: resolve every `auto`, check the machine's limits, say why.

Light on purpose (no pydantic, networkx or jinja2): `dtec lint` runs it for every target.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from dtec.backends.checks import check as check_launcher, job_image
from dtec.diagnostics import Diagnostic, Related, diag
from dtec.estimate import Memory, activation_bytes, memory_per_rank, parameter_count
from dtec.lang.blueprint import Blueprint
from dtec.lang.scaling import check_fit
from dtec.lang.semantics import check_warmup, sample_shape
from dtec.lang.tracking import is_remote, trackers
from dtec.source import argument_span
from dtec.machines import Catalog, Machine, Partition
from dtec.machines.overrides import OverrideError, apply_overrides
from dtec.machines.model import Node
from dtec.units import GIB, format_duration
from dtec.suggest import did_you_mean, suggestion

_SLURM_KEYS = {
    "profile", "account", "partition", "qos", "walltime", "container", "modules", "venv", "setup", "env",
    "exclusive", "reservation", "data_root",
}
_KUBE_KEYS = {"profile", "image", "namespace", "walltime", "env", "data_root", "queue", "priority_class", "runtime"}
# Target keys each kind of machine understands; the others are reported (DT215), never dropped.
TARGET_KEYS = {
    "slurm": _SLURM_KEYS,
    "local": {"profile", "walltime", "env", "partition", "data_root"},
    "kubernetes": _KUBE_KEYS,
    "kubeflow": _KUBE_KEYS,
    "interlink": _KUBE_KEYS | {"account", "partition", "qos", "reservation", "exclusive"},  # Slurm flags there
}
_DEFAULT_WALLTIME = 3600
_MAX_AUTO_WORKERS = 8
_GPU_HEADROOM = 0.9  # CUDA context, allocator fragmentation and NCCL buffers take the rest


@dataclass(frozen=True)
class Decision:
    """A value dtec chose, and why."""

    # The IR holds these same objects; pydantic reads this (a plain dict: lint imports no pydantic).
    __pydantic_config__: ClassVar[dict[str, str]] = {"extra": "forbid"}

    subject: str
    value: str
    reason: str


@dataclass(frozen=True)
class Plan:
    """The blueprint resolved for one target: every count and setting the backends need."""

    target: str
    machine: Machine
    partition: Partition | None
    node: Node
    settings: dict[str, Any]  # the blueprint's target block (empty when the target is not declared)
    strategy: str
    zero: int | None
    nodes: int
    ranks_per_node: int
    gpus_per_node: int
    device: str
    backend: str
    precision: str
    workers: int
    cpus_per_rank: int
    global_batch: int
    walltime_s: int
    parameters: int | None
    memory: Memory | None
    memory_limit: int | None
    decisions: tuple[Decision, ...]

    @property
    def world_size(self) -> int:
        """Return the number of ranks."""
        return self.nodes * self.ranks_per_node

    @property
    def site_flags(self) -> dict[str, str | None]:
        """Return the account, partition, QoS and reservation the job asks its scheduler for."""
        part = self.partition
        return {
            "account": self.settings.get("account"),
            "partition": (part.slurm_partition or None) if part is not None else self.settings.get("partition"),
            "qos": self.settings.get("qos") or (part.qos if part is not None else None),
            "reservation": self.settings.get("reservation"),
        }


def plan(
    bp: Blueprint, target: str, catalog: Catalog, facts: Mapping[str, dict | None] | None = None, sharing: int = 1,
) -> tuple[Plan | None, list[Diagnostic]]:
    """Plan `bp` for `target`; returns None (with the reasons) when it cannot be planned.

    `facts` is what the data files say (dtec.lang.files): the train samples a split gives.
    `sharing`: how many sweep trials run at once; on a local computer each plans with its part.
    """
    planner = _Planner(bp, target, catalog, facts or {}, sharing)
    planned, found = planner.run()
    if planned is not None:
        source = bp.get("data", planner.data, "source") if planner.data else None
        read = {planner.data: source["path"]} if isinstance(source, dict) and source.get("fn") in ("npz", "csv") else {}
        weighted = tuple(name for name, model in (bp.values.get("model") or {}).items()
                         if isinstance(model, dict) and model.get("weights") is not None)
        check_launcher(planned, planner.report, read, weighted)  # what the launcher cannot express
    return planned, found


class _Planner:
    def __init__(self, bp: Blueprint, target: str, catalog: Catalog, facts: Mapping[str, dict | None], sharing: int) -> None:
        self.bp = bp
        self.facts = facts
        self.sharing = sharing
        self.target = target
        self.catalog = catalog
        self.settings: dict[str, Any] = (bp.get("target") or {}).get(target) or {}
        self.declared = bp.span("target", target) is not None
        self.found: list[Diagnostic] = []
        self.decisions: list[Decision] = []
        # The model `train` trains, and the data set it reads: what every estimate is about.
        self.model = bp.get("train", "model")
        self.data = bp.get("model", self.model, "input") if self.model else None
        batch = bp.get("data", self.data, "batch") if self.data else None
        self.batch = batch if isinstance(batch, int) else 1

    def report(self, code: str, message: str, *path: str | int, help: str | None = None, related=()) -> None:
        span = self.bp.span(*path) if path else self.bp.span("target", self.target)
        if span is None:
            span = argument_span("--target", self.target)  # a target the blueprint does not declare
        self.found.append(diag(code, message, span, help, related))

    def decide(self, subject: str, value: Any, reason: str) -> None:
        self.decisions.append(Decision(subject, str(value), reason))

    def at_target(self, key: str) -> tuple[str, ...]:
        return ("target", self.target, key) if key in self.settings else ("target", self.target)

    def run(self) -> tuple[Plan | None, list[Diagnostic]]:
        machine = self.machine()
        if machine is None:
            return None, self.found
        partition = self.partition(machine)
        node = partition.node if partition is not None else machine.node
        self.site_rules(machine)
        self.tracking(machine, partition)
        strategy = self.bp.get("strategy") or {}
        gpus = self.gpus(strategy, node)
        device = "cuda" if gpus else "cpu"
        kind = strategy.get("kind", "auto")
        ranks_per_node = gpus if gpus else strategy.get("procs_per_node", 1)
        nodes = strategy.get("nodes", 1)
        if kind == "single":
            ranks_per_node, nodes, gpus = 1, 1, min(gpus, 1)
        self.limits(partition, nodes)
        where = f"`{partition.name}`" if partition is not None else f"`{machine.name}`"
        max_nodes = partition.max_nodes if partition is not None else None
        self.found += check_fit(self.bp, gpus or node.usable_cpus, max_nodes, where, kind)
        walltime = self.walltime(machine, partition)
        precision = self.precision(node, device)
        cpus_per_rank = self.cpus_per_rank(node, ranks_per_node, gpus)
        workers = self.workers(cpus_per_rank)
        world = nodes * ranks_per_node
        kind, zero, params, memory, limit = self.strategy(kind, strategy.get("zero"), world, node, device, precision)
        if partition is not None and partition.whole_node and 0 < gpus < node.gpus:
            self.report(
                "DT212",
                f"the job uses {gpus} of {node.gpus} GPUs per node on `{partition.name}`, which allocates whole nodes",
                "strategy", "gpus_per_node",
                help="use `gpus_per_node = all`, or a partition that shares nodes",
            )
        backend = machine.backend(partition) if gpus else machine.comm.cpu_backend
        self.decide("ranks", f"{nodes} × {ranks_per_node}", self.ranks_reason(node, strategy, gpus, backend))
        batch = self.batch
        global_batch = batch * world * (self.bp.get("train", "grad_accum") or 1)
        self.decide("global batch", global_batch, f"{batch} per rank × {world} ranks × {self.bp.get('train', 'grad_accum') or 1} accumulation steps")
        self.found += check_warmup(self.bp, world, self.target)  # the run's length in steps depends on the ranks
        self.one_step_per_rank(world)
        return (
            Plan(
                target=self.target,
                machine=machine,
                partition=partition,
                node=node,
                settings=self.settings,
                strategy=kind,
                zero=zero,
                nodes=nodes,
                ranks_per_node=ranks_per_node,
                gpus_per_node=gpus,
                device=device,
                backend=backend,
                precision=precision,
                workers=workers,
                cpus_per_rank=cpus_per_rank,
                global_batch=global_batch,
                walltime_s=walltime,
                parameters=params,
                memory=memory,
                memory_limit=limit,
                decisions=tuple(self.decisions),
            ),
            self.found,
        )

    def one_step_per_rank(self, world: int) -> None:
        """DT335: each rank's share of the train split (the files' count) makes one optimizer step."""
        train = (self.facts.get(self.data) or {}).get("train_samples") if self.data else None
        accumulate = self.bp.get("train", "grad_accum") or 1
        if not isinstance(train, int) or train // world >= self.batch * accumulate:
            return
        step = f"one batch of {self.batch}" if accumulate == 1 else f"one step ({self.batch} × {accumulate} accumulation steps)"
        self.report("DT335", f"the train split holds {train} samples: {train // world} for each of the {world} ranks of target "
                    f"`{self.target}`, fewer than {step}", "data", self.data, "batch",
                    help=f"use `batch` at most {max(1, train // world // accumulate)}, fewer ranks, or more data")

    # ---- the machine ---------------------------------------------------------------------
    def machine(self) -> Machine | None:
        name = self.settings.get("profile") or self.target
        machine = self.catalog.get(name)
        if machine is None:
            self.report(
                "DT200",
                f"no machine profile named `{name}`",
                *(self.at_target("profile") if self.settings.get("profile") else ()),
                help=suggestion(self.catalog.suggest(name))
                or ('run `dtec targets` to list the machines, and name one with `profile = "…"`' if self.declared and name == self.target else "run `dtec targets` to list the machines"),
            )
            return None
        if machine.scheduler == "local":
            from dtec.machines import detect_local

            machine = detect_local(machine)
        overrides = {k: v for k, v in (self.settings.get("machine") or {}).items() if v is not None}
        name = self.settings.get("partition")
        # An unknown partition is left to `partition()`, which reports it (DT201).
        if name and (machine.partition(name) is not None or machine.rules.open_partitions):
            overrides["partition"] = name
        try:
            machine = apply_overrides(machine, overrides) if overrides else machine
        except OverrideError as exc:
            for problem in exc.found:
                first, *others = problem.keys or ("",)
                self.report(
                    "DT216",
                    problem.message,
                    *self.at_machine(first),
                    help=f"`dtec targets show {machine.name}` lists the profile's values",
                    related=[Related(self.bp.span(*self.at_machine(k)), f"`{k}` is set here") for k in others],
                )
            return None
        # Shared after the overrides: they say what the computer is, the share what a trial gets of it.
        return self.share(machine) if machine.scheduler == "local" and self.sharing > 1 else machine

    def at_machine(self, key: str) -> tuple[str, ...]:
        """Return the path of a target-block value that overrides the profile (`partition` or in `machine`)."""
        return ("target", self.target, "machine", key) if key in (self.settings.get("machine") or {}) else self.at_target(key)

    def share(self, machine: Machine) -> Machine:
        from dtec.machines.local import share

        shared = share(machine, self.sharing)
        whole, part = machine.node, shared.node
        gpus = f", {part.gpus} GPU{'s' if part.gpus != 1 else ''} of {whole.gpus}" if whole.gpus else ""
        if 0 < whole.gpus < self.sharing:
            gpus = f", one of the {whole.gpus} GPUs, shared, and {part.gpu_memory_gb or 0:g} GiB of its memory"
        self.decide(
            "computer share", f"1/{self.sharing}",
            f"the sweep runs {self.sharing} trials at once on this computer: each has {part.usable_cpus} of its "
            f"{whole.usable_cpus} CPUs, {part.requestable_memory_gb:g} of {whole.requestable_memory_gb:g} GiB{gpus}",
        )
        return shared

    def partition(self, machine: Machine) -> Partition | None:
        if machine.is_kube or not machine.partitions:
            return None
        # Some sites select the hardware by QoS (MareNostrum 5), others by partition.
        for key in ("qos", "partition"):
            found = machine.partition(self.settings[key]) if self.settings.get(key) else None
            if found is not None:
                return found
        name = self.settings.get("partition")
        default = machine.partition(None)
        if name is not None:
            names = [p.name for p in machine.partitions]
            self.report(
                "DT201",
                f"`{machine.name}` has no partition `{name}`",
                *self.at_target("partition"),
                help=did_you_mean(name, names) or "partitions: " + ", ".join(f"`{n}`" for n in names),
            )
        elif default is not None:
            self.decide("partition", default.name, f"the default partition of `{machine.name}`")
        return default

    def site_rules(self, machine: Machine) -> None:
        understood = TARGET_KEYS[machine.scheduler]
        for key, value in self.settings.items():
            if key != "machine" and value is not None and key not in understood:
                self.report(
                    "DT215",
                    f"`{key}` has no meaning for a `{machine.scheduler}` target",
                    "target", self.target, key,
                    help=f"remove `{key}` from the `{self.target}` target block",
                )
        problem = machine.account_problem(self.settings.get("account"))
        if problem is not None:
            missing = not self.settings.get("account")
            variable = self.target.upper().replace("-", "_") + "_ACCOUNT"
            self.report(
                "DT209" if missing else "DT211",
                problem,
                *self.at_target("account"),
                help=(f'add `account = env("{variable}")` to the target block' if self.declared else f'add `target "{self.target}" {{ account = env("{variable}") }}` to the blueprint')
                if missing
                else "check the project's account name",
            )
        if machine.scheduler == "slurm":
            self.environment(machine)
        if machine.kube is not None and machine.kube.image_required and not self.settings.get("image"):
            self.report(
                "DT210",
                f"`{machine.name}` runs containers but the target has no `image`",
                *self.at_target("image"),
                help='add `image = "registry.example.org/team/trainer:1.0"` with torch installed',
            )

    def tracking(self, machine: Machine, partition: Partition | None) -> None:
        """Warn (DT371) when the job logs to a tracking server its nodes cannot reach."""
        if machine.internet(partition):
            return
        for path, tracker in trackers(self.bp):
            uri = tracker.get("uri")
            if isinstance(uri, str) and is_remote(uri):
                self.report(
                    "DT371",
                    f"`{self.target}`'s compute nodes have no internet, and the run logs to `{uri}`",
                    *path, "uri",
                    help="leave `uri` out to log offline in the run folder, then push the run with `dtec export mlflow RUN --uri URI`",
                )

    def environment(self, machine: Machine) -> None:
        """Warn (DT217) when the job has no way to find PyTorch, or the launcher the profile needs."""
        software = machine.software
        # Only a profile that says what its site's users do knows that python lacks torch there.
        # A required container is reported (DT215) when missing; it is the environment there.
        if software.environment is None or software.container_required:
            return
        if self.settings.get("venv") or job_image(machine, self.settings):
            return
        modules = [*software.modules, *(self.settings.get("modules") or [])]
        if software.pip:
            needs = ", ".join(f"`{p}`" for p in software.pip)
            problem = f"jobs on `{machine.name}` need {needs} from pip, and the `{self.target}` target names no `venv` to hold it"
        elif not software.provides_torch(modules):
            problem = f"the `{self.target}` job loads no PyTorch: no `venv`, no `container`, and no module that provides it"
        else:
            return
        self.report(
            "DT217",
            problem,
            *self.at_target("modules" if "modules" in self.settings else "venv"),
            help=software.environment,
        )

    def gpus(self, strategy: dict, node: Node) -> int:
        asked = strategy.get("gpus_per_node", "all")
        if asked == "all":
            return node.gpus
        if not isinstance(asked, int):
            return 0
        if asked > 0 and node.gpus == 0:
            self.report(
                "DT206",
                f"`gpus_per_node = {asked}` but `{self.target}` has no GPUs",
                "strategy", "gpus_per_node",
                help="use `gpus_per_node = all` (or 0) and `procs_per_node` for CPU ranks",
            )
            return 0
        if asked > node.gpus:
            self.report(
                "DT204",
                f"`gpus_per_node = {asked}` but a `{self.target}` node has {node.gpus}",
                "strategy", "gpus_per_node",
                help=f"use at most {node.gpus}, or `all`",
            )
            return node.gpus
        return asked

    def limits(self, partition: Partition | None, nodes: int) -> None:
        if partition is None or partition.max_nodes is None:
            return
        where = [Related(self.bp.span(*self.at_target("partition")), f"partition `{partition.name}`")] if self.bp.span("target", self.target) else []
        if nodes > partition.max_nodes:
            self.report(
                "DT202",
                f"{nodes} nodes asked, `{partition.name}` allows at most {partition.max_nodes}",
                "strategy", "nodes",
                help=f"use at most {partition.max_nodes} node{'s' if partition.max_nodes != 1 else ''}, or another partition",
                related=where,
            )
        for i, count in enumerate(self.bp.get("scaling", "nodes") or []):
            if isinstance(count, int) and count > partition.max_nodes:
                self.report(
                    "DT202",
                    f"the scaling study asks for {count} nodes, `{partition.name}` allows at most {partition.max_nodes}",
                    "scaling", "nodes", i,
                    help=f"drop the counts above {partition.max_nodes}",
                    related=where,
                )

    def ranks_reason(self, node: Node, strategy: dict[str, Any], gpus: int, backend: str) -> str:
        """Say what each rank runs on and how ranks talk, as this machine names it."""
        nodes = strategy.get("nodes", 1)
        where = f"{nodes} node{'s' if nodes != 1 else ''}"
        if not gpus:
            return f"{where}, `procs_per_node` processes each on CPUs; backend {backend}"
        gpu = node.gpu_model or "GPU"
        platform = {"amd": "ROCm", "nvidia": "CUDA", "intel": "XPU"}.get(node.gpu_vendor, "GPU")
        # torch names the collective backend `nccl` on ROCm too, where the library is RCCL.
        library = "RCCL" if backend == "nccl" and node.gpu_vendor == "amd" else backend.upper()
        reason = f"one rank per {gpu} ({platform}) on {where}; backend {backend} ({library})"
        if self.bp.span("strategy", "procs_per_node") != self.bp.span("strategy"):
            reason += "; `procs_per_node` applies on machines without GPUs"
        return reason

    def walltime(self, machine: Machine, partition: Partition | None) -> int:
        asked = self.settings.get("walltime")
        limit = partition.max_walltime_s if partition is not None else None
        if asked is None:
            chosen = min(_DEFAULT_WALLTIME, limit) if limit else _DEFAULT_WALLTIME
            if machine.scheduler == "local":
                self.decide("walltime", "none", "no `walltime` in the target block: the run is not limited")
            else:
                self.decide("walltime", format_duration(chosen), "no `walltime` in the target block")
            return chosen
        if limit is not None and asked > limit:
            self.report(
                "DT203",
                f"walltime {format_duration(asked)} is above the {format_duration(limit)} limit of `{partition.name}`",
                *self.at_target("walltime"),
                help=f"ask for at most {format_duration(limit)}, and checkpoint to continue in a new job",
            )
        return int(asked)

    def precision(self, node: Node, device: str) -> str:
        asked = self.bp.get("train", "precision") or "auto"
        hardware = (node.gpu_model or "the GPU") if device == "cuda" else (node.cpu_model or "the CPU")
        if asked == "auto":
            chosen = "bf16" if device == "cuda" and node.bf16 else "fp32"
            why = f"{hardware} computes in bfloat16" if chosen == "bf16" else (
                "no GPU: fp32 is the fast and safe choice on CPUs" if device == "cpu" else f"{hardware} lacks bfloat16"
            )
            self.decide("precision", chosen, why)
            return chosen
        if asked == "bf16" and not node.bf16 or asked == "fp16" and (device == "cpu" or not node.fp16):
            self.report(
                "DT205",
                f"`{asked}` asked but {hardware} on `{self.target}` does not support it",
                "train", "precision",
                help="use `precision = auto` or `fp32`",
            )
        return asked

    def cpus_per_rank(self, node: Node, ranks_per_node: int, gpus: int) -> int:
        per_rank = node.usable_cpus // max(ranks_per_node, 1)
        if gpus and node.cpus_per_gpu:
            per_rank = min(per_rank, node.cpus_per_gpu)
        if per_rank < 1:
            cpus = f"{node.usable_cpus} CPU{'s' if node.usable_cpus != 1 else ''}"
            self.decide("CPUs per rank", 1, f"{ranks_per_node} ranks on {cpus}: they take turns, one thread each")
        return max(per_rank, 1)

    def workers(self, cpus_per_rank: int) -> int:
        data = self.data
        asked = self.bp.get("data", data, "workers", default="auto") if data else "auto"
        if asked == "auto":
            chosen = max(0, min(_MAX_AUTO_WORKERS, cpus_per_rank - 1))
            why = f"{cpus_per_rank} CPU{'s' if cpus_per_rank != 1 else ''} per rank, one kept for the training loop"
            if chosen < cpus_per_rank - 1:
                why += f"; at most {_MAX_AUTO_WORKERS} by default (more seldom load faster, and each holds memory)"
            self.decide("loader workers", chosen, why)
            return chosen
        if isinstance(asked, int) and asked >= cpus_per_rank and asked > 0:
            self.report(
                "DT213",
                f"{asked} loader workers per rank, but a rank has {cpus_per_rank} CPU{'s' if cpus_per_rank != 1 else ''} on `{self.target}`",
                "data", data, "workers",
                help=f"use `workers = auto` (here {max(0, cpus_per_rank - 1)})",
            )
        return asked if isinstance(asked, int) else 0

    def strategy(self, kind: str, zero: int | None, world: int, node: Node, device: str, precision: str):
        model = self.model
        arch = self.bp.get("model", model, "arch") if model else None
        source = self.bp.get("data", self.data, "source") if self.data else None
        shape = sample_shape(source, self.bp.get("data", self.data, "target")) if isinstance(source, dict) else None
        params = parameter_count(arch, shape) if isinstance(arch, dict) else None
        optimizer = (self.bp.get("train", "optimizer") or {}).get("fn", "adamw")
        if device == "cuda":
            limit = int((node.gpu_memory_gb or 0) * GIB * _GPU_HEADROOM) or None
        else:
            ranks = max(world // max(self.bp.get("strategy", "nodes") or 1, 1), 1)
            limit = int(node.requestable_memory_gb * GIB / ranks) or None
        activations = activation_bytes(arch, shape, self.batch, precision) if isinstance(arch, dict) else 0

        def memory(stage: int) -> Memory | None:
            return memory_per_rank(params, optimizer, activations, world, stage) if params is not None else None

        if kind == "deepspeed" and zero is None:
            zero = 1
            self.decide("ZeRO stage", 1, "`strategy.zero` not given; stage 1 shards the optimizer states")
        stages = {"single": 0, "ddp": 0, "fsdp": 3, "deepspeed": zero or 0}
        if kind == "auto":
            replicated = memory(0)
            if world == 1:
                kind, why = "single", "one rank"
            elif replicated is None or limit is None or replicated.total <= limit:
                kind, why = "ddp", "the model fits in each rank's memory" if replicated else "a user model of unknown size"
            else:
                kind, why = "fsdp", f"a full replica needs ~{replicated.total / GIB:.1f} GiB per rank, more than {limit / GIB:.1f} GiB"
            self.decide("strategy", kind, why)
            stages["auto"] = stages[kind]
        estimate = memory(stages.get(kind, 0))
        fully_sharded = memory(3)
        if fully_sharded is not None and limit is not None and fully_sharded.total > limit:
            self.report(
                "DT208",
                f"the model needs ~{fully_sharded.total / GIB:.1f} GiB per rank even fully sharded over {world} rank{'s' if world != 1 else ''}; a rank has {limit / GIB:.1f} GiB",
                "model", model, "arch",
                help="use more nodes, a smaller model or a smaller batch",
            )
        elif estimate is not None and limit is not None and estimate.total > limit:
            self.decide("memory", f"~{estimate.total / GIB:.1f} GiB per rank", f"above the {limit / GIB:.1f} GiB a rank has with `{kind}`; `fsdp` or `deepspeed` with `zero = 3` would fit")
        return kind, zero if kind == "deepspeed" else None, params, estimate, limit
