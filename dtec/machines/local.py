"""Fill the `local` profile with this computer's CPUs, memory and GPUs, without importing torch."""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

from dtec.host import cpu_count
from dtec.machines.model import Machine, Node, node_replace
from dtec.units import GIB

_TIMEOUT_S = 10


def detect_local(base: Machine | None = None) -> Machine:
    """Return the `local` profile (or `base`) with the node as found on this computer."""
    if base is None:
        from dtec.machines.load import load_machines

        base = load_machines().get("local")
        if base is None:
            raise LookupError("the `local` machine profile is missing")
    node = detect_node(base.node)
    parts = tuple(replace(p, node=node, gpu=node.gpus > 0) for p in base.partitions)
    return replace(base, node=node, partitions=parts)


def share(machine: Machine, ways: int) -> Machine:
    """Return the local `machine` as one of `ways` sweep trials running on it at once sees it.

    Each gets its part of the CPUs and memory, and its own GPUs (`trial_devices` picks them),
    rounded down; with fewer GPUs than trials each has one, shared with others, and its part of
    that GPU's memory.
    """
    def part(node: Node) -> Node:
        changes: dict = {"usable_cpus": max(1, node.usable_cpus // ways),
                         "requestable_memory_gb": node.requestable_memory_gb / ways}
        if node.gpus:
            changes["gpus"] = max(1, node.gpus // ways)
            if node.gpu_memory_gb and ways > node.gpus:
                changes["gpu_memory_gb"] = node.gpu_memory_gb / -(-ways // node.gpus)  # trials on the busiest GPU
        return replace(node, **changes)

    return replace(machine, node=part(machine.node), partitions=tuple(replace(p, node=part(p.node)) for p in machine.partitions))


def trial_devices(worker: int, ways: int) -> dict[str, str]:
    """The variables that give sweep worker `worker` (of `ways`) its own GPUs of this computer; {} without GPUs."""
    found = _nvidia() or _amd()
    if not found:
        return {}
    variable = "CUDA_VISIBLE_DEVICES" if found["gpu_vendor"] == "nvidia" else "HIP_VISIBLE_DEVICES"
    devices = (_visible_ids(variable) or [str(i) for i in range(found["gpus"])])[:found["gpus"]]
    each = max(1, len(devices) // ways)
    first = worker * each % len(devices)
    return {variable: ",".join(devices[first:first + each])}


def detect_node(base: Node) -> Node:
    """Return `base` with CPUs, memory, architecture and GPUs measured here."""
    cpus = cpu_count()
    memory = _memory_gib() or base.memory_gb
    changes: dict = {"cpus": cpus, "usable_cpus": cpus, "memory_gb": memory,
                     "requestable_memory_gb": memory, "cpu_arch": _arch(base.cpu_arch),
                     "cpu_model": _cpu_model()}
    flags = _cpu_flags()
    changes["bf16"] = bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})
    gpus = _nvidia() or _amd()
    if gpus:
        changes.update(gpus)
    else:
        changes.update(gpus=0, gpu_model=None, gpu_vendor="none", gpu_memory_gb=None,
                       fp16=False, tf32=False, fp8=False)
    return node_replace(base, **changes)


def _memory_gib() -> float | None:
    total = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                total = int(line.split()[1]) * 1024
                break
    except (OSError, ValueError, IndexError):
        return None
    # A container's limit, when lower than the machine's memory, is what a job can use.
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit.isdigit() and total is not None:
            total = min(total, int(limit))
    except OSError:
        pass
    return round(total / GIB, 1) if total else None


def _arch(default: str) -> str:
    machine = platform.machine().lower()
    return {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64",
            "ppc64le": "ppc64le"}.get(machine, default)


def _cpuinfo() -> list[str]:
    try:
        return Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return []


def _cpu_model() -> str | None:
    for line in _cpuinfo():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip() or None
    return None


def _cpu_flags() -> set[str]:
    for line in _cpuinfo():
        if line.startswith(("flags", "Features")):
            return set(line.split(":", 1)[1].split())
    return set()


def _run(*argv: str) -> str | None:
    if shutil.which(argv[0]) is None:
        return None
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=_TIMEOUT_S, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def _visible(found: int, variable: str) -> int:
    """Limit a GPU count by CUDA_VISIBLE_DEVICES-style variables, as a job would see it."""
    ids = _visible_ids(variable)
    return found if ids is None else min(found, len(ids))


def _visible_ids(variable: str) -> list[str] | None:
    """The devices a CUDA_VISIBLE_DEVICES-style variable lists, up to the first invalid one (the
    runtimes ignore the rest); None when it is not set."""
    value = os.environ.get(variable)
    if value is None:
        return None
    ids = []
    for entry in (v.strip() for v in value.split(",")):
        if not entry or entry.startswith("-"):
            break
        ids.append(entry)
    return ids


def _nvidia() -> dict | None:
    out = _run("nvidia-smi", "--query-gpu=name,memory.total,compute_cap",
               "--format=csv,noheader,nounits")
    lines = [line for line in (out or "").splitlines() if line.strip()]
    rows = [[c.strip() for c in line.split(",")] for line in lines]
    if not rows:
        listing = _run("nvidia-smi", "-L") or ""
        names = re.findall(r"^GPU \d+: (.+?)(?: \(UUID.*)?$", listing, re.M)
        rows = [[name, "", ""] for name in names]
    count = _visible(len(rows), "CUDA_VISIBLE_DEVICES")
    if not count:
        return None
    name, memory, capability = (rows[0] + ["", "", ""])[:3]
    major = _float(capability)
    ampere = major is not None and major >= 8.0
    return {
        "gpus": count, "gpu_model": name or None, "gpu_vendor": "nvidia",
        "gpu_memory_gb": round(_float(memory) / 1024, 1) if _float(memory) else None,
        # bf16 and TF32 arrive with Ampere (8.0); fp8 with Hopper/Ada (8.9).
        "bf16": ampere, "fp16": True, "tf32": ampere,
        "fp8": major is not None and major >= 8.9,
    }


def _amd() -> dict | None:
    out = _run("rocm-smi", "--showproductname") or ""
    ids = sorted(set(re.findall(r"GPU\[(\d+)\]", out)))
    count = _visible(_visible(len(ids), "ROCR_VISIBLE_DEVICES"), "HIP_VISIBLE_DEVICES")
    if not count:
        return None
    model = re.search(r"Card (?:series|SKU)\s*:\s*(.+)", out)
    # Every Instinct GPU ROCm supports for PyTorch training (MI100 on) has bf16 and fp16.
    return {"gpus": count, "gpu_model": model.group(1).strip() if model else None,
            "gpu_vendor": "amd", "gpu_memory_gb": None, "bf16": True, "fp16": True,
            "tf32": False, "fp8": False}


def _float(text: str) -> float | None:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None
