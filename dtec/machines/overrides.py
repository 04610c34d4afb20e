"""Apply a blueprint's target block (`partition = ...`, `machine { ... }`) to a machine profile."""

from __future__ import annotations

import difflib
from dataclasses import replace
from types import MappingProxyType
from typing import Any, Callable, Mapping

from dtec.machines.model import Machine, MachineError, Partition, check_setting, node_replace
from dtec.machines.units import bytes_to_gb, parse_duration, parse_size

# The one list of keys a target's `machine { }` block (or the target itself) may set: key → type.
# Sizes arrive in bytes and durations in seconds; strings such as "16GB" or "1h" are also taken.
OVERRIDE_KEYS: dict[str, str] = {
    # where the job goes
    "partition": "str",
    "qos": "str",
    "max_nodes": "int",
    "max_walltime": "duration",
    "whole_node": "bool",
    # the node
    "cpus": "int",
    "usable_cpus": "int",
    "threads_per_core": "int",
    "memory": "size",
    "requestable_memory": "size",
    "gpus": "int",
    "gpu_model": "str",
    "gpu_vendor": "str",
    "gpu_memory": "size",
    "bf16": "bool",
    "fp16": "bool",
    "tf32": "bool",
    "fp8": "bool",
    "cpus_per_gpu": "int",
    # requests and launch
    "gpu_flag": "str",
    "memory_flag": "str",
    "launch": "str",
    "cpu_bind": "str",
    "torchrun": "str",
    "master_addr_suffix": "str",
    "master_port": "int",
    # communication and software
    "backend": "str",
    "env": "list[str]",
    "module_use": "list[str]",
    "modules": "list[str]",
    "container": "str",
    "image": "str",
    # site rules
    "internet": "bool",
    "exclusive": "bool",
    # Kubernetes kinds
    "namespace": "str",
    "gpu_resource": "str",
    "shm_size": "size",
}

_NODE = {
    "cpus": "cpus", "usable_cpus": "usable_cpus", "threads_per_core": "threads_per_core",
    "memory": "memory_gb", "requestable_memory": "requestable_memory_gb", "gpus": "gpus",
    "gpu_model": "gpu_model", "gpu_vendor": "gpu_vendor", "gpu_memory": "gpu_memory_gb",
    "bf16": "bf16", "fp16": "fp16", "tf32": "tf32", "fp8": "fp8", "cpus_per_gpu": "cpus_per_gpu",
}
_PARTITION = {"qos": "qos", "max_nodes": "max_nodes", "max_walltime": "max_walltime_s",
              "whole_node": "whole_node"}
# (section, field) for the rest; `env` is handled on its own (merged, not replaced).
_OTHER = {
    "gpu_flag": ("gpu_request", "flag"), "memory_flag": ("launch", "memory_flag"),
    "launch": ("launch", "pattern"), "cpu_bind": ("launch", "cpu_bind"),
    "torchrun": ("launch", "torchrun"), "master_addr_suffix": ("launch", "master_addr_suffix"),
    "master_port": ("launch", "master_port"), "backend": ("comm", "backend"),
    "module_use": ("software", "module_use"), "modules": ("software", "modules"),
    "container": ("software", "container_runtime"), "image": ("software", "image"),
    "internet": ("rules", "internet"), "exclusive": ("rules", "exclusive"),
    "namespace": ("kube", "namespace"), "gpu_resource": ("kube", "gpu_resource"),
    "shm_size": ("kube", "shm_size_gb"),
}
# Values the profile schema restricts; checked here too so a typo fails at compile time.
_CHOICES = {
    "gpu_vendor": ("nvidia", "amd", "intel", "none"),
    "launch": ("srun-per-gpu", "torchrun-per-node"),
    "backend": ("nccl", "gloo", "mpi"),
    "container": ("singularity", "apptainer", "enroot", "docker", "podman"),
}


def _as_int(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise ValueError(f"expected an integer, got {v!r}")
    if v < 0:
        raise ValueError(f"must not be negative, got {v}")
    return v


def _as_bool(v: Any) -> bool:
    if not isinstance(v, bool):
        raise ValueError(f"expected true or false, got {v!r}")
    return v


def _as_str(v: Any) -> str:
    if not isinstance(v, str):
        raise ValueError(f"expected a string, got {v!r}")
    return v


def _as_strings(v: Any) -> tuple[str, ...]:
    items = [v] if isinstance(v, str) else v
    if not isinstance(items, (list, tuple)) or not all(isinstance(i, str) for i in items):
        raise ValueError(f"expected a list of strings, got {v!r}")
    return tuple(items)


_CONVERT: dict[str, Callable[[Any], Any]] = {
    "int": _as_int,
    "bool": _as_bool,
    "str": _as_str,
    "list[str]": _as_strings,
    "size": lambda v: bytes_to_gb(parse_size(v)),
    "duration": parse_duration,
}


def normalize(overrides: Mapping[str, Any], where: Any = None) -> dict[str, Any]:
    """Return checked, converted values from a flat dict or a target dict with a `machine` map."""
    flat = {k: v for k, v in overrides.items() if k in OVERRIDE_KEYS}
    nested = overrides.get("machine") or {}
    for key in nested:
        if key not in OVERRIDE_KEYS:
            near = difflib.get_close_matches(key, list(OVERRIDE_KEYS), n=1)
            hint = f"; did you mean `{near[0]}`?" if near else ""
            raise MachineError(f"unknown machine setting `{key}`{hint}", where)
    out = {}
    for key, value in {**flat, **nested}.items():
        try:
            out[key] = _CONVERT[OVERRIDE_KEYS[key]](value)
        except ValueError as exc:
            raise MachineError(f"machine setting `{key}`: {exc}", where) from None
        if key in _CHOICES and out[key] not in _CHOICES[key]:
            choices = ", ".join(f"`{c}`" for c in _CHOICES[key])
            raise MachineError(f"machine setting `{key}`: expected one of {choices}", where)
    if "master_port" in out:
        out["master_port"] = str(out["master_port"])
    for key, value in out.items():
        problem = check_setting(key, value) if isinstance(value, str) else None
        if problem is not None:
            raise MachineError(f"machine setting `{key}`: {problem}", where)
    return out


# Linting a repository plans many blueprints onto the same few machines with the same target
# settings; entries hold their machine, so its id cannot be reused while the entry lives.
_MEMO: dict[tuple[int, Any], tuple[Machine, Machine]] = {}
_MEMO_SIZE = 256


def apply_overrides(machine: Machine, overrides: Mapping[str, Any]) -> Machine:
    """Return `machine` with target-block values applied; the chosen partition becomes default."""
    key = (id(machine), _frozen(overrides))
    hit = _MEMO.get(key)
    if hit is not None and hit[0] is machine:
        return hit[1]
    result = _apply(machine, overrides)
    if len(_MEMO) >= _MEMO_SIZE:
        _MEMO.clear()
    _MEMO[key] = (machine, result)
    return result


def _frozen(value: Any) -> Any:
    if isinstance(value, Mapping):
        return tuple(sorted((k, _frozen(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_frozen(v) for v in value)
    return type(value), value  # True == 1 == 1.0, but a profile may take one and refuse another


def _apply(machine: Machine, overrides: Mapping[str, Any]) -> Machine:
    from dtec.machines.load import cross_problems

    values = normalize(overrides, machine.source)
    node_changes = {_NODE[k]: v for k, v in values.items() if k in _NODE}
    node = node_replace(machine.node, **node_changes)
    parts = [_renode(p, machine, node_changes) for p in machine.partitions]
    chosen = _choose(machine, parts, values.get("partition"))
    by_qos = _by_qos(parts, chosen, values.get("qos"))
    if by_qos is not None:
        # A QoS the profile lists brings its own limits (Leonardo, MeluXina, MN5).
        chosen = by_qos
        values.pop("qos")
    part_changes = {_PARTITION[k]: v for k, v in values.items() if k in _PARTITION}
    if chosen is not None:
        index = next(i for i, p in enumerate(parts) if p.name == chosen.name)
        parts[index] = replace(chosen, **part_changes)
        parts = [replace(p, default=(i == index)) for i, p in enumerate(parts)]
    elif part_changes:
        raise MachineError(f"`{machine.name}` has no partition to apply limits to", machine.source)
    sections = {name: getattr(machine, name) for name in
                ("gpu_request", "launch", "comm", "software", "rules", "kube")}
    for key, (section, attr) in _OTHER.items():
        if key in values:
            if sections[section] is None:
                raise MachineError(f"machine setting `{key}` applies to Kubernetes kinds only",
                                   machine.source)
            sections[section] = replace(sections[section], **{attr: values[key]})
    if "env" in values:
        sections["comm"] = replace(sections["comm"], env=_merge_env(sections["comm"].env,
                                                                     values["env"], machine))
    result = replace(machine, node=node, partitions=tuple(parts), **sections)
    found = cross_problems(result)
    if found:
        raise MachineError(f"after the target's settings: {found[0]}", machine.source, tuple(found))
    return result


def _renode(p: Partition, machine: Machine, changes: dict[str, Any]) -> Partition:
    node = node_replace(p.node, **changes) if changes else p.node
    return replace(p, node=node, gpu=node.gpus > 0)


def _choose(machine: Machine, parts: list[Partition], name: str | None) -> Partition | None:
    if name is None:
        return next((p for p in parts if p.default), None)
    found = machine.partition(name)
    if found is not None:
        return next(p for p in parts if p.name == found.name)
    if not machine.rules.open_partitions:
        known = [p.name for p in parts]
        near = difflib.get_close_matches(name, known, n=1)
        hint = f"; did you mean `{near[0]}`?" if near else f"; known: {', '.join(known)}"
        raise MachineError(f"`{machine.name}` has no partition `{name}`{hint}", machine.source)
    # An open machine (generic Slurm, interLink) takes the site's partition on trust,
    # starting from the default entry's limits.
    base = next((p for p in parts if p.default), parts[0])
    new = replace(base, name=name, slurm_partition=name, qos=None, debug=False, max_jobs=None)
    parts.append(new)
    return new


def _by_qos(parts: list[Partition], chosen: Partition | None, qos: str | None) -> Partition | None:
    if qos is None:
        return None
    slurm = chosen.slurm_partition if chosen is not None else None
    found = [p for p in parts if p.qos == qos and (chosen is None or p.slurm_partition == slurm)]
    return found[0] if len(found) == 1 else None


def _merge_env(env: Mapping[str, str], items: tuple[str, ...], machine: Machine) -> Any:
    merged = dict(env)
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise MachineError(f"machine setting `env`: expected `NAME=value`, got `{item}`",
                               machine.source)
        merged[key] = value
    return MappingProxyType(merged)
