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


# Channel 0 (temperature) predicted from channel 1 (precipitation) of the climate fields.
CHANNELS_BLUEPRINT = """
twin "channels" {}
data "fields" {
  source = python("fields:climate_fields", samples = 256, size = 16, seed = 7, shape = [2, 16, 16])
  path   = "code/climate"
  input  = field("X")
  target = channels(0)
  batch  = 16
  split  = { train = 0.75, val = 0.25 }
}
model "net" {
  arch  = unet(channels = 1, output = 1, depth = 2, width = 8)
  input = data.fields
}
train {
  loss      = mse
  optimizer = adam(lr = 3e-3)
  epochs    = 4
  seed      = 1
  export    = none
}
strategy {
  kind = ddp
}
target "local" {}
"""


def channels_project(tmp_path: Path, text: str = CHANNELS_BLUEPRINT) -> Path:
    codes(text, tmp_path)  # copies the example code
    return tmp_path / "b.twin"


# ---- lint ----------------------------------------------------------------------------------------
def test_a_channel_split_is_checked_against_the_declared_shape(tmp_path: Path) -> None:
    assert codes(CHANNELS_BLUEPRINT, tmp_path) == []
    assert codes(CHANNELS_BLUEPRINT.replace("channels(0)", "channels([1])"), tmp_path) == []
    for bad in ("channels(2)", "channels([0, 1])", "channels([0, 0])"):
        assert codes(CHANNELS_BLUEPRINT.replace("channels(0)", bad), tmp_path) == ["DT376"], bad
    assert codes(CHANNELS_BLUEPRINT.replace("shape = [2, 16, 16]", "shape = [32]"), tmp_path) == ["DT376"]
    # The model reads the channels the target leaves: one of two.
    assert codes(CHANNELS_BLUEPRINT.replace("unet(channels = 1", "unet(channels = 2"), tmp_path) == ["DT300"]
    # Not declared: the script checks the first sample.
    assert codes(CHANNELS_BLUEPRINT.replace(", shape = [2, 16, 16]", "").replace("channels(0)", "channels(5)"), tmp_path) == []
    # Other sources give pairs.
    synthetic = 'source = synthetic(samples = 64, shape = [2, 16, 16], targets = 1)'
    text = CHANNELS_BLUEPRINT.replace('source = python("fields:climate_fields", samples = 256, size = 16, seed = 7, shape = [2, 16, 16])', synthetic)
    assert "DT354" in codes(text.replace('  input  = field("X")\n', "").replace('  path   = "code/climate"\n', ""), tmp_path)


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


def test_a_channel_split_gives_the_model_the_other_channels(tmp_path: Path) -> None:
    script = bundle(channels_project(tmp_path), tmp_path / "b")
    assert "TARGET_CHANNELS = [0]" in script.read_text()
    report = json.loads(launch(script, "--check").stdout.splitlines()[-1])
    assert report["ok"], report
    assert report["sample_shape"] == report["target_shape"] == report["output_shape"] == [1, 16, 16]
    # A channel the items do not have, undeclared at lint time, is a coded error of the first batch.
    bad = bundle(channels_project(tmp_path / "bad", CHANNELS_BLUEPRINT.replace(", shape = [2, 16, 16]", "").replace("channels(0)", "channels(5)")), tmp_path / "bad" / "b")
    report = json.loads(launch(bad, "--check").stdout.splitlines()[-1])
    assert not report["ok"] and "takes the channels [5] as its target, but a sample has shape [2, 16, 16]" in json.dumps(report)


def test_a_python_step_reads_the_fields_the_data_carries(tmp_path: Path) -> None:
    blueprint = step_project(tmp_path)
    text = blueprint.read_text().replace('target = field("Y")', 'target = field("Y")\n  fields = [id]')
    blueprint.write_text(text.replace("batch  = 16", "batch  = 16\n  split  = { train = 0.75, val = 0.125, test = 0.125 }"))
    code = tmp_path / "code" / "items.py"
    code.write_text(code.read_text() + """

def step_with_id(model, batch, context, scale):
    losses = step(model, batch, context, scale)
    return {**losses, "id": batch["id"].double().mean()}
""")
    blueprint.write_text(blueprint.read_text().replace("items:step", "items:step_with_id"))
    assert codes(blueprint.read_text(), tmp_path) == []
    script = bundle(blueprint, tmp_path / "b")
    result = launch(script, "--run-dir", str(tmp_path / "run"))
    assert result.returncode == 0, result.stderr[-3000:]
    # The mean id of the validation items: the field reached the step, per sample.
    last = records(tmp_path / "run", "epoch")[-1]
    assert 0 < last["val_id"] < 128 and last["val_id"] != pytest.approx(last["train_loss"])
    evaluated = launch(script, "--evaluate", "--run-dir", str(tmp_path / "run"))
    report = json.loads(evaluated.stdout.splitlines()[-1] if evaluated.stdout.strip() else evaluated.stderr.splitlines()[-1])
    assert report["ok"], report
    assert report["metrics"]["test_id"] > 0


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


@pytest.mark.slow
def test_a_channel_split_trains_on_two_ranks(tmp_path: Path) -> None:
    import torch

    from_blueprint = channels_project(tmp_path)
    script = bundle(from_blueprint, tmp_path / "b")
    done = launch(script, "--run-dir", str(tmp_path / "run"), ranks=2)
    assert done.returncode == 0, done.stderr[-3000:]
    losses = [e["val_loss"] for e in records(tmp_path / "run", "epoch")]
    assert len(losses) == 4 and losses[-1] < 0.5 * losses[0]
    # The model's first layer reads one channel: the split gave it channel 1 alone.
    weights = torch.load(tmp_path / "run" / "final_model.pt", weights_only=True)
    first = next(v for k, v in weights.items() if k.endswith("weight") and v.ndim == 4)
    assert first.shape[1] == 1
