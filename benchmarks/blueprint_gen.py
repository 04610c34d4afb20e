"""Generated blueprints: realistic variants of the shipped ones, and blueprints of a given size."""

from __future__ import annotations

import random
import re
import shutil
from pathlib import Path

from benchmarks.common import BLUEPRINTS

# Attribute values that vary between the generated variants (each stays valid for its key).
_CHOICES = {
    "seed": [str(n) for n in range(100)],
    "epochs": ["1", "2", "3", "5", "8", "10", "20"],
}


def shipped() -> list[Path]:
    return sorted(BLUEPRINTS.glob("*.twin"))


def realistic(n: int, folder: Path, seed: int = 0) -> list[Path]:
    """Write `n` variants of the shipped blueprints (same size and shape, other names and values)."""
    rng = random.Random(seed)
    sources = [path.read_text() for path in shipped()]
    folder.mkdir(parents=True, exist_ok=True)
    for support in (p for p in BLUEPRINTS.iterdir() if p.is_dir()):  # their code and data files
        shutil.copytree(support, folder / support.name, dirs_exist_ok=True)
    paths = []
    for i in range(n):
        text = sources[i % len(sources)]
        text = re.sub(
            r'^twin "([^"]+)"', lambda m: f'twin "{m.group(1)}-{i:05d}"', text, count=1, flags=re.M
        )
        for key, choices in _CHOICES.items():
            text = re.sub(
                rf"^(\s*{key}\s*=\s*)\d+\s*$",
                lambda m: m.group(1) + rng.choice(choices),
                text,
                flags=re.M,
            )
        # Halve the batch or keep it: a larger one may no longer fit the machines (DT208).
        halve = rng.random() < 0.5
        text = re.sub(
            r"^(\s*batch\s*=\s*)(\d+)\s*$",
            lambda m: m.group(1) + str(max(1, int(m.group(2)) // (2 if halve else 1))),
            text,
            flags=re.M,
        )
        text = re.sub(
            r"lr = [0-9.e-]+",
            lambda m: f"lr = {rng.choice(['1e-3', '3e-4', '5e-4', '1e-4'])}",
            text,
        )
        path = folder / f"bp-{i:05d}.twin"
        path.write_text(text)
        paths.append(path)
    return paths


def quickstart() -> str:
    return (BLUEPRINTS / "quickstart.twin").read_text()


def with_blocks(n: int) -> str:
    """The quickstart plus `n` further `data` blocks of three attributes each (unused: one DT115 each)."""
    extra = "".join(
        f'\ndata "extra{i}" {{\n'
        f"  source = synthetic(samples = 1024, shape = [8], targets = 1, seed = {i})\n"
        f"  batch  = 32\n"
        f"  split  = {{ train = 0.8, val = 0.2 }}\n"
        f"}}\n"
        for i in range(n)
    )
    return quickstart() + extra


def with_attributes(n: int) -> str:
    """The quickstart plus a `target "local"` block whose `env` map has `n` entries."""
    entries = "".join(f'    VAR_{i} = "value-{i}"\n' for i in range(n))
    return quickstart() + f'\ntarget "local" {{\n  env = {{\n{entries}  }}\n}}\n'


SERIES = {"blocks": with_blocks, "attributes": with_attributes}
