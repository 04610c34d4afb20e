"""Read what static checks need from data files, and no more: `.npz` array headers, a CSV's first rows.

Metadata only, with the standard library (no NumPy, no pandas): an `.npz` is a zip of `.npy` files,
and each `.npy` starts with a small header, a Python dict literal of dtype and shape.
"""

from __future__ import annotations

import ast
import csv
import io
from dataclasses import dataclass
from pathlib import Path

_NPY_MAGIC = b"\x93NUMPY"
_NPY_HEADER_MAX = 1 << 16  # NumPy writes a few hundred bytes; a larger header is not an array file
_CSV_READ_MAX = 1 << 18  # bytes of a CSV read for the header and the sample rows
CSV_SAMPLE_ROWS = 20


class DataFileError(Exception):
    """A data file that cannot be read as what the blueprint says it is; the message says why."""


@dataclass(frozen=True)
class Array:
    """One array of an `.npz` file, as its header describes it."""

    shape: tuple[int, ...]
    dtype: str  # NumPy's `descr`, e.g. `<f4`; a list of fields for a structured array is `str(list)`

    @property
    def numeric(self) -> bool:
        """Return whether the values convert to numbers (bool, integer or float)."""
        return len(self.dtype) >= 3 and self.dtype[1] in "biuf" and self.dtype[0] in "<>|="

    @property
    def integral(self) -> bool:
        """Return whether the values are integers (or booleans)."""
        return self.numeric and self.dtype[1] in "biu"


def npz_arrays(path: Path, names: tuple[str, ...]) -> tuple[list[str], dict[str, Array]]:
    """Return every array name of the `.npz` file and the header of each of `names` it holds."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            members = {info.filename.removesuffix(".npy"): info for info in archive.infolist() if info.filename.endswith(".npy")}
            found = {}
            for name in names:
                if name in members:
                    with archive.open(members[name]) as handle:
                        found[name] = _npy_header(handle, name)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError, OSError, RuntimeError) as exc:
        raise DataFileError(f"not a readable `.npz` file ({getattr(exc, 'strerror', None) or exc})") from None
    return sorted(members), found


def _npy_header(handle, name: str) -> Array:
    """Parse the header of an `.npy` member: format version 1 (2-byte length), 2 or 3 (4-byte)."""
    start = handle.read(len(_NPY_MAGIC) + 2)
    if len(start) < 8 or not start.startswith(_NPY_MAGIC) or start[6] not in (1, 2, 3):
        raise DataFileError(f"array `{name}` is not in NumPy's `.npy` format")
    width = 2 if start[6] == 1 else 4
    length = int.from_bytes(handle.read(width), "little")
    if length > _NPY_HEADER_MAX:
        raise DataFileError(f"array `{name}` has a header of {length} bytes, not an `.npy` header")
    text = handle.read(length).decode("latin-1" if start[6] < 3 else "utf-8", errors="replace")
    try:
        header = ast.literal_eval(text)
        shape, descr = header["shape"], header["descr"]
    except (ValueError, SyntaxError, TypeError, KeyError, MemoryError, RecursionError):
        raise DataFileError(f"array `{name}` has an unreadable `.npy` header") from None
    if not isinstance(shape, tuple) or not all(isinstance(n, int) and n >= 0 for n in shape):
        raise DataFileError(f"array `{name}` has an unreadable `.npy` header")
    return Array(shape, descr if isinstance(descr, str) else str(descr))


def csv_sample(path: Path) -> tuple[list[str], list[list[str]]]:
    """Return a CSV file's header and its first rows (up to CSV_SAMPLE_ROWS)."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(_CSV_READ_MAX + 1)
    except OSError as exc:
        raise DataFileError(f"cannot read it ({exc.strerror})") from None
    try:
        text = data[:_CSV_READ_MAX].decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        if exc.start < _CSV_READ_MAX - 3:  # not just a character cut at the read's end
            raise DataFileError("it is not UTF-8 text") from None
        text = data[: exc.start].decode("utf-8-sig")
    lines = text.splitlines(keepends=True)
    if len(data) > _CSV_READ_MAX and lines:
        lines.pop()  # a line cut part-way
    try:
        rows = list(csv.reader(io.StringIO("".join(lines[: CSV_SAMPLE_ROWS + 1]))))
    except csv.Error as exc:
        raise DataFileError(f"it is not CSV ({exc})") from None
    rows = [row for row in rows if row]
    if not rows:
        raise DataFileError("it has no header line")
    return rows[0], rows[1:]


def is_number(text: str) -> bool:
    """Return whether `float(text)` takes the cell, as `train.py` reads it."""
    try:
        float(text)
    except ValueError:
        return False
    return True
