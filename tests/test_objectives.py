"""Training objectives (issue 20): supervised, elbo and a python() step; named model outputs
and batch fields; the climate VAE example end to end on two CPU ranks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from dtec.analysis import analyse
from dtec.compiler import compile_blueprint
from train_runs import bundle, launch, records, resumes_exactly

REPO = Path(__file__).resolve().parent.parent
VAE = REPO / "blueprints" / "climate-vae.twin"


def codes(text: str, tmp_path: Path) -> list[str]:
    if not (tmp_path / "code" / "climate").exists():
        shutil.copytree(REPO / "blueprints" / "code", tmp_path / "code", dirs_exist_ok=True)
    (tmp_path / "b.twin").write_text(text)
    return sorted(d.code for d in analyse(tmp_path / "b.twin", environ={}).diagnostics)


STEP_BLUEPRINT = """
twin "steps" {}
data "d" {
  source = python("items:pairs")
  path   = "code"
  input  = field("X")
  target = field("Y")
  batch  = 16
}
model "m" {
  arch  = python("items:Net")
  input = data.d
}
train {
  objective = python("items:step", scale = 2.0)
  path      = "code"
  epochs    = 2
  export    = none
}
"""
STEP_CODE = '''
import torch
from torch.utils.data import Dataset


class Items(Dataset):
    def __init__(self):
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(128, 4, generator=g)
        self.y = self.x.sum(1, keepdim=True)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"X": self.x[i], "Y": self.y[i], "id": i}


def pairs():
    return Items()


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)

    def forward(self, x):
        return self.layer(x)


def step(model, batch, context, scale):
    error = model(batch["input"]) - batch["target"]
    return {"loss": scale * (error ** 2).mean(), "mae": error.abs().mean()}
'''


def step_project(tmp_path: Path) -> Path:
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "items.py").write_text(STEP_CODE)
    (tmp_path / "steps.twin").write_text(STEP_BLUEPRINT)
    return tmp_path / "steps.twin"


# ---- lint ----------------------------------------------------------------------------------------
def test_the_vae_example_lints_clean_and_its_ir_holds_the_objective() -> None:
    result = analyse(VAE, environ={})
    assert list(result.diagnostics) == []
    compiled, _ = compile_blueprint(VAE, "local", environ={})
    ir = compiled.ir
    assert ir.train.objective.name == "elbo" and ir.train.objective.options == {"kl_weight": 0.1}
    assert ir.train.loss.label == "mse"  # elbo's recon is the training's loss
    assert ir.models["cvae"].outputs == ["recon", "mu", "logvar"]
    assert ir.data["fields"].fields == {"input": {"fn": "field", "name": "X"}, "target": {"fn": "input"}}
    assert ir.train.loss_label == "elbo: mse + 0.1 * kl"


def test_supervised_still_needs_a_loss_and_elbo_a_regression_recon(tmp_path: Path) -> None:
    text = VAE.read_text()
    assert codes(text.replace("objective  = elbo(recon = mse, kl_weight = 0.1)", "deterministic = false"), tmp_path) == ["DT107"]
    assert codes(text.replace("recon = mse", "recon = huber(delta = 0.5)"), tmp_path) == []
    assert codes(text.replace("outputs = [recon, mu, logvar]", "outputs = [recon, mean, logvar]"), tmp_path) == ["DT351"]
    assert codes(text.replace("outputs = [recon, mu, logvar]", "outputs = [recon, mu, mu]"), tmp_path) == ["DT351", "DT355"]


def test_a_missing_step_function_is_dt307(tmp_path: Path) -> None:
    blueprint = step_project(tmp_path)
    assert codes(blueprint.read_text(), tmp_path) == []
    assert codes(blueprint.read_text().replace("items:step", "items:stepp"), tmp_path) == ["DT307"]


# ---- the training script -------------------------------------------------------------------------
def test_the_vae_checks_one_step_on_the_cpu(tmp_path: Path) -> None:
    result = launch(bundle(VAE, tmp_path / "b"), "--check")
    report = json.loads(result.stdout.splitlines()[-1])
    assert report["ok"], report
    assert report["output_shape"] == report["target_shape"] == report["sample_shape"] == [2, 16, 16]


def test_a_python_step_trains_on_dict_items_and_validates_every_loss(tmp_path: Path) -> None:
    script = bundle(step_project(tmp_path), tmp_path / "b")
    assert json.loads(launch(script, "--check").stdout.splitlines()[-1])["ok"]
    result = launch(script, "--run-dir", str(tmp_path / "run"))
    assert result.returncode == 0, result.stderr[-3000:]
    last = records(tmp_path / "run", "epoch")[-1]
    assert {"val_loss", "val_mae"} <= set(last)
    # The step's own scale applies to the loss and not to the mae.
    assert last["val_loss"] != pytest.approx(last["val_mae"])


def test_the_vae_compiles_for_a_gpu_target() -> None:
    compiled, _ = compile_blueprint(VAE, "juwels-booster", environ={})
    script = compiled.files["train.py"]
    assert "def kl_divergence(" in script and "def named_outputs(" in script
    assert 'TRAIN["objective"]["kl_weight"]' in script and "class Fields(Dataset)" in script
    assert json.loads(compiled.files["ir.json"])["strategy"]["device"] == "cuda"


@pytest.mark.slow
def test_the_vae_trains_on_two_ranks_with_a_falling_elbo_and_resumes_exactly(tmp_path: Path) -> None:
    script = bundle(VAE, tmp_path / "b")
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    done = launch(script, "--run-dir", str(whole), ranks=2)
    assert done.returncode == 0, done.stderr[-3000:]
    history = records(whole, "epoch")
    assert len(history) == 12
    losses = [e["val_loss"] for e in history]
    assert losses[-1] < 0.25 * losses[0]  # the negative ELBO falls
    for e in history:  # each term, and the loss they make
        assert e["val_loss"] == pytest.approx(e["val_recon"] + 0.1 * e["val_kl"] / (2 * 16 * 16), rel=1e-6)
    # Stopped part-way through an epoch, then resumed: the same weights as uninterrupted.
    resumes_exactly(script, whole, parts, max_steps=30)
