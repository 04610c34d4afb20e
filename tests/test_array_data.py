"""Zarr, NetCDF and HDF5 sources: windows, the split in time, normalisation, training on 2 ranks."""

from __future__ import annotations

import json
from pathlib import Path

# h5py, netCDF4, xarray and zarr: the `data` extra, which scripts/install-deps.sh installs; a
# missing one fails the collection, it does not skip these tests.
import h5py
import netCDF4  # noqa: F401  (xarray's NetCDF engine)
import numpy as np
import pytest
import torch
import xarray as xr
import zarr  # noqa: F401  (xarray's Zarr engine)

from train_runs import bundle_text, final_weights, load_script, ok, torchrun

STEPS, STATIONS, ROWS = 120, 3, 160
WINDOWED = """
twin "hydro" {{}}
data "gauges" {{
  source    = {source}
  normalize = {normalize}
  split     = {{ train = 0.6, val = 0.2, test = 0.2 }}
  batch     = 4
  workers   = {workers}
}}
model "net" {{
  arch  = lstm(input = 6, hidden = 8, output = 6)
  input = data.gauges
}}
strategy {{
  kind = ddp
  procs_per_node = 2
}}
target "local" {{}}
train {{
  loss   = mse
  epochs = {epochs}
  checkpoint = {{ every = 5 }}
}}
"""
ROWS_BLUEPRINT = """
twin "phys" {{}}
data "showers" {{
  source    = hdf5("showers.h5", x = "/calo/showers", y = "/energy")
  normalize = {normalize}
  batch     = 8
  workers   = {workers}
}}
model "net" {{
  arch  = mlp(input = 16, output = 1)
  input = data.showers
}}
strategy {{
  kind = ddp
  procs_per_node = 2
}}
target "local" {{}}
train {{
  loss   = mse
  epochs = {epochs}
}}
"""
# The same variables as a Zarr store and as three NetCDF files along time (ragged: 50, 40, 30 steps).
SOURCES = {
    "zarr": 'zarr("gauges.zarr", inputs = ["rain", "temp"], targets = ["flow", "level"], window = 7, horizon = 1, stride = 2)',
    "zarr3": 'zarr("gauges3.zarr", inputs = ["rain", "temp"], targets = ["flow", "level"], window = 7, horizon = 1, stride = 2)',
    "netcdf": 'netcdf("nc/part-*.nc", inputs = ["rain", "temp"], targets = ["flow", "level"], window = 7, horizon = 1, stride = 2)',
}


def gauges() -> xr.Dataset:
    rng = np.random.default_rng(7)
    data = {name: (("time", "station"), rng.normal(loc, 1 + loc, (STEPS, STATIONS)).astype("float32"))
            for loc, name in enumerate(["rain", "temp", "flow", "level"])}
    return xr.Dataset(data, coords={"time": np.arange(STEPS), "station": np.arange(STATIONS)})


def make_files(folder: Path) -> None:
    """A Zarr v2 and a v3 store, three NetCDF files and an HDF5 file, small and real."""
    folder.mkdir(parents=True, exist_ok=True)
    ds = gauges()
    ds.to_zarr(folder / "gauges.zarr", mode="w", zarr_format=2, encoding={v: {"chunks": (16, STATIONS)} for v in ds.data_vars})
    ds.to_zarr(folder / "gauges3.zarr", mode="w", zarr_format=3, consolidated=False)
    (folder / "nc").mkdir(exist_ok=True)
    for i, (a, b) in enumerate([(0, 50), (50, 90), (90, STEPS)]):
        ds.isel(time=slice(a, b)).to_netcdf(folder / "nc" / f"part-{i}.nc")
    rng = np.random.default_rng(3)
    with h5py.File(folder / "showers.h5", "w") as f:
        f.create_dataset("calo/showers", data=rng.gamma(2.0, 3.0, (ROWS, 4, 4)).astype("float32"), chunks=(16, 4, 4))
        f["energy"] = rng.normal(size=(ROWS, 1)).astype("float32")


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("arrays")
    make_files(folder)
    return folder


def windowed_script(folder: Path, kind: str, normalize: str = "standard", workers: int = 0, epochs: int = 2):
    return bundle_text(folder, WINDOWED.format(source=SOURCES[kind], normalize=normalize, workers=workers, epochs=epochs))


@pytest.mark.parametrize("kind", list(SOURCES))
def test_windows_are_the_slices_of_a_direct_read_and_split_in_time(files: Path, kind: str, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("DTEC_DATA_ROOT", str(files))
    train = load_script(windowed_script(files, kind, normalize="none"))
    sets = train.split(train.load_dataset(), 0)
    expected = gauges()
    # 120 steps cut 72 / 24 / 24; windows of 7 + 1 every 2 steps inside each part.
    assert [len(s) for s in sets] == [(72 - 8) // 2 + 1, (24 - 8) // 2 + 1, (24 - 8) // 2 + 1]
    spans = []
    for part, start in zip(sets, (0, 72, 96)):
        covered = set()
        for i in range(len(part)):
            t0 = start + 2 * i
            assert_direct_read(part[i], expected, t0)
            covered |= set(range(t0, t0 + 8))
        spans.append(covered)
    # No step is in a window (inputs or horizon) of two parts: nothing leaks across the split.
    assert not spans[0] & spans[1] and not spans[1] & spans[2] and not spans[0] & spans[2]


def assert_direct_read(sample, expected: xr.Dataset, t0: int) -> None:
    """The window starting at step t0 is the slices of the variables read directly."""
    x, y = sample
    inputs = np.concatenate([expected[v].values[t0 : t0 + 7] for v in ("rain", "temp")], axis=1)
    targets = np.concatenate([expected[v].values[t0 + 7 : t0 + 8] for v in ("flow", "level")], axis=1)
    np.testing.assert_array_equal(x.numpy(), inputs)
    np.testing.assert_array_equal(y.numpy(), targets.reshape(-1))


@pytest.mark.parametrize("kind", list(SOURCES))
def test_batches_read_each_block_once_and_equal_direct_reads(files: Path, kind: str, monkeypatch) -> None:
    """A batch reads its missing blocks (whole chunks along time) in one call per file and variable,
    then serves windows from the per-process cache; evicted blocks are read again, exactly."""
    monkeypatch.setenv("DTEC_DATA_ROOT", str(files))
    train = load_script(windowed_script(files, kind, normalize="none"))
    part = train.split(train.load_dataset(), 0)[0]
    series, expected, reads = part.series, gauges(), []
    read = series.values
    monkeypatch.setattr(series, "values", lambda index, name, steps: reads.append((index, name)) or read(index, name, steps))
    everything = part.__getitems__(list(range(len(part))))
    files_read = {index for index, _ in reads}
    assert len(reads) == len(files_read) * 4  # one call per file and variable for the whole part
    assert part.__getitems__(list(range(len(part)))) and len(reads) == len(files_read) * 4  # all cached now
    for i, sample in enumerate(everything):
        assert_direct_read(sample, expected, 2 * i)
    # A cache of about two blocks: shuffled batches evict and read again, and still equal direct reads.
    series.CACHE_BYTES, series._cache, series._cached = 2 * 16 * STATIONS * 4 * 4, {}, 0
    order = np.random.default_rng(0).permutation(len(part))
    for batch in np.array_split(order, 6):
        for i, sample in zip(batch, part.__getitems__([int(i) for i in batch])):
            assert_direct_read(sample, expected, 2 * int(i))
        touched = {(f, b) for i in batch for f, b, _, _ in series.pieces(2 * int(i), 2 * int(i) + 8)}
        assert series._cached == sum(v.nbytes for held in series._cache.values() for v in held.values())
        assert set(series._cache) == touched  # over the budget: only the batch's own blocks stay


@pytest.mark.parametrize("normalize", ["standard", "minmax"])
def test_normalisation_uses_the_train_steps_only(files: Path, normalize: str, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("DTEC_DATA_ROOT", str(files))
    train = load_script(windowed_script(files, "netcdf", normalize=normalize))
    sets = train.split(train.load_dataset(), 0)
    stats = train.use_statistics(sets, tmp_path, None)
    saved = json.loads((tmp_path / "stats.json").read_text())
    assert saved["variables"] == stats["variables"]
    raw = gauges()
    for name in ("rain", "temp"):
        steps = raw[name].values[:72].astype(np.float64)  # the train part's steps, not val's or test's
        got = saved["variables"][name]
        assert got["count"] == steps.size
        assert got["mean"] == pytest.approx(steps.mean(), rel=1e-9)
        assert got["std"] == pytest.approx(steps.std(), rel=1e-9)
        assert (got["min"], got["max"]) == (pytest.approx(steps.min()), pytest.approx(steps.max()))
    # A validation window is scaled with the train split's statistics.
    x, _ = sets[1][0]
    first = raw["rain"].values[72:79]
    shift, spread = ((saved["variables"]["rain"]["mean"], saved["variables"]["rain"]["std"]) if normalize == "standard"
                     else (saved["variables"]["rain"]["min"], saved["variables"]["rain"]["max"] - saved["variables"]["rain"]["min"]))
    np.testing.assert_allclose(x.numpy()[:, :STATIONS], (first - shift) / spread, rtol=1e-5, atol=1e-6)
    # Read again (a resume, --evaluate): the saved statistics, not new ones.
    (tmp_path / "stats.json").write_text(json.dumps({**saved, "offset": [0.0] * 6, "scale": [2.0] * 6}))
    train.use_statistics(sets, tmp_path, None)
    np.testing.assert_allclose(sets[1][0][0].numpy()[:, :STATIONS], first / 2, rtol=1e-6)


def test_hdf5_rows_and_statistics_match_h5py(files: Path, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("DTEC_DATA_ROOT", str(files))
    train = load_script(bundle_text(files, ROWS_BLUEPRINT.format(normalize="standard", workers=0, epochs=1)))
    sets = train.split(train.load_dataset(), 0)
    with h5py.File(files / "showers.h5") as f:
        x_all, y_all = f["calo/showers"][:], f["energy"][:]
    rows = np.asarray(sets[0].indices)
    train.use_statistics(sets, tmp_path, None)
    values = x_all[np.sort(rows)].astype(np.float64)
    stats = json.loads((tmp_path / "stats.json").read_text())["variables"]["/calo/showers"]
    assert stats["count"] == values.size and stats["mean"] == pytest.approx(values.mean(), rel=1e-9)
    x, y = sets[1][0]
    row = sets[1].indices[0]
    np.testing.assert_allclose(x.numpy(), (x_all[row] - stats["mean"]) / stats["std"], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(y.numpy(), y_all[row])


def test_hdf5_batches_are_read_at_once_and_equal_direct_rows(files: Path, monkeypatch) -> None:
    monkeypatch.setenv("DTEC_DATA_ROOT", str(files))
    train = load_script(bundle_text(files, ROWS_BLUEPRINT.format(normalize="none", workers=0, epochs=1)))
    rows = train.load_dataset()
    with h5py.File(files / "showers.h5") as f:
        x_all, y_all = f["calo/showers"][:], f["energy"][:]
    wanted = [97, 3, 150, 3, 0, 42]  # unordered, with a repeat: h5py itself takes increasing rows only
    batch = rows.__getitems__(wanted)
    for i, (x, y) in zip(wanted, batch):
        np.testing.assert_array_equal(x.numpy(), x_all[i])
        np.testing.assert_array_equal(y.numpy(), y_all[i])
    with pytest.raises(IndexError):
        rows.__getitems__([0, ROWS])


@pytest.mark.slow
@pytest.mark.parametrize("kind", list(SOURCES))
def test_trains_on_two_ranks_and_resumes_with_the_same_samples(files: Path, kind: str, tmp_path: Path) -> None:
    """Two ranks, two loader workers each; a run stopped after 2 epochs and resumed to 4 ends with
    the weights of a run of 4 epochs at once, and keeps its stats.json."""
    for name in ("straight", "resumed"):
        make_files(tmp_path / name)
    straight = windowed_script(tmp_path / "straight", kind, workers=2, epochs=4)
    resumed = windowed_script(tmp_path / "resumed", kind, workers=2, epochs=4)
    ok(torchrun(straight, timeout=300))
    first = ok(torchrun(resumed, "--epochs", "2", timeout=300))
    assert "normalisation: streaming" in first
    stats = (resumed.parent / "run" / "stats.json").read_text()
    second = ok(torchrun(resumed, timeout=300))
    assert "resumed from" in second and "normalisation: streaming" not in second
    assert (resumed.parent / "run" / "stats.json").read_text() == stats
    a, b = final_weights(straight.parent / "run"), final_weights(resumed.parent / "run")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_hdf5_trains_on_two_ranks_with_workers(files: Path, tmp_path: Path) -> None:
    make_files(tmp_path / "p")
    script = bundle_text(tmp_path / "p", ROWS_BLUEPRINT.format(normalize="minmax", workers=2, epochs=2))
    out = ok(torchrun(script, timeout=300))
    assert "test_loss" in out or "val_loss" in out
    assert json.loads((script.parent / "run" / "summary.json").read_text())["status"] == "completed"


def test_data_inspect_prints_what_the_blueprint_resolves_to(files: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from dtec.cli import app

    windowed_script(files, "netcdf")
    (tmp_path / "stats.json").write_text(json.dumps({"variables": {"rain": {"count": 216, "mean": 0.5, "std": 2.0, "min": -1.0, "max": 3.0}}}))
    result = CliRunner().invoke(app, ["data", "inspect", str(files / "bp.twin"), "--run", str(tmp_path), "--format", "json"])
    assert result.exit_code == 0, result.output
    [entry] = json.loads(result.stdout)
    assert [Path(f).name for f in entry["files"]] == ["part-0.nc", "part-1.nc", "part-2.nc"]
    assert entry["variables"]["rain"] == {"dims": ["time", "station"], "shape": [STEPS, STATIONS]}
    assert entry["sample_shape"] == [7, 6] and entry["target_shape"] == [6]
    assert entry["parts"] == {"train": 72, "val": 24, "test": 24}
    assert entry["samples"] == {"train": 33, "val": 9, "test": 9}
    assert entry["statistics"]["rain"]["mean"] == 0.5


@pytest.mark.parametrize("kind", ["zarr", "hdf5"])
def test_one_batch_per_rank_of_the_target(files: Path, kind: str) -> None:
    """DT335 counts each rank's share on a target: 33 train windows (144 rows) make a batch of 4 (8)
    for 2 ranks, and not for 9 (19); grad_accum asks for whole steps."""
    from dtec.analysis import analyse

    if kind == "zarr":
        windowed_script(files, kind)
        many, accumulate = 9, 5
    else:
        bundle_text(files, ROWS_BLUEPRINT.format(normalize="none", workers=0, epochs=1))
        many, accumulate = 19, 10

    def codes(*sets: str) -> list[tuple[str, str]]:
        result = analyse(files / "bp.twin", environ={"DTEC_PROJECT_ROOT": str(files)}, sets=list(sets))
        return [(d.code, d.message) for d in result.diagnostics if d.severity == "error"]

    assert codes() == [] and codes("train.grad_accum=2") == []
    [(code, message)] = codes(f"strategy.procs_per_node={many}")
    assert code == "DT335" and f"for each of the {many} ranks of target `local`" in message
    [(code, message)] = codes(f"train.grad_accum={accumulate}")
    assert code == "DT335" and f"× {accumulate} accumulation steps" in message


def test_lint_of_a_zarr_blueprint_imports_no_data_library(files: Path) -> None:
    """Zarr metadata is JSON: lint reads it with the standard library (nor torch, nor NumPy)."""
    import subprocess
    import sys

    windowed_script(files, "zarr")
    code = ("import sys\nfrom pathlib import Path\nfrom dtec.analysis import analyse\n"
            f"r = analyse(Path({str(files / 'bp.twin')!r}), environ={{'DTEC_PROJECT_ROOT': {str(files)!r}}})\n"
            "assert r.ok, r.diagnostics\n"
            "print(','.join(m for m in ('xarray', 'zarr', 'h5py', 'netCDF4', 'numpy', 'torch') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parent.parent)
    assert out.stdout.strip() == ""
