"""The workload a hand-written loop trains: the same model, data and loss as a dtec bundle.

The comparison is about the training loop and its harness (process group, sampler, loader,
wrapping, optimizer step, instrumentation), not about the model code. So the hand-written loops
take the *workload* from the bundle's `train.py`: its model class (`build_model`), its synthetic
data (`load_dataset`, `split`: the same tensors, the same train/validation split), its loss
(`loss_fn`), its FSDP unit types and its hyper-parameters (`DATA`, `TRAIN`). Everything that runs
per step is written by hand in the loop files next to this one.

Importing the bundle's `train.py` runs only its top level (imports and constants), not `main()`.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import sys
from pathlib import Path

import torch


def load_bundle(bundle: Path):
    """Import `bundle/train.py` as the module `dtec_bundle_train`."""
    path = Path(bundle).resolve() / "train.py"
    spec = importlib.util.spec_from_file_location("dtec_bundle_train", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def parse_args(argv: list[str] | None, description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--bundle", type=Path, required=True, help="a dtec bundle (its train.py)")
    parser.add_argument("--steps", type=int, required=True, help="optimizer steps to run")
    parser.add_argument("--save", type=Path, help="write the final weights here (rank 0)")
    return parser.parse_args(argv)


def make_optimizer(parameters, settings: dict) -> torch.optim.Optimizer:
    """The blueprint's optimizer, with its settings."""
    name = settings["name"]
    if name == "adamw":
        return torch.optim.AdamW(
            parameters, lr=settings["lr"], weight_decay=settings["weight_decay"]
        )
    if name == "adam":
        return torch.optim.Adam(
            parameters, lr=settings["lr"], weight_decay=settings["weight_decay"]
        )
    if name == "sgd":
        return torch.optim.SGD(
            parameters,
            lr=settings["lr"],
            momentum=settings["momentum"],
            weight_decay=settings["weight_decay"],
        )
    raise ValueError(f"optimizer {name}")


def lr_factor(settings: dict, total_steps: int, steps_per_epoch: int):
    """The blueprint's schedule as a LambdaLR factor (stepped once per optimizer step)."""
    name = settings["name"]
    if name == "cosine":
        warmup = settings["warmup"]

        def cosine(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            progress = (step - warmup) / max(1, total_steps - warmup)
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

        return cosine
    if name == "step":
        every, gamma = settings["every"], settings["gamma"]
        return lambda step: gamma ** (step // (every * steps_per_epoch))
    return None


def amp_dtype(train: dict) -> torch.dtype | None:
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[train["precision"]]
