"""What completion and hover say about the vocabulary and the machines, in the words of docs/language.md."""

from __future__ import annotations

from dtec.lang import types as t
from dtec.lang.reference import default_text, function_lines, signature
from dtec.machines import Machine, Partition
from dtec.units import DURATIONS, SIZES, format_duration


def _default(field: t.Field) -> str:
    shown = default_text(field)
    return "required" if field.required else "no default" if shown == "—" else f"default {shown}"


def field_detail(field: t.Field) -> str:
    """Return a key's or argument's type and default on one line."""
    return f"{field.type.describe()} ({_default(field)})"


def field_markdown(name: str, field: t.Field) -> str:
    """Return a key's or argument's documentation: its type, its default, its meaning."""
    return f"`{name}`: {field.type.describe()} ({_default(field)})\n\n{field.doc}"


def function_markdown(name: str, function: t.Function) -> str:
    """Return a function's documentation: signature, doc and each argument."""
    return "\n".join(function_lines(name, function))


def function_detail(name: str, function: t.Function) -> str:
    """Return a function's signature."""
    return signature(name, function)


def block_detail(kind: str, spec: t.BlockSpec) -> str:
    """Return how a block is written: `data "name" { … }`."""
    return f'{kind} "{spec.label.split()[-1]}" {{ … }}' if spec.label else f"{kind} {{ … }}"


def block_markdown(kind: str, spec: t.BlockSpec) -> str:
    """Return a block's documentation: how it is written, its doc and its keys."""
    keys = ", ".join(f"`{k}`" for k in spec.fields)
    return f"`{block_detail(kind, spec)}`\n\n{spec.doc}" + (f"\n\nKeys: {keys}" if keys else "")


def _gib(value: float | None) -> str:
    return f"{value:g} GiB" if value else "?"


def machine_line(machine: Machine) -> str:
    """Return a machine in one line: title, scheduler and GPUs per node."""
    node = machine.node
    gpus = f"{node.gpus} × {node.gpu_model or 'GPU'} per node" if node.gpus else "no GPUs"
    return f"{machine.title} ({machine.scheduler}): {gpus}"


def partition_line(partition: Partition) -> str:
    """Return a partition's limits in one line."""
    node = partition.node
    limits = [f"{node.gpus} GPUs/node" if node.gpus else "CPU only", f"{node.usable_cpus} cores", _gib(node.memory_gb)]
    if partition.max_nodes is not None:
        limits.append(f"at most {partition.max_nodes} nodes")
    if partition.max_walltime_s is not None:
        limits.append(f"walltime ≤ {format_duration(partition.max_walltime_s)}")
    if partition.qos:
        limits.append(f"QoS `{partition.qos}`")
    notes = [word for word, on in (("default", partition.default), ("debug", partition.debug), ("whole nodes", partition.whole_node)) if on]
    return ", ".join(limits) + (f" ({', '.join(notes)})" if notes else "")


def machine_markdown(machine: Machine) -> str:
    """Return a machine's summary: GPUs, memory, and every partition with its limits."""
    node = machine.node
    gpu = f"{node.gpus} × {node.gpu_model or 'GPU'}" + (f" ({_gib(node.gpu_memory_gb)} each)" if node.gpu_memory_gb else "")
    lines = [
        f"**{machine.name}**: {machine.title} ({machine.scheduler})",
        "",
        f"- node: {gpu if node.gpus else 'no GPUs'}, {node.usable_cpus} cores, {_gib(node.memory_gb)} memory",
        "- partitions:",
        *(f"  - `{p.name}`: {partition_line(p)}" for p in machine.partitions),
    ]
    if machine.docs:
        lines.append(f"\n{machine.docs}")
    return "\n".join(lines)


def unit_detail(unit: str) -> str:
    """Return what a unit stands for: `= 60 s`, `= 1,073,741,824 bytes`."""
    if unit in DURATIONS:
        return f"duration: {DURATIONS[unit]:g} s"
    return f"size: {SIZES[unit]:,} bytes"
