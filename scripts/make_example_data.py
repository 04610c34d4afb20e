#!/usr/bin/env python3
"""Write the small data files of the shipped example blueprints (blueprints/data/), deterministically.

    python scripts/make_example_data.py [--out blueprints/data]

- rivers.zarr (Zarr v2, consolidated): four years of daily forcing and discharge at five gauges,
  variables precip, temp, pet, discharge over (time, station), chunks of 365 days; read by
  blueprints/river-forecast.twin.
- showers.h5 (HDF5): 1024 calorimeter showers of 6x6 cells (/showers) and their deposited
  energy (/energy); read by blueprints/calorimeter.twin.

Needs `pip install 'dtec[data]'`. The files are shipped (about 300 KB in all); rerun this only to
change them.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def rivers(out: Path) -> None:
    import xarray as xr

    rng = np.random.default_rng(2024)
    days, stations = 4 * 365 + 1, 5
    t = np.arange(days)[:, None]
    season = np.sin(2 * np.pi * t / 365.25)
    temp = 10 + 8 * season + rng.normal(0, 2, (days, stations))
    precip = np.maximum(0, rng.gamma(0.6, 4, (days, stations)) - 1)
    pet = np.maximum(0, 2 + 1.5 * season + rng.normal(0, 0.3, (days, stations)))
    discharge = np.zeros((days, stations))
    store = np.full(stations, 20.0)
    for day in range(days):  # a linear reservoir per catchment: the target depends on past inputs
        store += precip[day] - 0.3 * pet[day]
        store = np.maximum(store, 0)
        discharge[day] = 0.08 * store
        store -= discharge[day]
    data = {"precip": precip, "temp": temp, "pet": pet, "discharge": discharge}
    ds = xr.Dataset({k: (("time", "station"), v.round(2).astype("float32")) for k, v in data.items()},
                    coords={"time": np.arange(days, dtype="int32"), "station": np.arange(stations, dtype="int32")})
    ds.time.attrs["units"] = "days since 2020-01-01"
    encoding = {name: {"chunks": (365, stations)} for name in data}
    ds.to_zarr(out / "rivers.zarr", mode="w", zarr_format=2, consolidated=True, encoding=encoding)


def showers(out: Path) -> None:
    import h5py

    rng = np.random.default_rng(7)
    n, cells = 1024, 6
    energy = rng.uniform(1, 100, n)
    y, x = np.mgrid[:cells, :cells]
    centre = rng.uniform(2, 3, (n, 2))
    width = 0.6 + 0.15 * np.log(energy)
    profile = np.exp(-((x - centre[:, 0, None, None]) ** 2 + (y - centre[:, 1, None, None]) ** 2) / (2 * width[:, None, None] ** 2))
    shower = energy[:, None, None] * profile / profile.sum(axis=(1, 2), keepdims=True)
    shower = shower * rng.normal(1, 0.05, shower.shape)
    with h5py.File(out / "showers.h5", "w", track_order=True) as f:
        f.create_dataset("showers", data=shower.round(3).astype("float32"), chunks=(128, cells, cells), compression="gzip")
        f.create_dataset("energy", data=energy[:, None].round(3).astype("float32"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "blueprints" / "data")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rivers(args.out)
    showers(args.out)
    print(f"wrote {args.out / 'rivers.zarr'} and {args.out / 'showers.h5'}")


if __name__ == "__main__":
    main()
