"""User code for the `python` data source and model: a dataset pair and a small network."""

import torch
from torch import nn
from torch.utils.data import TensorDataset


def make_datasets(samples: int, features: int):
    """Return (train, val) with y = sum of x, so a linear model learns it."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(samples, features, generator=gen)
    y = x.sum(dim=1, keepdim=True)
    cut = samples * 3 // 4
    return TensorDataset(x[:cut], y[:cut]), TensorDataset(x[cut:], y[cut:])


class Net(nn.Module):
    def __init__(self, features: int, hidden: int):
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(features, hidden), nn.Tanh(), nn.Linear(hidden, 1))

    def forward(self, x):
        return self.layers(x)
