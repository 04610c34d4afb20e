"""Durations and sizes as profiles and blueprints write them (`2d`, `30min`, `16GB`)."""

from __future__ import annotations

import math
import re

# "m" is left out on purpose: minutes or months is a guess dtec should not make.
DURATION_UNITS = {"s": 1, "min": 60, "h": 3600, "d": 86400}
DURATION_PATTERN = r"^[0-9]+(s|min|h|d)$"

# SI letters are powers of 1000 and `i` forms powers of 1024, as in Kubernetes quantities.
SIZE_UNITS = {
    "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
    "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40,
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40,
}
GIB = 2**30

_DURATION = re.compile(DURATION_PATTERN)
_SIZE = re.compile(r"^([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)$")


def parse_duration(value: int | str) -> int:
    """Return seconds for `7200`, `"2h"`, `"30min"` or `"2d"`; raise ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration, got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"a duration cannot be negative: {value}")
        return value
    if isinstance(value, str) and _DURATION.match(value.strip()):
        text = value.strip()
        unit = text.lstrip("0123456789")
        return int(text[: len(text) - len(unit)]) * DURATION_UNITS[unit]
    raise ValueError(f"expected a duration such as `30min`, `24h`, `2d` or seconds, got {value!r}")


def format_duration(seconds: int) -> str:
    """Return the shortest exact form of a duration: 172800 → `2d`, 1800 → `30min`."""
    for unit in ("d", "h", "min"):
        size = DURATION_UNITS[unit]
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def parse_size(value: int | float | str) -> int:
    """Return bytes for an int (already bytes) or a string such as `16GB`, `480GiB`, `512Mi`."""
    if isinstance(value, bool):
        raise ValueError(f"expected a size, got {value!r}")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError(f"a size cannot be negative: {value}")
        return int(value)
    match = _SIZE.match(value.strip()) if isinstance(value, str) else None
    if match and match.group(2) in SIZE_UNITS:
        return int(float(match.group(1)) * SIZE_UNITS[match.group(2)])
    raise ValueError(f"expected a size such as `16GB` or `480GiB` or bytes, got {value!r}")


def bytes_to_gb(size: int) -> float | int:
    """Return a byte count in the profiles' GB, which is Slurm's G (2**30 bytes)."""
    gb = round(size / GIB, 3) or size / GIB  # a size under a megabyte stays positive
    return int(gb) if gb == int(gb) else gb


def whole_units(gb: float, per_gb: int, most_gb: float | None = None) -> int:
    """Return `gb` in units of 1/`per_gb` GB rounded up: at least 1, at most `most_gb`'s units."""
    # Rounded first: a share of a node's memory carries float noise (160.00000000000003).
    units = max(1, math.ceil(round(gb * per_gb, 6)))
    if most_gb is not None:
        units = min(units, max(1, math.floor(round(most_gb * per_gb, 6))))
    return units
