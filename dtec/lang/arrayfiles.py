"""Read the metadata of Zarr stores, NetCDF and HDF5 files: variables, dimensions, shapes, dtypes.

Never the data. A Zarr store's metadata is JSON, read with the standard library (consolidated
`.zmetadata` or `zarr.json`, else one small file per array); NetCDF needs `netCDF4` and HDF5
`h5py`, imported here only, so `dtec lint` of a blueprint without such a source imports neither.
"""

from __future__ import annotations

import glob
import json
import os
from dataclasses import dataclass
from pathlib import Path

from dtec.lang.datafiles import DataFileError

_JSON_MAX = 1 << 24  # bytes of one metadata file: larger is not Zarr metadata
_HDF5_NAMES_MAX = 1000  # dataset names listed for "did you mean"
# Zarr v3 data types by the NumPy kind they hold (https://zarr-specs.readthedocs.io, core/v3.0).
_V3_KINDS = {"bool": "b", "int": "i", "uint": "u", "float": "f", "complex": "c"}


@dataclass(frozen=True)
class Variable:
    """One array: its dimension names (empty when the file names none), shape and NumPy kind."""

    dims: tuple[str, ...]
    shape: tuple[int, ...]
    kind: str  # NumPy's dtype kind: b, i, u, f, c; anything else is not numbers

    @property
    def numeric(self) -> bool:
        return self.kind in "biuf" and len(self.kind) == 1


@dataclass(frozen=True)
class Arrays:
    """What a store or a set of files holds: its files (as read) and variables by name."""

    files: tuple[Path, ...]
    variables: dict[str, Variable]
    lengths: tuple[int, ...] = ()  # per file, the length along the joined dimension (NetCDF)


def expand(written: str, folder: Path) -> list[Path]:
    """The files a path or glob names, relative to `folder`, in name order."""
    pattern = written if os.path.isabs(written) else str(folder / written)
    if not glob.has_magic(written):
        return [Path(pattern)] if os.path.exists(pattern) else []
    return sorted(Path(p) for p in glob.glob(pattern, recursive=True))


# ---- Zarr ------------------------------------------------------------------------------------
def zarr_arrays(store: Path) -> Arrays:
    """The arrays of a Zarr store (format 2 or 3), from its metadata files."""
    if (store / ".zmetadata").is_file():
        meta = _json(store / ".zmetadata").get("metadata", {})
        return Arrays((store,), _v2_arrays(meta))
    if (store / ".zgroup").is_file() or (store / ".zarray").is_file():
        meta = {}
        for entry in sorted(store.iterdir()):
            for key in (".zarray", ".zattrs"):
                if (entry / key).is_file():
                    meta[f"{entry.name}/{key}"] = _json(entry / key)
        return Arrays((store,), _v2_arrays(meta))
    if (store / "zarr.json").is_file():
        root = _json(store / "zarr.json")
        consolidated = (root.get("consolidated_metadata") or {}).get("metadata")
        if isinstance(consolidated, dict):
            nodes = {name: node for name, node in consolidated.items() if "/" not in name}
        else:
            nodes = {e.name: _json(e / "zarr.json") for e in sorted(store.iterdir()) if (e / "zarr.json").is_file()}
        found = {}
        for name, node in nodes.items():
            if isinstance(node, dict) and node.get("node_type") == "array":
                dtype = node.get("data_type")
                kind = next((k for prefix, k in _V3_KINDS.items() if isinstance(dtype, str) and dtype.startswith(prefix)), "O")
                found[name] = Variable(tuple(node.get("dimension_names") or ()), _shape(node.get("shape")), kind)
        return Arrays((store,), found)
    raise DataFileError("it is not a Zarr store (no `.zmetadata`, `.zgroup` or `zarr.json`)")


def _v2_arrays(meta: dict) -> dict[str, Variable]:
    found = {}
    for key, array in meta.items():
        name, _, leaf = key.rpartition("/")
        if leaf != ".zarray" or "/" in name or not isinstance(array, dict):
            continue
        dims = (meta.get(f"{name}/.zattrs") or {}).get("_ARRAY_DIMENSIONS") or ()
        dtype = array.get("dtype")
        kind = dtype[1] if isinstance(dtype, str) and len(dtype) >= 3 else "O"
        found[name] = Variable(tuple(map(str, dims)), _shape(array.get("shape")), kind)
    return found


def _json(path: Path) -> dict:
    try:
        with open(path, "rb") as handle:
            data = handle.read(_JSON_MAX + 1)
        if len(data) > _JSON_MAX:
            raise DataFileError(f"its metadata `{path.name}` is larger than {_JSON_MAX >> 20} MiB")
        found = json.loads(data)
    except OSError as exc:
        raise DataFileError(f"cannot read its metadata ({exc.strerror})") from None
    except (ValueError, RecursionError):
        raise DataFileError(f"its metadata `{path.name}` is not JSON") from None
    if not isinstance(found, dict):
        raise DataFileError(f"its metadata `{path.name}` is not a JSON object")
    return found


def _shape(shape) -> tuple[int, ...]:
    if not isinstance(shape, list) or not all(isinstance(n, int) and n >= 0 for n in shape):
        raise DataFileError("an array's metadata has no valid shape")
    return tuple(shape)


# ---- NetCDF ----------------------------------------------------------------------------------
def netcdf_arrays(files: list[Path], names: list[str], dim: str) -> Arrays:
    """The variables of NetCDF files joined along `dim`: those of the first, `dim` summed over all.

    Raises DataFileError when a file is unreadable, or the files disagree on `names` (their
    dimensions, or their shapes besides `dim`).
    """
    try:
        import netCDF4
    except ImportError:
        raise ModuleNotFoundError("netCDF4 is not installed", name="netCDF4") from None
    variables: dict[str, Variable] = {}
    lengths = []
    for path in files:
        try:
            with netCDF4.Dataset(path, "r") as ds:
                held = {name: Variable(tuple(v.dimensions), tuple(v.shape), v.dtype.kind if hasattr(v.dtype, "kind") else "O")
                        for name, v in ds.variables.items()}
                lengths.append(len(ds.dimensions[dim]) if dim in ds.dimensions else 0)
        except OSError as exc:
            raise DataFileError(f"`{path.name}` is not a readable NetCDF file ({exc.strerror or exc})") from None
        if not variables:
            variables = held
            continue
        for name in names:
            first, this = variables.get(name), held.get(name)
            if first is None:
                continue
            if this is None:
                raise DataFileError(f"`{path.name}` has no variable `{name}`, which `{files[0].name}` has")
            rest = [n for d, n in zip(first.dims, first.shape) if d != dim]
            if this.dims != first.dims or [n for d, n in zip(this.dims, this.shape) if d != dim] != rest:
                raise DataFileError(f"`{name}` has dimensions {_dims(this)} in `{path.name}` but {_dims(first)} in `{files[0].name}`")
    total = sum(lengths)
    joined = {name: Variable(v.dims, tuple(total if d == dim else n for d, n in zip(v.dims, v.shape)), v.kind)
              for name, v in variables.items()}
    return Arrays(tuple(files), joined, tuple(lengths))


def _dims(v: Variable) -> str:
    return "(" + ", ".join(f"{d}={n}" for d, n in zip(v.dims, v.shape)) + ")"


# ---- HDF5 ------------------------------------------------------------------------------------
def hdf5_arrays(path: Path, names: list[str]) -> tuple[list[str], Arrays]:
    """Every dataset name of the file (the first _HDF5_NAMES_MAX, for "did you mean") and `names` it holds."""
    try:
        import h5py
    except ImportError:
        raise ModuleNotFoundError("h5py is not installed", name="h5py") from None
    try:
        with h5py.File(path, "r") as f:
            found = {}
            for name in names:
                node = f.get(name)
                if isinstance(node, h5py.Dataset):
                    found[name] = Variable((), tuple(node.shape), node.dtype.kind)
            held: list[str] = []

            def visit(name: str, node) -> bool | None:
                if isinstance(node, h5py.Dataset):
                    held.append("/" + name)
                return True if len(held) >= _HDF5_NAMES_MAX else None

            f.visititems(visit)
    except OSError as exc:
        raise DataFileError(f"not a readable HDF5 file ({exc})") from None
    return held, Arrays((path,), found)
