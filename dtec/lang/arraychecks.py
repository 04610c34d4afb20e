"""Hold a zarr, netcdf or hdf5 source against its files' metadata (dtec.lang.arrayfiles).

What is checked: the store or files exist, the variables (datasets) exist and hold numbers, every
variable runs along `dim` first and the inputs agree on their other dimensions (DT333), the window
and horizon fit each part of the split (DT334), and the train split gives at least one batch
(DT335; on a target, for each of its ranks: dtec.plan). What the files say (sample shape,
outputs, train samples) is returned as facts.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from math import prod
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dtec.lang.arrayfiles import Arrays, Variable, expand
from dtec.lang.datafiles import DataFileError
from dtec.suggest import did_you_mean

if TYPE_CHECKING:
    from dtec.lang.files import _FileChecker

_PARTS = ("train", "val", "test")


def split_bounds(n: int, split: dict) -> tuple[int, int, int]:
    """Items in (train, val, test): the rounded running totals of the fractions, as the script cuts them."""
    bounds, total = [], 0.0
    for part in _PARTS:
        total += split.get(part) or 0.0
        bounds.append(min(n, round(n * min(total, 1.0))))
    return bounds[0], bounds[1] - bounds[0], bounds[2] - bounds[1]


def windows(steps: int, window: int, horizon: int, stride: int) -> int:
    """Windows of `window` steps followed by `horizon` target steps in `steps` steps, every `stride`."""
    return max(0, (steps - window - horizon) // stride + 1)


@dataclass(frozen=True)
class Resolved:
    """What a source resolves to: files, variables used, sample and target shapes, samples per split."""

    files: tuple[Path, ...]
    variables: dict[str, Variable]
    sample: list[int]
    target: list[int]
    steps: int | None  # along `dim`; None for hdf5
    parts: tuple[int, int, int]  # steps (windowed) or samples (hdf5) per split part
    samples: tuple[int, int, int]


def check_array_source(checker: _FileChecker, name: str, block: dict) -> tuple[dict[str, Any], Resolved | None]:
    """Check one data block's zarr/netcdf/hdf5 source; return its facts and what it resolves to."""
    source = block["source"]
    fn, written = source["fn"], source["path"]
    at = ("data", name, "source")
    files = _locate(checker, fn, written, (*at, "path"))
    if not files:
        return {}, None
    try:
        if fn == "hdf5":
            return _hdf5(checker, name, block, files[0])
        if fn == "zarr":
            from dtec.lang.arrayfiles import zarr_arrays

            arrays = zarr_arrays(files[0])
        else:
            from dtec.lang.arrayfiles import netcdf_arrays

            wanted = [*source.get("inputs", []), *source.get("targets", [])]
            arrays = netcdf_arrays(files, [v for v in wanted if isinstance(v, str)], source.get("dim", "time"))
    except ModuleNotFoundError as exc:
        checker.report("DT336", f"`{written}` is not checked: `{exc.name}` is not installed here", (*at, "path"),
                       "install dtec's data extra: `pip install 'dtec[data]'`")
        return {}, None
    except DataFileError as exc:
        checker.report("DT303", f"`{written}`: {exc}", (*at, "path"))
        return {}, None
    return _windowed(checker, name, block, arrays)


def _locate(checker: _FileChecker, fn: str, written: str, at: tuple) -> list[Path]:
    """The store (a folder), the file, or the files of a glob, when they can be read here."""
    if fn == "netcdf" and any(c in written for c in "*?["):
        files = expand(written, checker.folder)
        if not files:
            if os.path.isabs(written):
                checker.report("DT306", f"`{written}` is not on this computer: not checked", at, "`dtec check` where the files are checks them")
            else:
                checker.report("DT302", f"no file matches `{written}`", at, f"the glob is relative to the blueprint's folder: {checker.folder / written}")
            return []
        outside = [f for f in files if not Path(os.path.realpath(f)).is_relative_to(checker.root)]
        if outside:
            checker.report("DT306", f"`{written}` matches files outside the project: not checked", at,
                           f"only files in the project `{checker.root}` are read; `dtec check` reads them")
            return []
        return files
    found = checker.locate(written, at, "DT302", folder=fn == "zarr")
    return [found] if found is not None else []


def _windowed(checker: _FileChecker, name: str, block: dict, arrays: Arrays) -> tuple[dict[str, Any], Resolved | None]:
    source = block["source"]
    at = ("data", name, "source")
    written, dim = source["path"], source.get("dim", "time")
    held = sorted(arrays.variables)
    ok = True
    shapes: dict[str, list[int]] = {}
    for key in ("inputs", "targets"):
        for i, var in enumerate(source.get(key) or []):
            found = arrays.variables.get(var)
            if found is None:
                checker.report("DT304", f"`{written}` has no variable `{var}`; it holds {', '.join(f'`{v}`' for v in held) or 'none'}",
                               (*at, key, i), did_you_mean(var, held))
                ok = False
            elif not found.numeric:
                checker.report("DT305", f"variable `{var}` of `{written}` does not hold numbers", (*at, key, i))
                ok = False
            elif not found.dims or found.dims[0] != dim:
                where = f"its dimensions are ({', '.join(found.dims)})" if found.dims else "it has no named dimensions"
                checker.report("DT333", f"variable `{var}` of `{written}` does not run along `{dim}` first: {where}", (*at, key, i),
                               f"name the dimension windows run along: `dim = \"{found.dims[0]}\"`" if found.dims else None)
                ok = False
            else:
                shapes[var] = list(found.shape[1:])
    if not ok:
        return {}, None
    features = {}
    for key in ("inputs", "targets"):
        rest = {tuple(shapes[v]) for v in source[key]}
        if len(rest) > 1:
            shown = ", ".join(f"`{v}` {shapes[v]}" for v in source[key])
            checker.report("DT333", f"the {key} of `{written}` differ in their dimensions besides `{dim}`: {shown}", (*at, key),
                           f"use {key} of the same dimensions")
            return {}, None
        features[key] = len(source[key]) * prod(next(iter(rest)))
    steps = next(iter(arrays.variables[v] for v in source["inputs"])).shape[0]
    window, horizon, stride = source["window"], source.get("horizon", 1), source.get("stride", 1)
    parts = split_bounds(steps, block.get("split") or {})
    samples = tuple(windows(n, window, horizon, stride) for n in parts)
    resolved = Resolved(arrays.files, {v: arrays.variables[v] for v in [*source["inputs"], *source["targets"]]},
                        [window, features["inputs"]], [horizon * features["targets"]], steps, parts, samples)
    split = block.get("split") or {}
    for part, n, count in zip(_PARTS, parts, samples):
        if (split.get(part) or 0.0) > 0 and count == 0:
            checker.report("DT334", f"the {part} part of the split has {n} steps of `{dim}` ({steps} in all), fewer than a window "
                           f"and its horizon ({window} + {horizon})", (*at, "window"),
                           f"make `window` + `horizon` at most {n}, or give `{part}` a larger fraction")
            return {}, None
    _one_batch(checker, name, block, samples[0], "windows")
    return {"shape": resolved.sample, "targets": resolved.target[0], "train_samples": samples[0]}, resolved


def _hdf5(checker: _FileChecker, name: str, block: dict, path: Path) -> tuple[dict[str, Any], Resolved | None]:
    from dtec.lang.arrayfiles import hdf5_arrays

    source = block["source"]
    at = ("data", name, "source")
    written, x, y = source["path"], source["x"], source["y"]
    held, arrays = hdf5_arrays(path, [x, y])
    for key, dataset in (("x", x), ("y", y)):
        found = arrays.variables.get(dataset)
        if found is None:
            checker.report("DT304", f"`{written}` has no dataset `{dataset}`; it holds {', '.join(f'`{n}`' for n in held[:20]) or 'none'}",
                           (*at, key), did_you_mean(dataset if dataset.startswith("/") else "/" + dataset, held))
            return {}, None
        if not found.numeric or not found.shape:
            what = "does not hold numbers" if not found.numeric else "is a single value, not one row per sample"
            checker.report("DT305", f"dataset `{dataset}` of `{written}` {what}", (*at, key))
            return {}, None
    vx, vy = arrays.variables[x], arrays.variables[y]
    if vx.shape[0] != vy.shape[0]:
        checker.report("DT305", f"`{written}` has {vx.shape[0]} samples in `{x}` but {vy.shape[0]} in `{y}`", (*at, "y"),
                       "give both datasets one row per sample")
        return {}, None
    per_sample = list(vy.shape[1:])
    held_targets = prod(per_sample)
    targets = source.get("targets")
    if isinstance(targets, int) and targets != held_targets:
        checker.report("DT305", f"`targets` is {targets} but `{y}` in `{written}` holds {per_sample or [1]} per sample",
                       (*at, "targets"), f"set `targets = {held_targets}`")
        return {}, None
    if isinstance(source.get("classes"), int) and per_sample not in ([], [1]):
        checker.report("DT305", f"class targets are one number per sample, but `{y}` in `{written}` holds {per_sample}",
                       (*at, "y"), "save the class numbers, not one-hot rows")
        return {}, None
    parts = split_bounds(vx.shape[0], block.get("split") or {})
    resolved = Resolved(arrays.files, dict(arrays.variables), list(vx.shape[1:]), per_sample or [1], None, parts, parts)
    _one_batch(checker, name, block, parts[0], "samples")
    facts: dict[str, Any] = {"shape": resolved.sample, "train_samples": parts[0]}
    if source.get("classes") is None:
        facts["targets"] = held_targets
    return facts, resolved


def _one_batch(checker: _FileChecker, name: str, block: dict, train: int, noun: str) -> None:
    """The train split gives one rank at least one batch (a target's ranks: dtec.plan)."""
    batch = block.get("batch")
    if isinstance(batch, int) and train < batch:
        checker.report("DT335", f"the train split holds {train} {noun}, fewer than one batch of {batch}", ("data", name, "batch"),
                       f"use `batch` at most {train}, or more data")
