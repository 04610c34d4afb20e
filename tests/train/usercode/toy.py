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


def crossing_datasets(samples: int, features: int):
    """Return (train, val): train has y = 2 * sum of x, val y = sum of x.

    A model fitted from zero passes y = sum of x on its way, so the validation loss falls to a
    minimum part-way through training and rises after it: a known best epoch mid-run.
    """
    train, val = make_datasets(samples, features)
    x, y = train.tensors
    return TensorDataset(x, 2 * y), val
