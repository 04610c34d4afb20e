"""Render a bundle's train.py into a folder and run it the way a cluster would (torchrun, python)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

from dtec.backends.train_script import render_train


def write_script(ctx: dict[str, Any], folder: Path) -> Path:
    """Render `ctx` to `folder/train.py` and return its path."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "train.py"
    script.write_text(render_train(ctx))
    return script


def clean_env(**extra: str) -> dict[str, str]:
    """The environment for a run: no inherited launcher variables, one thread per rank."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SLURM_", "TORCHELASTIC_")) and k not in
           ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")}
    env.update(OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", **extra)
    return env


def torchrun_cmd(script: Path, nproc: int, *args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc_per_node={nproc}", str(script), *args]


def run(cmd: list[str], timeout: float = 180, **env: str) -> subprocess.CompletedProcess:
    """Run `cmd` to completion; stdout and stderr are merged into `.stdout`."""
    return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=timeout, env=clean_env(**env))


def torchrun(script: Path, nproc: int, *args: str, timeout: float = 180,
             **env: str) -> subprocess.CompletedProcess:
    return run(torchrun_cmd(script, nproc, *args), timeout=timeout, **env)


def metrics(run_dir: Path) -> list[dict]:
    """The records of run_dir/metrics.jsonl."""
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def epochs(run_dir: Path) -> list[dict]:
    return [record for record in metrics(run_dir) if record["kind"] == "epoch"]


def summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "final_model.pt", map_location="cpu", weights_only=True)


def same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
