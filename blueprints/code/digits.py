"""MNIST-like digits drawn on the fly: seven-segment glyphs, jittered and noisy, 28 x 28.

The shipped example needs no download: every sample is drawn from a seeded generator, so the same
`samples` and `seed` give the same data on every rank and machine.
"""

import torch
from torch.utils.data import TensorDataset

# The strokes each digit is drawn with: top, upper/lower left, upper/lower right, middle, bottom.
_SEGMENTS = {
    0: "t ul ur ll lr b",
    1: "ur lr",
    2: "t ur m ll b",
    3: "t ur m lr b",
    4: "ul ur m lr",
    5: "t ul m lr b",
    6: "t ul m ll lr b",
    7: "t ur lr",
    8: "t ul ur m ll lr b",
    9: "t ul ur m lr b",
}
# Each stroke as (row0, col0, row1, col1) on a unit glyph 1 wide and 2 high.
_STROKES = {
    "t": (0, 0, 0, 1), "ul": (0, 0, 1, 0), "ur": (0, 1, 1, 1), "m": (1, 0, 1, 1),
    "ll": (1, 0, 2, 0), "lr": (1, 1, 2, 1), "b": (2, 0, 2, 1),
}
SIZE = 28


def _draw(digit: int, gen: torch.Generator) -> torch.Tensor:
    """One 1 x 28 x 28 image of `digit` at a random place, size, slant and stroke width."""
    rows = torch.arange(SIZE, dtype=torch.float32).view(-1, 1)
    cols = torch.arange(SIZE, dtype=torch.float32).view(1, -1)
    u = torch.rand(5, generator=gen)
    height = 14 + 6 * u[0]  # glyph height in pixels
    width = height * (0.45 + 0.15 * u[1])
    top = 2 + (SIZE - 4 - height) * u[2]
    left = 2 + (SIZE - 4 - width) * u[3]
    slant = (u[4] - 0.5) * 0.4
    thickness = 1.0 + 0.8 * torch.rand(1, generator=gen).item()
    image = torch.zeros(SIZE, SIZE)
    for name in _SEGMENTS[digit].split():
        r0, c0, r1, c1 = _STROKES[name]
        y0, y1 = top + r0 * height / 2, top + r1 * height / 2
        x0 = left + c0 * width - slant * (y0 - top)
        x1 = left + c1 * width - slant * (y1 - top)
        # Distance of every pixel to the stroke's segment, made into a soft line.
        dy, dx = y1 - y0, x1 - x0
        t = ((rows - y0) * dy + (cols - x0) * dx) / max(dy * dy + dx * dx, 1e-6)
        t = t.clamp(0, 1)
        distance = ((rows - y0 - t * dy) ** 2 + (cols - x0 - t * dx) ** 2).sqrt()
        image = torch.maximum(image, (thickness + 0.5 - distance).clamp(0, 1))
    return image.unsqueeze(0)


def digits(samples: int, seed: int = 0, noise: float = 0.2) -> TensorDataset:
    """`samples` images [1, 28, 28] in [0, 1] with labels 0-9, balanced, in random order."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(samples) % 10
    labels = labels[torch.randperm(samples, generator=gen)]
    images = torch.stack([_draw(int(label), gen) for label in labels])
    images = (images + noise * torch.randn(images.shape, generator=gen)).clamp(0, 1)
    return TensorDataset(images, labels)
