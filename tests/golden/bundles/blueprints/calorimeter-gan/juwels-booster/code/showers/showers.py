"""Synthetic calorimeter showers for the GAN example: 3-D energy deposits whose size and depth
depend on the primary particle's energy, tilted by its incidence angle, of which the calorimeter
collects a sampling fraction (a toy of 3DGAN's data, not physics)."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import Dataset

SIZE = 6  # cells along each axis


class Showers(Dataset):
    """Items {"X": deposits [SIZE, SIZE, SIZE], "Y": primary energy [1], "ang": incidence angle [1]
    (radians from the calorimeter's axis), "ecal": total deposit [1]}."""

    def __init__(self, samples: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        energy = 1.0 + 4.0 * torch.rand(samples, 1, generator=g)
        axis = torch.arange(SIZE, dtype=torch.float32)
        # Higher energies shower deeper and wider; the total deposit is proportional to the energy.
        depth = 1.0 + torch.log(energy) + 0.3 * torch.randn(samples, 1, generator=g)
        width = 0.8 + 0.15 * energy
        longitudinal = torch.exp(-((axis - depth) ** 2) / 2.0)  # [n, SIZE] along z
        angle = 0.6 * (torch.rand(samples, 1, generator=g) - 0.5)
        centre = (SIZE - 1) / 2 + 0.3 * torch.randn(samples, 2, generator=g)
        # The angle tilts the shower in x: its centre moves along the depth z.
        centre_x = centre[:, :1, None] + torch.tan(angle)[:, :, None] * (axis - depth[:, :, None])  # [n, 1, z]
        lateral_x = torch.exp(-((axis[None, :, None] - centre_x) ** 2) / (2 * width[:, :, None] ** 2))  # [n, x, z]
        lateral_y = torch.exp(-((axis - centre[:, 1:]) ** 2) / (2 * width**2))
        shape = lateral_x[:, :, None, :] * lateral_y[:, None, :, None] * longitudinal[:, None, None, :]
        shape = shape / shape.sum(dim=(1, 2, 3), keepdim=True)
        fraction = 0.8 + 0.02 * torch.randn(samples, 1, generator=g)  # what the calorimeter samples
        self.x = (fraction * energy)[:, :, None, None] * shape
        self.y, self.angle = energy, angle

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, index: int) -> dict:
        x = self.x[index]
        return {"X": x, "Y": self.y[index], "ang": self.angle[index], "ecal": x.sum().reshape(1)}


def showers(samples: int = 2048, seed: int = 7) -> Dataset:
    """The data set the blueprint's `python("showers:showers")` source calls."""
    return Showers(samples, seed)


class Generator(nn.Module):
    """Noise, a primary energy and an incidence angle in, a shower out (non-negative deposits)."""

    def __init__(self, latent: int = 16, hidden: int = 128) -> None:
        super().__init__()
        cells = SIZE**3
        self.net = nn.Sequential(
            nn.Linear(latent + 2, hidden), nn.LeakyReLU(0.2),
            nn.Linear(hidden, hidden), nn.LeakyReLU(0.2),
            nn.Linear(hidden, cells + 1),
        )

    def forward(self, noise: torch.Tensor, energy: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
        out = self.net(torch.cat([noise, energy, angle], dim=1))
        fractions = torch.softmax(out[:, :-1], dim=1)
        deposited = energy * torch.sigmoid(out[:, -1:])  # the sampled share of the energy (ecal)
        return (deposited * fractions).reshape(-1, SIZE, SIZE, SIZE)


class Discriminator(nn.Module):
    """A shower in; a real/fake logit, estimates of the primary energy and the incidence angle,
    and the shower's total deposit (ecal, computed: 3DGAN's Lambda layer) out."""

    def __init__(self, hidden: int = 64) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(SIZE**3, hidden), nn.LeakyReLU(0.2))
        self.validity = nn.Linear(hidden + 1, 1)
        self.energy = nn.Linear(hidden + 1, 1)
        self.angle = nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        ecal = x.sum(dim=(1, 2, 3)).unsqueeze(1)
        features = self.body(x / ecal[:, :, None, None].clamp_min(1e-6))
        with_total = torch.cat([features, torch.log(ecal.clamp_min(1e-6))], dim=1)
        energy = 1.0 + 4.0 * torch.sigmoid(self.energy(with_total))
        return self.validity(with_total), energy, 0.3 * torch.tanh(self.angle(features)), ecal
