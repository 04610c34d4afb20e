"""The action of a 1-D lattice φ⁴ theory, the target a normalizing flow learns to sample."""

from __future__ import annotations

import torch


def action(phi: torch.Tensor, mass2: float = 1.0, coupling: float = 0.1) -> torch.Tensor:
    """S(φ) = Σ_i [(φ_{i+1} - φ_i)²/2 + m²φ_i²/2 + λφ_i⁴] on a periodic lattice, per sample.

    `phi` is [batch, sites]; returns [batch].
    """
    hop = torch.roll(phi, shifts=-1, dims=1) - phi  # φ_{i+1} - φ_i, site L wraps to site 1
    return (hop.pow(2) / 2 + mass2 * phi.pow(2) / 2 + coupling * phi.pow(4)).sum(dim=1)
