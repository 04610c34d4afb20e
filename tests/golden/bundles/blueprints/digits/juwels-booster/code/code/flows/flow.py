"""A RealNVP-style normalizing flow: affine coupling layers on a checkerboard of lattice sites."""

from __future__ import annotations

import torch
import torch.nn as nn


class AffineCoupling(nn.Module):
    """Transforms the sites of one parity given the others: x_a' = x_a·exp(s(x_b)) + t(x_b).

    The log-Jacobian is Σ s. The last layer starts at zero, so the coupling starts as the identity.
    """

    def __init__(self, sites: int, parity: int, hidden: int) -> None:
        super().__init__()
        mask = (torch.arange(sites) % 2 == parity).float()
        self.register_buffer("mask", mask)  # 1: sites that condition, 0: sites transformed
        self.net = nn.Sequential(
            nn.Linear(sites, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(),
            nn.Linear(hidden, 2 * sites),
        )
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        frozen = x * self.mask
        s, t = self.net(frozen).chunk(2, dim=1)
        s = torch.tanh(s) * (1 - self.mask)  # bounded scales, only on the transformed sites
        t = t * (1 - self.mask)
        return frozen + (1 - self.mask) * (x * torch.exp(s) + t), s.sum(dim=1)


class CouplingFlow(nn.Module):
    """`layers` affine couplings, alternating parity; returns (samples, log|det J|)."""

    def __init__(self, sites: int, layers: int = 6, hidden: int = 64) -> None:
        super().__init__()
        self.layers = nn.ModuleList(AffineCoupling(sites, i % 2, hidden) for i in range(layers))

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, logdet = z, z.new_zeros(z.shape[0])
        for layer in self.layers:
            x, step = layer(x)
            logdet = logdet + step
        return x, logdet
