"""A user data set for classification: `python("classes:blobs", samples = N)`."""

import torch
from torch.utils.data import TensorDataset


def blobs(samples: int) -> TensorDataset:
    """Samples of shape [6] whose class (0, 1 or 2) is the largest of their first three features."""
    x = torch.randn(samples, 6, generator=torch.Generator().manual_seed(0))
    return TensorDataset(x, x[:, :3].argmax(dim=1))
