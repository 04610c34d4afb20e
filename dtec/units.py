"""Units of numbers, one table for blueprints and machine profiles: durations, sizes in bytes."""

from __future__ import annotations

import math
import re

MIB = 2**20
GIB = 2**30

# "m" is left out on purpose: minutes, months or Kubernetes' milli is a guess dtec should not
# make; so are a bare "G" or "M" (Slurm's G is a GiB, Kubernetes' G is 10**9 bytes).
DURATIONS: dict[str, int | float] = {"ms": 0.001, "s": 1, "min": 60, "h": 3600, "d": 86400}

# SI letters are powers of 1000; `i` forms powers of 1024, with or without Kubernetes' B-less
# spelling (`512Gi` is `512GiB`).
SIZES: dict[str, int] = {
    "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12, "PB": 10**15,
    "KiB": 2**10, "MiB": MIB, "GiB": GIB, "TiB": 2**40, "PiB": 2**50,
    "Ki": 2**10, "Mi": MIB, "Gi": GIB, "Ti": 2**40, "Pi": 2**50,
}

UNITS = (*DURATIONS, *SIZES)

# A profile's duration: a whole number with a unit; `ms` takes whole seconds' worth (`2000ms`).
DURATION_PATTERN = f"^[0-9]+({'|'.join(DURATIONS)})$"
_DURATION = re.compile(DURATION_PATTERN)
_SIZE = re.compile(r"^([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)$")


def parse_duration(value: int | str) -> int:
    """Return whole seconds for `7200`, `"2h"`, `"30min"` or `"2d"`; raise ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration, got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"a duration cannot be negative: {value}")
        return value
    match = _DURATION.match(value.strip()) if isinstance(value, str) else None
    if match is None:
        raise ValueError(
            f"expected a duration such as `30min`, `24h`, `2d` or seconds, got {value!r}"
        )
    unit = match.group(1)
    count = int(value.strip()[: -len(unit)])
    if unit == "ms":  # exact where a float product is not: 1500ms is not whole seconds
        if count % 1000:
            raise ValueError(f"durations are whole seconds, got {value!r}")
        return count // 1000
    return count * int(DURATIONS[unit])


def format_duration(seconds: int) -> str:
    """Return the shortest exact form of a duration: 172800 → `2d`, 1800 → `30min`."""
    for unit in ("d", "h", "min"):
        size = int(DURATIONS[unit])
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def parse_size(value: int | float | str) -> int:
    """Return bytes for an int (already bytes) or a string such as `16GB`, `480GiB`, `512Gi`."""
    if isinstance(value, bool):
        raise ValueError(f"expected a size, got {value!r}")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError(f"a size cannot be negative: {value}")
        return int(value)
    match = _SIZE.match(value.strip()) if isinstance(value, str) else None
    if match and match.group(2) in SIZES:
        return int(float(match.group(1)) * SIZES[match.group(2)])
    raise ValueError(f"expected a size such as `16GB` or `480GiB` or bytes, got {value!r}")


def bytes_to_gib(size: int) -> float | int:
    """Return a byte count in GiB, the profiles' GB (Slurm's G), to three decimals."""
    gib = round(size / GIB, 3) or size / GIB  # a size under a megabyte stays positive
    return int(gib) if gib == int(gib) else gib


def whole_units(gib: float, per_gib: int, most_gib: float | None = None) -> int:
    """Return `gib` in 1/`per_gib` GiB units, rounded up: at least 1, at most `most_gib`'s."""
    # Rounded first: a share of a node's memory carries float noise (160.00000000000003).
    units = max(1, math.ceil(round(gib * per_gib, 6)))
    if most_gib is not None:
        units = min(units, max(1, math.floor(round(most_gib * per_gib, 6))))
    return units
