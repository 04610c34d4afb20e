"""User loss functions for `train.loss = python(...)`: called with (prediction, target)."""

import torch
import torch.nn.functional as F


def smooth_l1(pred: torch.Tensor, target: torch.Tensor, beta: float = 1.0) -> torch.Tensor:
    """The batch's mean smooth L1 error, its keyword argument from the blueprint."""
    return F.smooth_l1_loss(pred, target, beta=beta)


def per_sample(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Wrong on purpose: one loss per sample, not the batch's mean."""
    return (pred - target).pow(2).mean(dim=1)
