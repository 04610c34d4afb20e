"""Machine profiles: TOML files in backends/machines/ read into frozen dataclasses (stdlib only)."""

from __future__ import annotations

from dtec.lang.machine_keys import OVERRIDE_KEYS
from dtec.machines.load import Catalog, from_dict, load_file, load_machines, summary_rows
from dtec.machines.model import (
    Comm, GpuRequest, Kube, Launch, Machine, MachineError, Node, Partition, Rules, Software,
)

__all__ = [
    "OVERRIDE_KEYS", "Catalog", "Comm", "GpuRequest", "Kube", "Launch", "Machine", "MachineError",
    "Node", "Partition", "Rules", "Software", "detect_local", "from_dict", "load_file",
    "load_machines", "summary_rows",
]


def detect_local(base: Machine | None = None) -> Machine:
    """Return the `local` profile (or `base`) filled with this computer's CPUs, memory and GPUs."""
    # Imported here so that `import dtec.machines` (the lint path) skips subprocess and platform.
    from dtec.machines.local import detect_local as detect

    return detect(base)
