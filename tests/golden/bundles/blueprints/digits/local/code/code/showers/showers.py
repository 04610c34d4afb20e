"""Synthetic calorimeter showers for the GAN example: 3-D energy deposits whose size and depth
depend on the primary particle's energy (a toy of 3DGAN's data, not physics)."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import Dataset

SIZE = 6  # cells along each axis


class Showers(Dataset):
    """Items {"X": deposits [SIZE, SIZE, SIZE], "Y": primary energy [1], "ecal": total deposit [1]}."""

    def __init__(self, samples: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        energy = 1.0 + 4.0 * torch.rand(samples, 1, generator=g)
        axis = torch.arange(SIZE, dtype=torch.float32)
        # Higher energies shower deeper and wider; the total deposit is proportional to the energy.
        depth = 1.0 + torch.log(energy) + 0.3 * torch.randn(samples, 1, generator=g)
        width = 0.8 + 0.15 * energy
        longitudinal = torch.exp(-((axis - depth) ** 2) / 2.0)  # [n, SIZE] along z
        centre = (SIZE - 1) / 2 + 0.3 * torch.randn(samples, 2, generator=g)
        lateral_x = torch.exp(-((axis - centre[:, :1]) ** 2) / (2 * width**2))
        lateral_y = torch.exp(-((axis - centre[:, 1:]) ** 2) / (2 * width**2))
        shape = lateral_x[:, :, None, None] * lateral_y[:, None, :, None] * longitudinal[:, None, None, :]
        shape = shape / shape.sum(dim=(1, 2, 3), keepdim=True)
        self.x = energy[:, :, None, None] * shape
        self.y = energy

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, index: int) -> dict:
        x = self.x[index]
        return {"X": x, "Y": self.y[index], "ecal": x.sum().reshape(1)}


def showers(samples: int = 2048, seed: int = 7) -> Dataset:
    """The data set the blueprint's `python("showers:showers")` source calls."""
    return Showers(samples, seed)


class Generator(nn.Module):
    """Noise and a primary energy in, a shower out (non-negative deposits)."""

    def __init__(self, latent: int = 16, hidden: int = 128) -> None:
        super().__init__()
        cells = SIZE**3
        self.net = nn.Sequential(
            nn.Linear(latent + 1, hidden), nn.LeakyReLU(0.2),
            nn.Linear(hidden, hidden), nn.LeakyReLU(0.2),
            nn.Linear(hidden, cells),
        )

    def forward(self, noise: torch.Tensor, energy: torch.Tensor) -> torch.Tensor:
        fractions = torch.softmax(self.net(torch.cat([noise, energy], dim=1)), dim=1)
        return (energy * fractions).reshape(-1, SIZE, SIZE, SIZE)  # deposits add up to the energy


class Discriminator(nn.Module):
    """A shower in; a real/fake logit and an estimate of the primary energy out."""

    def __init__(self, hidden: int = 64) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(SIZE**3, hidden), nn.LeakyReLU(0.2))
        self.validity = nn.Linear(hidden + 1, 1)
        self.energy = nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.body(x / x.sum(dim=(1, 2, 3), keepdim=True).clamp_min(1e-6))
        total = torch.log(x.sum(dim=(1, 2, 3)).clamp_min(1e-6)).unsqueeze(1)
        return self.validity(torch.cat([features, total], dim=1)), 1.0 + 4.0 * torch.sigmoid(self.energy(features))
