"""Apply a blueprint's target block (`partition = ...`, `machine { ... }`) to a machine profile."""

from __future__ import annotations

from dataclasses import replace
from types import MappingProxyType
from typing import Any, Callable, Mapping, NamedTuple

from dtec.lang.machine_keys import OVERRIDE_KEYS, UNUSED_KEYS
from dtec.machines.check import field_problems
from dtec.machines.conflicts import Conflict, cross_problems
from dtec.machines.model import Machine, MachineError, Partition, check_setting, node_replace
from dtec.suggest import did_you_mean
from dtec.units import bytes_to_gib, parse_duration, parse_size

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
# Where each key lands in the profile schema ($defs name, field): its values are checked there.
_SECTION_DEFS = {"gpu_request": "gpuRequest", "launch": "launch", "comm": "comm",
                 "software": "software", "rules": "rules", "kube": "kube"}
SCHEMA_FIELDS: dict[str, tuple[str, str]] = {
    **{key: ("nodeFields", attr) for key, attr in _NODE.items()},
    **{key: ("partition", "max_walltime" if key == "max_walltime" else attr)
       for key, attr in _PARTITION.items()},
    **{key: (_SECTION_DEFS[section], attr) for key, (section, attr) in _OTHER.items()},
}
# Profile fields (`node.usable_cpus`) by the key that sets them, to blame a conflict on a key;
# a node's usable cores and requestable memory follow its totals (node_replace).
_FIELDS = {
    **{key: (f"node.{attr}",) for key, attr in _NODE.items()},
    **{key: (f"partition.{attr}",) for key, attr in _PARTITION.items()},
    **{key: (f"{section}.{attr}",) for key, (section, attr) in _OTHER.items()},
    "cpus": ("node.cpus", "node.usable_cpus"),
    "memory": ("node.memory_gb", "node.requestable_memory_gb"),
}


class Problem(NamedTuple):
    """Why target-block values cannot apply to a machine, and the keys at fault (first: blame)."""

    message: str
    keys: tuple[str, ...]


class OverrideError(MachineError):
    """A target block whose values the machine cannot take; `found` names the keys at fault."""

    def __init__(self, found: list[Problem]):
        self.found = tuple(found)
        super().__init__(found[0].message, None, tuple(p.message for p in found))


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
    "size": lambda v: bytes_to_gib(parse_size(v)),
    "duration": parse_duration,
}


def normalize(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Return checked, converted values from a flat dict or a target dict with a `machine` map."""
    values, found = _normalize(overrides)
    if found:
        raise OverrideError(found)
    return values


def _normalize(overrides: Mapping[str, Any]) -> tuple[dict[str, Any], list[Problem]]:
    flat = {k: v for k, v in overrides.items() if k in OVERRIDE_KEYS}
    nested = overrides.get("machine") or {}
    found = []
    for key in nested:
        if key not in OVERRIDE_KEYS:
            near = did_you_mean(key, OVERRIDE_KEYS)
            hint = f"; {near}" if near else ""
            found.append(Problem(f"unknown machine setting `{key}`{hint}", (key,)))
    out = {}
    for key, value in {**flat, **nested}.items():
        if key not in OVERRIDE_KEYS:
            continue
        try:
            out[key] = _CONVERT[OVERRIDE_KEYS[key]](value)
        except ValueError as exc:
            found.append(Problem(f"machine setting `{key}`: {exc}", (key,)))
            continue
        # A launcher setting's own check says more than the schema's pattern for it.
        setting = check_setting(key, out[key]) if isinstance(out[key], str) else None
        if setting is not None:
            messages = [setting]
        else:
            messages = field_problems(out[key], *SCHEMA_FIELDS[key]) if key in SCHEMA_FIELDS else []
        found += [Problem(f"machine setting `{key}`: {message}", (key,)) for message in messages]
    if "master_port" in out:
        out["master_port"] = str(out["master_port"])
    return out, found


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
    values = normalize(overrides)
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
        keys = tuple(k for k in values if k in _PARTITION)
        raise OverrideError([Problem(f"`{machine.name}` has no partition to apply limits to", keys)])
    sections = {name: getattr(machine, name) for name in
                ("gpu_request", "launch", "comm", "software", "rules", "kube")}
    found = []
    for key, (section, attr) in _OTHER.items():
        if key not in values:
            continue
        if key in UNUSED_KEYS.get(machine.scheduler, ()):
            found.append(Problem(f"machine setting `{key}` does nothing on `{machine.name}`: "
                                 f"its {machine.scheduler} launcher does not use it", (key,)))
            continue
        if sections[section] is None:
            found.append(Problem(f"machine setting `{key}` applies to Kubernetes kinds only, "
                                 f"and `{machine.name}` is a {machine.scheduler} machine", (key,)))
            continue
        sections[section] = replace(sections[section], **{attr: values[key]})
    if "env" in values:
        env = _merge_env(sections["comm"].env, values["env"], found)
        sections["comm"] = replace(sections["comm"], env=env)
    if found:
        raise OverrideError(found)
    result = replace(machine, node=node, partitions=tuple(parts), **sections)
    conflicts = [_blame(c, values) for c in cross_problems(result)]
    if conflicts:
        raise OverrideError(conflicts)
    return result


def _blame(conflict: Conflict, values: Mapping[str, Any]) -> Problem:
    """Return a conflict the target's values brought about, blaming the keys that set its fields."""
    keys = tuple(k for k in values if set(_FIELDS.get(k, ())) & set(conflict.fields))
    return Problem(f"after the target's settings, {conflict.message}", keys)


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
        near = did_you_mean(name, known)
        hint = f"; {near}" if near else f"; known: {', '.join(known)}"
        raise OverrideError([Problem(f"`{machine.name}` has no partition `{name}`{hint}", ("partition",))])
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


def _merge_env(env: Mapping[str, str], items: tuple[str, ...], found: list[Problem]) -> Any:
    merged = dict(env)
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            found.append(Problem(f"machine setting `env`: expected `NAME=value`, got `{item}`", ("env",)))
            continue
        for message in field_problems({key: value}, "comm", "env"):
            found.append(Problem(f"machine setting `env`: {message}", ("env",)))
        merged[key] = value
    return MappingProxyType(merged)
