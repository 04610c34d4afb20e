"""Machine profiles: TOML data in backends/machines/, loaded into frozen dataclasses (stdlib only)."""

from dtec.machines.load import Catalog, from_dict, load_file, load_machines, summary_rows
from dtec.machines.local import detect_local
from dtec.machines.model import (
    Comm, GpuRequest, Kube, Launch, Machine, MachineError, Node, Partition, Rules, Software,
)
from dtec.machines.overrides import OVERRIDE_KEYS

__all__ = [
    "OVERRIDE_KEYS", "Catalog", "Comm", "GpuRequest", "Kube", "Launch", "Machine", "MachineError",
    "Node", "Partition", "Rules", "Software", "detect_local", "from_dict", "load_file",
    "load_machines", "summary_rows",
]
