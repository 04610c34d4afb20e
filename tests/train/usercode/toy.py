"""User code for the `python` data source and model: a dataset pair and a small network."""

import threading

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


class StallsInWorkers(TensorDataset):
    """A data set whose items never come in a loader worker: a worker that hangs."""

    def __getitem__(self, index):
        if torch.utils.data.get_worker_info() is not None:
            threading.Event().wait()
        return super().__getitem__(index)


def stalling_datasets(samples: int, features: int):
    """Return (train, val) as make_datasets, but val hangs in every loader worker."""
    train, val = make_datasets(samples, features)
    return train, StallsInWorkers(*val.tensors)
