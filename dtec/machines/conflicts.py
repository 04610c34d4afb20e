"""What a profile's schema cannot say: conflicts between its fields, found on the built Machine."""

from __future__ import annotations

import re
from typing import NamedTuple

from dtec.machines.model import Machine, check_setting


class Conflict(NamedTuple):
    """A problem the schema cannot see, with the profile fields it involves (`node.cpus`)."""

    message: str
    fields: tuple[str, ...] = ()


def cross_problems(m: Machine) -> list[Conflict]:
    """Return what the schema cannot say: one default, unique names, cores that add up, flags."""
    out = []
    names = [p.name for p in m.partitions]
    for name in sorted({n for n in names if names.count(n) > 1}):
        out.append(Conflict(f"partitions: `{name}` is listed twice"))
    if sum(p.default for p in m.partitions) > 1:
        out.append(Conflict("partitions: more than one is marked `default`"))
    for p in m.partitions:
        where = "node" if p.node == m.node else f"partitions `{p.name}` node"
        n = p.node
        if n.usable_cpus > n.cpus:
            out.append(Conflict(f"{where}: usable_cpus {n.usable_cpus} exceeds cpus {n.cpus}",
                                ("node.usable_cpus", "node.cpus")))
        if n.requestable_memory_gb > n.memory_gb:
            out.append(Conflict(
                f"{where}: requestable_memory_gb {n.requestable_memory_gb} exceeds memory_gb "
                f"{n.memory_gb}", ("node.requestable_memory_gb", "node.memory_gb")))
        if n.cpus_per_gpu and n.gpus and n.cpus_per_gpu * n.gpus > n.usable_cpus:
            out.append(Conflict(
                f"{where}: cpus_per_gpu {n.cpus_per_gpu} × {n.gpus} GPUs exceeds "
                f"{n.usable_cpus} usable cpus",
                ("node.cpus_per_gpu", "node.gpus", "node.usable_cpus"),
            ))
        if p.gpu != (n.gpus > 0):
            flag = str(p.gpu).lower()
            out.append(Conflict(f"partitions `{p.name}`: gpu = {flag} but the node has {n.gpus} GPUs",
                                ("partition.gpu", "node.gpus")))
        if p.max_nodes is not None and p.min_nodes > p.max_nodes:
            out.append(Conflict(f"partitions `{p.name}`: min_nodes exceeds max_nodes",
                                ("partition.min_nodes", "partition.max_nodes")))
    launcher = {
        "gpu_request.flag": ("gpu_flag", m.gpu_request.flag),
        "launch.memory_flag": ("memory_flag", m.launch.memory_flag),
        "launch.torchrun": ("torchrun", m.launch.torchrun),
        "software.container_command": ("container_command", m.software.container_command),
    }
    for where, (key, value) in launcher.items():
        problem = check_setting(key, value) if value is not None else None
        if problem is not None:
            out.append(Conflict(f"{where}: {problem}", (where,)))
    if m.rules.account_pattern:
        try:
            re.compile(m.rules.account_pattern)
        except re.error as exc:
            out.append(Conflict(f"rules.account_pattern: not a regular expression ({exc})",
                                ("rules.account_pattern",)))
    return list(dict.fromkeys(out))  # partitions sharing the machine's node share its problems
