"""The generated Zarr loader against a hand-written xarray loader, and lint of a Zarr blueprint.

Loader: one Zarr store (3 variables of `cells` cells, float32, zarr's default compression,
chunks of 64 steps), windows of 30 steps and a horizon of 1, in two layouts: `stride = 1` (a chunk
serves 64 windows, the usual forecasting set-up) and `stride = 64` (every window in a chunk of its
own: nothing to share). The generated `train.py`'s train split and the hand-written data set (what
an expert writes in a few lines: open the store lazily in each process, `isel` one window per
sample) are read through the same `DataLoader` settings (batch 64, the same shuffled indices),
in alternation, each pass from a fresh data set (a cold cache); the first batch of both is checked
equal. Samples per second of each, and their ratio.

Lint: `dtec lint` as a whole process on the blueprint with its Zarr source, and on the same
blueprint with a synthetic source, alternated; the median difference (and both in-process).

    python -m benchmarks.data_loader            # or: python -m benchmarks.run --only data
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import ROOT, log, summary, target, time_calls

BLUEPRINT = """
twin "bench" {{}}
data "grid" {{
  source  = {source}
  split   = {{ train = 0.8, val = 0.2 }}
  batch   = 64
}}
model "net" {{
  arch  = lstm(input = {features}, hidden = 8, output = {cells})
  input = data.grid
}}
target "local" {{}}
train {{
  loss   = mse
  epochs = 1
}}
"""
ZARR = 'zarr("store.zarr", inputs = ["rain", "temp"], targets = ["flow"], window = 30, horizon = 1, stride = {stride})'
SYNTHETIC = "synthetic(samples = 1000, shape = [30, {features}], targets = {cells})"
HANDWRITTEN = '''
class HandWritten(torch.utils.data.Dataset):
    """Windows of a Zarr store as one writes them by hand: xarray, lazily, one window per sample."""

    def __init__(self, path, count, stride, window=30, horizon=1):
        self.path, self.count, self.stride, self.window, self.horizon, self.ds = path, count, stride, window, horizon, None

    def __len__(self):
        return self.count

    def __getitem__(self, i):
        if self.ds is None:  # opened in each worker
            self.ds = xr.open_dataset(self.path, engine="zarr", chunks=None)
        t0 = i * self.stride
        part = self.ds.isel(time=slice(t0, t0 + self.window + self.horizon))
        x = np.concatenate([part[v].values[: self.window] for v in ("rain", "temp")], axis=1)
        y = part["flow"].values[self.window :].reshape(-1)
        return torch.from_numpy(x.astype(np.float32)), torch.from_numpy(y.astype(np.float32))
'''


def make_store(folder: Path, steps: int, cells: int) -> Path:
    import numpy as np
    import xarray as xr

    rng = np.random.default_rng(0)
    data = {name: (("time", "cell"), rng.normal(size=(steps, cells)).astype("float32")) for name in ("rain", "temp", "flow")}
    path = folder / "store.zarr"
    xr.Dataset(data).to_zarr(path, mode="w", zarr_format=2, encoding={v: {"chunks": (64, cells)} for v in data})
    return path


def compile_to(folder: Path, text: str) -> Path:
    from dtec.compiler import compile_blueprint

    (folder / "bp.twin").write_text(text)
    compiled, diagnostics = compile_blueprint(folder / "bp.twin", "local", environ={"DTEC_PROJECT_ROOT": str(folder)})
    if compiled is None:
        raise RuntimeError([(d.code, d.message) for d in diagnostics])
    (folder / "train.py").write_text(compiled.files["train.py"])
    return folder / "train.py"


def load(script: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, script)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def passes(folder: Path, stride: int, cells: int, **options) -> dict:
    """Samples/s of the generated and the hand-written loader, alternated `rounds` times."""
    import os
    from unittest import mock

    # The generated loader reads the store from the data root; the caller's environment stays
    # as it was (tests that run after this one in the same process read their own data root).
    with mock.patch.dict(os.environ, {"DTEC_DATA_ROOT": str(folder)}):
        return _passes(folder, stride, cells, **options)


def _passes(folder: Path, stride: int, cells: int, *, rounds: int, batches: int, workers: int) -> dict:
    import torch

    train = load(compile_to(folder, BLUEPRINT.format(source=ZARR.format(stride=stride), features=2 * cells, cells=cells)), f"bench_train_{stride}")
    namespace = {"torch": torch, "np": __import__("numpy"), "xr": __import__("xarray")}
    exec(HANDWRITTEN, namespace)
    count = len(train.split(train.load_dataset(), 0)[0])
    order = torch.randperm(count, generator=torch.Generator().manual_seed(0)).tolist()[: batches * 64]

    def loader(dataset):
        return torch.utils.data.DataLoader(dataset, batch_size=64, sampler=order, num_workers=workers)

    def generated():
        return train.split(train.load_dataset(), 0)[0]

    def handwritten():
        return namespace["HandWritten"](str(folder / "store.zarr"), count, stride)

    first = [next(iter(loader(make()))) for make in (generated, handwritten)]
    if not all(torch.equal(a, b) for a, b in zip(*first)):
        raise RuntimeError("the two loaders disagree on the first batch")
    rates: dict[str, list[float]] = {"dtec": [], "handwritten": []}
    for _ in range(rounds):
        for name, make in (("dtec", generated), ("handwritten", handwritten)):
            started = time.perf_counter()
            seen = sum(len(x) for x, _ in loader(make()))
            rates[name].append(seen / (time.perf_counter() - started))
    ratios = [a / b for a, b in zip(rates["dtec"], rates["handwritten"])]
    return {"stride": stride, "workers": workers, "samples": batches * 64, "windows": count,
            "samples_per_s": {k: summary(v) for k, v in rates.items()}, "ratio": summary(ratios), "rounds": ratios}


def lint_times(folder: Path, cells: int, stride: int, rounds: int) -> dict:
    """Whole-process `dtec lint` of the Zarr blueprint and of its synthetic twin, alternated."""
    texts = {"zarr": BLUEPRINT.format(source=ZARR.format(stride=stride), features=2 * cells, cells=cells),
             "synthetic": BLUEPRINT.format(source=SYNTHETIC.format(features=2 * cells, cells=cells), features=2 * cells, cells=cells)}
    times: dict[str, list[float]] = {k: [] for k in texts}
    for name, text in texts.items():
        (folder / f"{name}.twin").write_text(text)
    env = {**__import__("os").environ, "PYTHONPATH": str(ROOT), "DTEC_PROJECT_ROOT": str(folder)}
    for _ in range(rounds):
        for name in texts:
            started = time.perf_counter()
            done = subprocess.run([sys.executable, "-m", "dtec", "lint", str(folder / f"{name}.twin")], env=env,
                                  capture_output=True, text=True)
            times[name].append(time.perf_counter() - started)
            if done.returncode != 0:
                raise RuntimeError(f"lint of the {name} blueprint failed: {done.stdout}{done.stderr}")
    extra = [a - b for a, b in zip(times["zarr"], times["synthetic"])]
    from dtec.analysis import analyse  # in-process, after a first call (imports done): the checks alone

    inside = {name: summary(time_calls(lambda name=name: analyse(folder / f"{name}.twin", environ=env), rounds))
              for name in texts}
    return {"seconds": {k: summary(v) for k, v in times.items()}, "extra_s": summary(extra), "in_process_s": inside}


def run(out: Path, *, steps: int = 16384, cells: int = 256, rounds: int = 3, batches: int = 40,
        workers: tuple[int, ...] = (0, 2), lint_rounds: int = 10) -> dict:
    """Both benchmarks on one store of `steps` x `cells` per variable."""
    out.mkdir(parents=True, exist_ok=True)
    make_store(out, steps, cells)
    log(f"data loader: store {steps} x {cells} x 3 float32, {rounds} rounds of {batches} batches of 64")
    loaders = [passes(out, stride, cells, rounds=rounds, batches=batches, workers=w) for stride in (1, 64) for w in workers]
    log(f"data loader: lint x {lint_rounds}")
    lint = lint_times(out, cells, 1, lint_rounds)
    worst = min(r["ratio"]["median"] for r in loaders)
    return {
        "store": {"steps": steps, "cells": cells, "variables": 3, "chunk_steps": 64,
                  "bytes": sum(f.stat().st_size for f in (out / "store.zarr").rglob("*") if f.is_file())},
        "loaders": loaders,
        "lint": lint,
        "targets": [
            target("generated / hand-written Zarr loader throughput (lowest of the layouts)", worst, 1.0, "ratio", better="higher"),
            target("lint of a Zarr blueprint minus a synthetic one", lint["extra_s"]["median"], 0.1, "s"),
        ],
    }


if __name__ == "__main__":
    print(json.dumps(run(Path("/tmp/dtec-bench-data")), indent=1))
