"""Stand-ins for the command-line tools dtec calls (nvidia-smi, sbatch ...): small shell scripts."""

from __future__ import annotations

import stat
from pathlib import Path


def fake_tool(folder: Path, name: str, script: str) -> Path:
    """Write an executable `folder/name` that runs `script` with /bin/sh; return its path."""
    path = folder / name
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path
