"""The energy Slurm recorded for a run's jobs: `sacct`'s ConsumedEnergyRaw (docs/scaling.md).

Used for a study's point only where train.py measured no energy itself (NVML, amdsmi, RAPL
cover exactly the measured window; Slurm's number covers whole jobs). Where Slurm recorded
nothing, the record says why: never a made-up number.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable

Tool = Callable[[list[str]], subprocess.CompletedProcess]


def sacct_joules(job: str, text: str) -> float | None:
    """The job allocation's ConsumedEnergyRaw (joules) in `sacct -P -n` output; None: not recorded."""
    for line in text.splitlines():
        fields = line.split("|")
        if fields[0] == job and len(fields) > 1:
            try:
                joules = float(fields[1])
            except ValueError:
                return None
            return joules if joules > 0 else None
    return None


def energy_plugin(tool: Tool) -> str | None:
    """Slurm's AcctGatherEnergyType (`scontrol show config`), or None where it cannot be read."""
    try:
        shown = tool(["scontrol", "show", "config"])
    except (OSError, subprocess.SubprocessError):
        return None
    for line in shown.stdout.splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "AcctGatherEnergyType":
            return value.strip()
    return None


def _why(tool: Tool) -> str:
    plugin = energy_plugin(tool)
    if plugin is not None and plugin.endswith("/none"):
        return f"Slurm's energy accounting is off here (AcctGatherEnergyType = {plugin})"
    return "the nodes have no energy sensor Slurm reads, or the site does not store energy"


def slurm_energy(jobs: list[str], tool: Tool) -> dict:
    """The joules Slurm recorded for `jobs` together (a resumed run's launches), or why there are none."""
    total = 0.0
    for job in jobs:
        try:
            found = tool(["sacct", "-j", job, "--format=JobID,ConsumedEnergyRaw", "-P", "-n"])
        except FileNotFoundError:
            return {"available": False, "reason": "sacct is not on the PATH here"}
        except (OSError, subprocess.SubprocessError) as exc:
            return {"available": False, "reason": f"sacct failed: {exc}"}
        if found.returncode != 0:
            said = (found.stderr or found.stdout).strip().splitlines()
            return {"available": False, "reason": f"sacct: {said[0] if said else f'exit code {found.returncode}'}; {_why(tool)}"}
        joules = sacct_joules(job, found.stdout)
        if joules is None:
            return {"available": False, "reason": f"Slurm recorded no energy for job {job}: {_why(tool)}"}
        total += joules
    return {"available": True, "joules": total, "jobs": jobs,
            "method": "Slurm ConsumedEnergy (sacct) of the whole job" + ("s" if len(jobs) > 1 else "")}
