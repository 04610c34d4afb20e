"""What the computer dtec runs on offers it, measured cheaply: the one CPU count."""

from __future__ import annotations

import os


def cpu_count() -> int:
    """Return the CPUs this process may run on (its affinity, where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1
