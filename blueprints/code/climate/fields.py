"""Synthetic "climate fields" for the VAE example: smooth daily anomaly maps of two variables,
some with an extreme event (a sharp warm, dry blob), as xtclim's seasonal arrays look."""

import math

import torch
from torch.utils.data import Dataset


class ClimateFields(Dataset):
    """Items are dicts: `X` a [2, size, size] field (temperature, precipitation anomalies),
    `extreme` whether it holds an extreme event, `day` its index."""

    def __init__(self, samples: int, size: int, extremes: float, seed: int) -> None:
        generator = torch.Generator().manual_seed(seed)
        grid = torch.linspace(0.0, 1.0, size)
        yy, xx = torch.meshgrid(grid, grid, indexing="ij")
        # Four large-scale patterns (as a climate's leading modes), the same every day; each
        # day mixes them with its own weights, shifted by the season.
        k = torch.rand(4, 2, 2, generator=generator) * 2 + 0.5
        phase = torch.rand(4, 2, generator=generator) * 2 * math.pi
        patterns = torch.stack([
            torch.stack([torch.sin(2 * math.pi * (k[j, v, 0] * xx + k[j, v, 1] * yy) + phase[j, v]) for v in range(2)])
            for j in range(4)
        ])
        fields, extreme = [], []
        for day in range(samples):
            season = math.sin(2 * math.pi * day / 365)
            weights = torch.randn(4, generator=generator) * 0.5
            field = (weights[:, None, None, None] * patterns).sum(0) + 0.3 * season
            hit = bool(torch.rand(1, generator=generator) < extremes)
            if hit:  # a heatwave with drought: warm and dry at one place
                cx, cy = torch.rand(2, generator=generator) * 0.6 + 0.2
                blob = torch.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 0.01)
                field = field + torch.stack([2.5 * blob, -2.0 * blob])
            fields.append(field + 0.05 * torch.randn(2, size, size, generator=generator))
            extreme.append(hit)
        self.fields, self.extreme = torch.stack(fields).float(), extreme

    def __len__(self) -> int:
        return len(self.fields)

    def __getitem__(self, index: int) -> dict:
        return {"X": self.fields[index], "extreme": self.extreme[index], "day": index}


def climate_fields(samples: int = 512, size: int = 16, extremes: float = 0.1, seed: int = 0) -> Dataset:
    """The data set of `samples` daily fields of `size` x `size` cells."""
    return ClimateFields(samples, size, extremes, seed)
