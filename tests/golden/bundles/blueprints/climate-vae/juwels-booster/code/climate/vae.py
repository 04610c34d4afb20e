"""A small convolutional variational autoencoder, as xtclim's ConvVAE: it returns the
reconstruction, and the mean and log-variance of the latent posterior."""

import torch
import torch.nn as nn


class ConvVAE(nn.Module):
    """[channels, size, size] fields -> `latent` Gaussian variables -> reconstructed fields."""

    def __init__(self, channels: int = 2, size: int = 16, latent: int = 8, width: int = 16) -> None:
        super().__init__()
        self.cells = size // 4
        flat = 2 * width * self.cells * self.cells
        self.encoder = nn.Sequential(
            nn.Conv2d(channels, width, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.ReLU(),
            nn.Flatten(),
        )
        self.mu = nn.Linear(flat, latent)
        self.logvar = nn.Linear(flat, latent)
        self.expand = nn.Linear(latent, flat)
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(2 * width, width, 4, stride=2, padding=1), nn.ReLU(),
            nn.ConvTranspose2d(width, channels, 4, stride=2, padding=1),
        )
        self.width = width

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        hidden = self.encoder(x)
        mu, logvar = self.mu(hidden), self.logvar(hidden)
        # Sampled while training (the reparameterisation trick); the mean when evaluating.
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if self.training else mu
        grid = self.expand(z).view(-1, 2 * self.width, self.cells, self.cells)
        return self.decoder(grid), mu, logvar
