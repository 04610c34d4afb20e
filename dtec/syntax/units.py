"""Unit suffixes of numbers: durations to seconds, sizes to bytes."""

DURATIONS: dict[str, int | float] = {"ms": 0.001, "s": 1, "min": 60, "h": 3600, "d": 86400}

SIZES: dict[str, int] = {
    "B": 1,
    "KB": 10**3,
    "MB": 10**6,
    "GB": 10**9,
    "TB": 10**12,
    "PB": 10**15,
    "KiB": 2**10,
    "MiB": 2**20,
    "GiB": 2**30,
    "TiB": 2**40,
    "PiB": 2**50,
}

UNITS = (*DURATIONS, *SIZES)


def is_duration(unit: str | None) -> bool:
    """Return whether a unit suffix is a duration."""
    return unit in DURATIONS


def is_size(unit: str | None) -> bool:
    """Return whether a unit suffix is a size."""
    return unit in SIZES

