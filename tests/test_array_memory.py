"""The generated loader trains over a Zarr store several times larger than the memory it may use."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import xarray  # noqa: F401  (the `data` extra: a missing one fails, it does not skip)
import zarr

from train_runs import bundle_text, clean_env, torchrun_cmd

MiB = 1 << 20
CELLS, CHUNK = 2048, 64  # steps per chunk along time: 1 MiB per chunk of each input variable
STEPS = 65536  # 2 input variables x 65,536 steps x 2,048 cells x 4 bytes = 1 GiB
ALLOWANCE = 256 * MiB  # what a process may hold beyond the libraries it imports
BLUEPRINT = f"""
twin "big" {{}}
data "grid" {{
  source    = zarr("big.zarr", inputs = ["rain", "temp"], targets = ["level"], window = 8, horizon = 1, stride = {CHUNK})
  normalize = standard
  split     = {{ train = 0.9, val = 0.1 }}
  batch     = 8
  workers   = 2
}}
model "net" {{
  arch  = lstm(input = {2 * CELLS}, hidden = 8, output = 1)
  input = data.grid
}}
strategy {{
  kind = ddp
  procs_per_node = 2
}}
target "local" {{}}
train {{
  loss   = mse
  epochs = 1
}}
"""


def write_store(path: Path) -> int:
    """A Zarr v2 store of two (time, cell) inputs and a (time,) target, written 1,024 steps at a
    time (never held whole in memory); returns the bytes its arrays hold once decoded.

    The values repeat a short pattern, so Blosc compresses the 1 GiB to a few MiB on disk: the
    bound is about decoded data in memory, and the test needs no free gigabytes of disk.
    """
    root = zarr.open_group(str(path), mode="w", zarr_format=2)
    for name, shape in (("rain", (STEPS, CELLS)), ("temp", (STEPS, CELLS)), ("level", (STEPS,))):
        array = root.create_array(name, shape=shape, chunks=(CHUNK, *shape[1:]), dtype="float32", fill_value=None)
        array.attrs["_ARRAY_DIMENSIONS"] = ["time", "cell"][: len(shape)]
        cells = np.arange(shape[1]) if len(shape) > 1 else 0
        for t0 in range(0, STEPS, 1024):
            steps = np.arange(t0, t0 + 1024).reshape(-1, *[1] * (len(shape) - 1))
            array[t0 : t0 + 1024] = ((steps * 7 + cells * 3) % 11 - 5).astype(np.float32)
    zarr.consolidate_metadata(str(path))
    return sum(root[name].nbytes for name in ("rain", "temp", "level"))


def peak_rss(pid: int) -> int:
    """The process's peak resident memory so far (the kernel's high-water mark, VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (the ranks torchrun starts and their loader workers)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        children = parents.get(todo.pop(), [])
        found += children
        todo += children
    return found


def library_baseline() -> int:
    """Peak RSS of a process that only imports what a rank imports: the libraries' share, not the data's."""
    code = ("import numpy, torch, torch.distributed, xarray, zarr\n"
            "print([l for l in open('/proc/self/status') if l.startswith('VmHWM:')][0].split()[1])")
    return int(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout) * 1024


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads peak memory from Linux's /proc")
def test_trains_over_a_store_four_times_the_memory_each_process_may_use(tmp_path: Path) -> None:
    """Method: a 1 GiB Zarr store (two 2,048-cell inputs, 1 MiB chunks of 64 steps once decoded; a
    few MiB compressed on disk) is written chunk by chunk; two ranks with two loader workers each
    (and two more for validation) stream the statistics of its train split and train one epoch over windows starting at every chunk, so every
    chunk of the store is read. While they run, the test reads every descendant process's peak
    resident memory (VmHWM in /proc, which the kernel keeps, so no peak between two readings is
    missed) every 0.2 s. Bound: each process's peak stays below the peak of a process that only
    imports numpy, torch, xarray and zarr plus 256 MiB, a quarter of the store: the loader neither
    reads whole variables nor keeps what it has read beyond its 64 MiB cache."""
    store = tmp_path / "big.zarr"
    try:
        size = write_store(store)
        assert size >= 4 * ALLOWANCE
        on_disk = sum(f.stat().st_size for f in store.rglob("*") if f.is_file())
        assert on_disk < 64 * MiB, f"the store takes {on_disk / MiB:.0f} MiB of disk"
        script = bundle_text(tmp_path, BLUEPRINT)
        bound = library_baseline() + ALLOWANCE
        cmd = torchrun_cmd(script, 2, "--run-dir", str(tmp_path / "run"))
        log = (tmp_path / "log.txt").open("w+")
        process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=clean_env())
        peaks: dict[int, int] = {}
        deadline = time.monotonic() + 900
        while process.poll() is None and time.monotonic() < deadline:
            for pid in descendants(process.pid):
                try:
                    peaks[pid] = max(peaks.get(pid, 0), peak_rss(pid))
                except OSError:  # it ended between the listing and the reading
                    pass
            time.sleep(0.2)
        if process.poll() is None:
            process.kill()
        process.wait()
        log.seek(0)
        output = log.read()
        worst = max(peaks.values())  # first: a loader that reads too much may also run out of time
        assert worst < bound, f"a process peaked at {worst / MiB:.0f} MiB, over {bound / MiB:.0f} MiB (store {size / MiB:.0f} MiB)"
        assert process.returncode == 0, output[-6000:]
        assert "normalisation: streaming" in output and (tmp_path / "run" / "stats.json").is_file()
        assert len(peaks) >= 2 + 2 * 4  # two ranks, each with two train and two validation workers
    finally:
        shutil.rmtree(store, ignore_errors=True)
