"""Pulsar-like time series with a mask of where the pulses are: a segmentation task.

Each sample is a radio-telescope intensity series (one channel, `length` time bins) holding a few
narrow pulses of random amplitude and width over red noise and a slow baseline; its target marks
the bins inside a pulse with 1. Pulses cover a few percent of the bins, so a plain BCE learns to
answer "no pulse" everywhere: the example weighs the positive bins up (`bce(pos_weight = ...)`).
"""

import math

import torch
from torch.utils.data import TensorDataset


def pulses(samples: int, length: int = 256, seed: int = 0, snr: float = 3.0) -> TensorDataset:
    """`samples` pairs of series [1, length] and 0/1 masks [1, length]."""
    gen = torch.Generator().manual_seed(seed)
    bins = torch.arange(length, dtype=torch.float32)
    series = torch.empty(samples, 1, length)
    masks = torch.zeros(samples, 1, length)
    for i in range(samples):
        # Red noise: white noise smoothed by a short moving average, plus a slow baseline drift.
        white = torch.randn(length + 4, generator=gen)
        noise = (white[:-4] + white[1:-3] + white[2:-2] + white[3:-1] + white[4:]) / math.sqrt(5)
        phase, slope = torch.rand(2, generator=gen)
        signal = noise + 0.5 * torch.sin(2 * math.pi * (bins / length + phase)) * slope
        for _ in range(int(torch.randint(0, 4, (1,), generator=gen))):
            centre = float(torch.randint(8, length - 8, (1,), generator=gen))
            width = 1.0 + 2.0 * float(torch.rand(1, generator=gen))
            amplitude = snr * (0.6 + 0.8 * float(torch.rand(1, generator=gen)))
            signal += amplitude * torch.exp(-0.5 * ((bins - centre) / width) ** 2)
            masks[i, 0] = torch.maximum(masks[i, 0], ((bins - centre).abs() <= width).float())
        series[i, 0] = signal
    return TensorDataset(series, masks)
