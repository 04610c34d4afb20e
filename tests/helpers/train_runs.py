"""Compiling bundles and running their train.py in subprocesses, as the end-to-end tests do.

A plain module, not a test file: pyproject.toml puts tests/helpers on sys.path (`pythonpath`),
so test files import it by name without the checkout's root (and its dtec/) on sys.path.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from dtec.compiler import compile_blueprint
from dtec.output import write_bundle


def clean_env(data_root: str | None = ".", **extra: str) -> dict[str, str]:
    """No inherited launcher variables; one thread per rank (the machine has two cores).

    The tests keep data files beside train.py, so by default a relative data root is relative to
    the bundle; `data_root=None` leaves DTEC_DATA_ROOT as it is.
    """
    launcher = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SLURM_", "TORCHELASTIC_")) and k not in launcher}
    env.update(OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", **extra)
    if data_root is not None:
        env["DTEC_DATA_ROOT"] = data_root
    return env


def torchrun_cmd(script: Path, nproc: int, *args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc_per_node={nproc}", str(script), *args]


def run(cmd: list[str], timeout: float = 180, **env: str) -> subprocess.CompletedProcess:
    """Run to completion; stderr is merged into stdout, which the assertions print on failure."""
    return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=timeout, env=clean_env(**env))


def torchrun(script: Path, *args: str, nproc: int = 2,
             timeout: float = 180) -> subprocess.CompletedProcess:
    return run(torchrun_cmd(script, nproc, "--run-dir", str(script.parent / "run"), *args),
               timeout=timeout)


def launch(script: Path, *args: str, ranks: int = 0) -> subprocess.CompletedProcess:
    """Run `script` with `args`: as one plain process, or under torchrun with `ranks` ranks;
    stdout and stderr apart, the data root left as the environment has it."""
    launcher = torchrun_cmd(script, ranks) if ranks else [sys.executable, str(script)]
    return subprocess.run([*launcher, *args], capture_output=True, text=True, timeout=600,
                          env=clean_env(data_root=None))


def ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, result.stdout[-6000:]
    return result.stdout


def records(run_dir: Path, kind: str) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == kind]


def final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "final_model.pt", map_location="cpu", weights_only=True)


def load_script(path: Path):
    """The rendered train.py as a module (its main() is not run)."""
    name = f"train_{abs(hash(path))}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # its dataclasses look their module up
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[name]
    return module


def bundle(blueprint: Path, folder: Path, target: str = "local", environ: dict[str, str] | None = None,
           force: bool = False) -> Path:
    """Compile `blueprint` for `target` into `folder` (`force`: beside other files); return its train.py."""
    compiled, diagnostics = compile_blueprint(blueprint, target, environ=environ or {})
    assert compiled is not None, [(d.code, d.message) for d in diagnostics]
    write_bundle(compiled.files, folder, force=force)
    return folder / "train.py"


def bundle_text(folder: Path, text: str) -> Path:
    """Compile `text` as folder/bp.twin into folder, beside its data (the tests' data root is
    "."); return its train.py."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "bp.twin").write_text(text)
    return bundle(folder / "bp.twin", folder, environ={"DTEC_PROJECT_ROOT": str(folder)}, force=True)


def resumes_exactly(script: Path, whole: Path, parts: Path, max_steps: int) -> dict[str, torch.Tensor]:
    """Run `script` on 2 ranks into `parts`, stopped after `max_steps` steps and resumed: the final
    weights equal those of the uninterrupted run in `whole`, which are returned."""
    first = launch(script, "--run-dir", str(parts), "--max-steps", str(max_steps), ranks=2)
    assert first.returncode == 0, first.stderr[-3000:]
    second = launch(script, "--run-dir", str(parts), ranks=2)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "resumed from" in second.stdout + second.stderr
    a = torch.load(whole / "final_model.pt", weights_only=True)
    b = torch.load(parts / "final_model.pt", weights_only=True)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    return a
