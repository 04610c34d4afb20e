"""The machine model: frozen dataclasses built from a profile, plus the flags they imply."""

from __future__ import annotations

import re
import shlex
import string
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

from dtec.units import format_duration, whole_units

KUBE_SCHEDULERS = ("kubernetes", "kubeflow", "interlink")
_EMPTY: Mapping[str, str] = MappingProxyType({})
# The placeholders each flag template may use (setting names as in a target's `machine { }`).
FLAG_PLACEHOLDERS = {"gpu_flag": ("n", "total"), "memory_flag": ("gb", "mb")}
_EXAMPLES = {"gpu_flag": "--gres=gpu:{n}", "memory_flag": "--mem={gb}G"}
# A flag goes on an `#SBATCH` line (and into interLink's annotation) as one option: a line break
# would end the comment and start shell code, and sbatch reads `\`, quotes and spaces itself.
_FLAG_UNSAFE = re.compile(r"[^A-Za-z0-9_@%+=:,./{}-]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class MachineError(Exception):
    """A profile that cannot be used: unreadable, not TOML, or against the schema."""

    def __init__(
        self,
        message: str,
        path: Path | None = None,
        problems: tuple[str, ...] = (),
        keys: tuple[str, ...] = (),
        lines: tuple[int, ...] = (),
    ):
        self.path = path
        self.message = message
        self.problems = problems or (message,)
        self.keys = keys  # the dotted profile key of each problem ("" for the document)
        self.lines = lines  # the line of each problem in `path`, when known
        super().__init__(f"{path}: {message}" if path else message)

    def located(self) -> list[str]:
        """Return every problem as `file:line: message` (the line where known)."""
        where = str(self.path) if self.path else "<profile>"
        lines = self.lines or (0,) * len(self.problems)
        return [f"{where}:{line}: {p}" if line else f"{where}: {p}" for p, line in zip(self.problems, lines)]


@dataclass(frozen=True)
class Node:
    """One compute node (for Kubernetes kinds: one pod); `_gb` fields hold Slurm's G, a GiB."""

    cpus: int
    memory_gb: float
    gpus: int
    usable_cpus: int = 0  # 0 until resolved: the loader sets it to cpus when a profile omits it
    threads_per_core: int | None = None
    cpu_model: str | None = None
    cpu_arch: str = "x86_64"
    count: int | None = None
    requestable_memory_gb: float = 0  # resolved like usable_cpus
    gpu_model: str | None = None
    gpu_vendor: str = "none"
    gpu_memory_gb: float | None = None
    bf16: bool = False
    fp16: bool = False
    tf32: bool = False
    fp8: bool = False
    cpus_per_gpu: int | None = None
    numa_domains: int | None = None
    numa_cpus: tuple[str, ...] = ()
    gpu_numa: tuple[int, ...] = ()
    interconnect: str | None = None

    def __post_init__(self) -> None:
        if not self.usable_cpus:
            object.__setattr__(self, "usable_cpus", self.cpus)
        if not self.requestable_memory_gb:
            object.__setattr__(self, "requestable_memory_gb", self.memory_gb)


@dataclass(frozen=True)
class Partition:
    """Where a job goes: a Slurm partition, a QoS on one, or the one pool of a cluster."""

    name: str
    node: Node
    slurm_partition: str | None = None  # None: emit no --partition (the account's default)
    qos: str | None = None
    min_nodes: int = 1
    max_nodes: int | None = None
    max_walltime_s: int | None = None
    whole_node: bool = False
    gpu: bool = False
    default: bool = False
    debug: bool = False
    max_jobs: int | None = None
    internet: bool | None = None  # None: the machine's rules.internet

    def flags(self) -> list[str]:
        """Return the sbatch flags that select this partition (`--partition`, `--qos`)."""
        out = [f"--partition={self.slurm_partition}"] if self.slurm_partition else []
        return out + ([f"--qos={self.qos}"] if self.qos else [])


@dataclass(frozen=True)
class GpuRequest:
    """How a job asks for GPUs."""

    flag: str = "--gres=gpu:{n}"
    required: bool = False


@dataclass(frozen=True)
class Launch:
    """How ranks start on the nodes."""

    pattern: str = "torchrun-per-node"
    rendezvous: str = "c10d"
    cpu_bind: str | None = None
    gpu_bind: str | None = None
    torchrun: str = "torchrun"
    torchrun_args: tuple[str, ...] = ()
    srun_args: tuple[str, ...] = ()
    master_addr_suffix: str = ""
    master_port: str = "29500"
    memory_flag: str = ""
    export_srun_cpus_per_task: bool = True
    hint_nomultithread: bool = False
    cpu_procs_per_node: int = 1


@dataclass(frozen=True)
class Comm:
    """torch.distributed backends and the environment collectives need."""

    backend: str = "nccl"
    cpu_backend: str = "gloo"
    env: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    offline_env: Mapping[str, str] = field(default_factory=lambda: _EMPTY)


@dataclass(frozen=True)
class Software:
    """Modules, setup lines and containers."""

    module_use: tuple[str, ...] = ()
    modules: tuple[str, ...] = ()
    setup: tuple[str, ...] = ()
    container_runtime: str | None = None
    container_command: str | None = None
    container_verb: str = "exec"
    container_options: tuple[str, ...] = ()
    container_required: bool = False
    image: str | None = None
    image_dir: str | None = None
    torch_modules: tuple[str, ...] = ()
    pip: tuple[str, ...] = ()
    environment: str | None = None

    def provides_torch(self, modules: tuple[str, ...] | list[str]) -> bool:
        """Return whether loading `modules` (`PyTorch/2.5`) loads one of `torch_modules`."""
        wanted = {m.lower() for m in self.torch_modules}
        return any(m.split("/")[0].lower() in wanted for m in modules)


@dataclass(frozen=True)
class Rules:
    """Site rules a blueprint must respect."""

    account_required: bool = False
    account_pattern: str | None = None
    account_hint: str | None = None
    internet: bool = False
    login_internet: bool = True
    exclusive: bool = False
    open_partitions: bool = False
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Kube:
    """Kubernetes-side settings (kubernetes, kubeflow and interlink schedulers)."""

    workload: str
    runtime: str = "torch-distributed"  # a TrainJob's ClusterTrainingRuntime
    namespace: str = "default"
    gpu_resource: str = "nvidia.com/gpu"
    container_name: str = "trainer"
    port: int = 29500
    shm_size_gb: float = 8
    image_required: bool = True
    image_prefix: str = ""
    node_selector: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    tolerations: tuple[Mapping[str, Any], ...] = ()
    annotations: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    pod_to_pod: bool = True
    limits_required: bool = False
    restart_policy: str = "Never"
    backoff_limit: int = 0
    ttl_seconds: int = 3600


@dataclass(frozen=True)
class Machine:
    """A machine profile, resolved: every default filled in, partitions carrying their nodes."""

    name: str
    title: str
    scheduler: str
    node: Node
    partitions: tuple[Partition, ...]
    gpu_request: GpuRequest = GpuRequest()
    launch: Launch = Launch()
    comm: Comm = Comm()
    software: Software = Software()
    rules: Rules = Rules()
    kube: Kube | None = None
    source: Path | None = field(default=None, compare=False)
    site: str | None = None
    docs: str | None = None
    aliases: tuple[str, ...] = ()

    def partition(self, name: str | None = None) -> Partition | None:
        """Return the named partition (or the one whose QoS has that name); None → the default."""
        if name is None:
            return next((p for p in self.partitions if p.default), None)
        exact = [p for p in self.partitions if p.name == name]
        by_qos = [p for p in self.partitions if p.qos == name]
        found = exact or by_qos
        return found[0] if len(found) == 1 else None

    @property
    def is_kube(self) -> bool:
        """Return whether jobs become Kubernetes objects."""
        return self.scheduler in KUBE_SCHEDULERS

    def backend(self, partition: Partition | None = None) -> str:
        """Return the torch.distributed backend: comm.backend with GPUs, cpu_backend without."""
        node = partition.node if partition is not None else self.node
        return self.comm.backend if node.gpus > 0 else self.comm.cpu_backend

    def internet(self, partition: Partition | None = None) -> bool:
        """Return whether compute nodes (of this partition) reach the internet."""
        if partition is not None and partition.internet is not None:
            return partition.internet
        return self.rules.internet

    def environment(self, partition: Partition | None = None) -> dict[str, str]:
        """Return the variables to export: comm.env, plus offline_env where there is no internet."""
        env = dict(self.comm.env)
        if not self.internet(partition):
            env.update(self.comm.offline_env)
        return env

    def gpu_flag(self, gpus_per_node: int, nodes: int = 1) -> str | None:
        """Return the GPU request flag (`--gpus-per-node=8`), or None for no GPUs or no flag."""
        if gpus_per_node <= 0 or not self.gpu_request.flag:
            return None
        return self.gpu_request.flag.format(n=gpus_per_node, total=gpus_per_node * nodes)

    def memory_flag(self, gib: float, most_gib: float | None = None) -> str | None:
        """Return the memory flag for `gib` GiB per node, or None where the site rejects one.

        The amount is rounded up to the flag's unit (`{gb}`: Slurm's G, a GiB; `{mb}`: its M),
        and never to 0, which asks Slurm for all of the node's memory; `most_gib` (what the node
        offers) caps the rounding.
        """
        if not self.launch.memory_flag:
            return None
        return self.launch.memory_flag.format(
            gb=whole_units(gib, 1, most_gib), mb=whole_units(gib, 1024, most_gib)
        )

    def account_problem(self, account: str | None) -> str | None:
        """Return why `account` will be refused (missing, wrong shape), or None if it looks fine."""
        example = self.rules.account_hint
        hint = f" (looks like {example if '`' in example else f'`{example}`'})" if example else ""
        if not account:
            return f"`{self.name}` needs an account{hint}" if self.rules.account_required else None
        pattern = self.rules.account_pattern
        if pattern and not re.fullmatch(pattern, account):
            return f"account `{account}` does not look like a `{self.name}` account{hint}"
        return None

    def to_dict(self) -> dict[str, Any]:
        """Return the machine as a profile document (JSON-able, schema-valid, stable key order)."""
        out: dict[str, Any] = {"format": 1, "name": self.name}
        if self.aliases:
            out["aliases"] = list(self.aliases)
        out["title"] = self.title
        for key in ("site", "scheduler", "docs"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        out["node"] = _plain(self.node)
        out["partitions"] = [_partition_dict(p, self.node) for p in self.partitions]
        for key in ("gpu_request", "launch", "comm", "software", "rules", "kube"):
            if getattr(self, key) is not None:
                out[key] = _plain(getattr(self, key))
        return out


def check_setting(key: str, value: str) -> str | None:
    """Return why `value` cannot be the launcher setting `key` (a `machine { }` key), else None.

    The one check of the values dtec expands or splits into a launcher, for profiles and for
    a target's overrides alike: `gpu_flag`, `memory_flag` (flag templates), and `torchrun`,
    `container_command` (command lines).
    """
    if key in FLAG_PLACEHOLDERS:
        return _flag_problem(key, value)
    if key in ("torchrun", "container_command"):
        return _command_problem(value)
    return None


def _flag_problem(key: str, value: str) -> str | None:
    if not value:
        return None  # no flag at all
    names = " or ".join(f"`{{{name}}}`" for name in FLAG_PLACEHOLDERS[key])
    bad = _FLAG_UNSAFE.search(value)
    if bad is not None:
        return (
            f"holds {_describe(bad.group())}, which an `#SBATCH` flag cannot carry; write one "
            f"option of letters, digits and `-_=:,./+@%`, with {names}"
        )
    try:
        parsed = list(string.Formatter().parse(value))
    except ValueError:
        return f"has an unmatched `{{` or `}}`; the placeholders are {names}"
    used = [(name, spec) for _, name, spec, _ in parsed if name is not None]
    for name, spec in used:
        if name not in FLAG_PLACEHOLDERS[key] or spec:  # `!` cannot occur: _FLAG_UNSAFE
            return f"`{{{name}{':' + spec if spec else ''}}}` is not a placeholder; use {names}"
    if not used:
        return f"needs {names}"
    if not value.startswith("-"):
        return f"must be an sbatch option starting with `-`, such as `{_EXAMPLES[key]}`"
    return None


def _command_problem(value: str) -> str | None:
    bad = _CONTROL.search(value)
    if bad:
        return f"holds {_describe(bad.group())}, which a command cannot carry"
    try:
        words = shlex.split(value)
    except ValueError as exc:  # "No closing quotation", "No escaped character"
        return f"is not a command line ({str(exc)[0].lower() + str(exc)[1:]})"
    return None if words else "names no command"


def _describe(char: str) -> str:
    if char == "\n":
        return "a line break"
    if _CONTROL.fullmatch(char):
        return f"the control character U+{ord(char):04X}"
    return "a space" if char == " " else f"`{char}`"


def _json(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _json(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_json(v) for v in value]
    return value


def _plain(obj: Any) -> dict[str, Any]:
    values = {f.name: getattr(obj, f.name) for f in fields(obj)}
    return {k: _json(v) for k, v in values.items() if v is not None}


def _partition_dict(p: Partition, base: Node) -> dict[str, Any]:
    out: dict[str, Any] = {"name": p.name}
    if p.slurm_partition != p.name:
        out["slurm_partition"] = p.slurm_partition or ""
    for f in fields(Partition):
        if f.name in ("name", "node", "slurm_partition"):
            continue
        value = getattr(p, f.name)
        if f.name == "max_walltime_s":
            if value is not None:
                out["max_walltime"] = format_duration(value)
        elif value is not None:
            out[f.name] = value
    diff = {k: v for k, v in _plain(p.node).items() if _plain(base).get(k) != v}
    if diff:
        out["node"] = diff
    return out


def node_replace(node: Node, **changes: Any) -> Node:
    """Return `node` with `changes`, keeping reserved cores and memory when the totals change."""
    if "cpus" in changes and "usable_cpus" not in changes:
        reserved = node.cpus - node.usable_cpus
        changes["usable_cpus"] = max(1, changes["cpus"] - reserved)
    if "memory_gb" in changes and "requestable_memory_gb" not in changes:
        reserved = node.memory_gb - node.requestable_memory_gb
        left = changes["memory_gb"] - reserved
        changes["requestable_memory_gb"] = left if left > 0 else changes["memory_gb"]
    return replace(node, **changes)
