"""Several models and optimizers and the gan objective (issue 20): the checks (DT356-DT361), the
compiled script, and the calorimeter GAN example end to end on two CPU ranks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from dtec.analysis import analyse
from dtec.compiler import compile_blueprint
from train_runs import bundle, launch, records, resumes_exactly

REPO = Path(__file__).resolve().parent.parent
GAN = REPO / "blueprints" / "calorimeter-gan.twin"


def codes(text: str, tmp_path: Path) -> list[str]:
    """The codes of the example with `text` replacing its part after `optimizer "d"`."""
    shutil.copytree(REPO / "blueprints" / "code", tmp_path / "code", dirs_exist_ok=True)
    (tmp_path / "b.twin").write_text(text)
    return sorted(d.code for d in analyse(tmp_path / "b.twin", environ={}).diagnostics)


def variant(old: str, new: str) -> str:
    text = GAN.read_text()
    assert old in text
    return text.replace(old, new)


def test_the_gan_example_lints_clean_and_its_ir_holds_both_optimizers() -> None:
    compiled, diagnostics = compile_blueprint(GAN, "local", environ={})
    assert compiled is not None and not diagnostics
    ir = json.loads(compiled.files["ir.json"])
    assert ir["train"]["model"] == "generator"
    assert {k: v["model"] for k, v in ir["train"]["optimizers"].items()} == {"d": "discriminator", "g": "generator"}
    assert ir["train"]["optimizers"]["g"]["optimizer"]["name"] == "rmsprop"
    assert ir["strategy"]["find_unused_parameters"] is True  # decided for the gan under ddp


@pytest.mark.parametrize(
    ("old", "new", "code"),
    [
        ("discriminator = model.discriminator,", "discriminator = model.generator,", "DT356"),
        ('arch    = python("showers:Discriminator")', "arch = mlp(input = 216, output = 1)\n  outputs = [validity]", "DT355"),
        ("model = model.discriminator\n", "model = model.generator\n", "DT357"),
        ('optimizer "d" {\n  model = model.discriminator\n  fn    = rmsprop(lr = 1e-3)\n}\n', "", "DT357"),
        ("epochs    = 6", "epochs = 6\n  optimizer = adam", "DT357"),
        ("kind = ddp", "kind = fsdp", "DT358"),
        ("kind = ddp", "kind = deepspeed", "DT358"),
        ("epochs    = 6", "epochs = 6\n  grad_accum = 2", "DT359"),
        ("export    = none", "export = torch_export", "DT359"),
        ("precision = fp32", "precision = fp16", "DT359"),
        ("output = energy", "output = charge", "DT360"),
        ("output = energy", "output = validity", "DT360"),
        ("kind = ddp", "kind = single\n  find_unused_parameters = true", "DT361"),
        ("field = ang,", "field = angle,", "DT377"),
        ("= [ang],", "= [energy],", "DT377"),
        ("fields = [ang, ecal]", "fields = [ang, ecal, target]", "DT378"),
        ("fields = [ang, ecal]", "fields = [ang, ecal, ang]", "DT378"),
        ('source = python("showers:showers", samples = 2048)', "source = synthetic(samples = 64, shape = [6, 6, 6], targets = 1)", "DT354"),
        ("export    = none", "export = none\n  checkpoint = { best = min(val_d_real_accuracy) }", "DT310"),
        ("export    = none", "export = none\n  checkpoint = { best = max(val_f1) }", "DT310"),
        ("epochs    = 6", "epochs = 6\n  metrics = [mae]", "DT353"),
        ("epochs    = 6", "epochs = 6\n  loss = mse", "DT350"),
    ],
)
def test_each_unsupported_combination_is_a_coded_error(old: str, new: str, code: str, tmp_path: Path) -> None:
    assert code in codes(variant(old, new), tmp_path)


def test_an_unknown_field_suggests_the_closest_carried_one(tmp_path: Path) -> None:
    shutil.copytree(REPO / "blueprints" / "code", tmp_path / "code", dirs_exist_ok=True)
    (tmp_path / "b.twin").write_text(variant("field = ecal,", "field = ecl,"))
    [found] = analyse(tmp_path / "b.twin", environ={}).diagnostics
    assert found.code == "DT377" and found.help == "did you mean `ecal`?"
    assert "data `showers` carries `target`, `ang`, `ecal`" in found.message


@pytest.mark.parametrize("best", ["min(val_d_loss)", "min(val_g_loss)", "max(val_d_real_accuracy)", "max(val_d_fake_accuracy)"])
def test_the_gan_values_are_monitorable(best: str, tmp_path: Path) -> None:
    assert codes(variant("export    = none", f"export = none\n  checkpoint = {{ best = {best} }}"), tmp_path) == []


def test_fields_reach_a_python_step_and_not_supervised(tmp_path: Path) -> None:
    showers = variant("", "")
    data = showers[showers.index('data "showers"'):showers.index('model "generator"')]
    text = 'twin "t" {}\n' + data + (
        'model "d" {\n  arch = python("showers:Discriminator")\n  input = data.showers\n  outputs = [validity, energy, angle, ecal]\n}\n'
        'train {\n  objective = python("steps:step")\n  path = "code"\n  export = none\n}\n')
    assert codes(text, tmp_path) == ["DT307"]  # only the step module is missing: fields are fine
    assert codes(text.replace('objective = python("steps:step")', "loss = mse"), tmp_path) == ["DT378"]


def test_without_optimizer_blocks_each_model_gets_a_copy_of_train_optimizer(tmp_path: Path) -> None:
    text = variant('optimizer "g" {\n  model = model.generator\n  fn    = rmsprop(lr = 1e-3)\n}\n', "")
    text = text.replace('optimizer "d" {\n  model = model.discriminator\n  fn    = rmsprop(lr = 1e-3)\n}\n', "")
    text = text.replace("epochs    = 6", "epochs = 6\n  optimizer = sgd(lr = 0.01)")
    assert codes(text, tmp_path) == []
    compiled, _ = compile_blueprint(tmp_path / "b.twin", "local", environ={})
    optimizers = json.loads(compiled.files["ir.json"])["train"]["optimizers"]
    assert sorted(optimizers) == ["discriminator", "generator"]
    assert {o["optimizer"]["name"] for o in optimizers.values()} == {"sgd"}


def test_one_optimizer_block_serves_a_single_model(tmp_path: Path) -> None:
    (tmp_path / "b.twin").write_text(
        'twin "t" {}\ndata "d" {\n  source = synthetic(samples = 64, shape = [4], targets = 1)\n  batch = 8\n}\n'
        'model "m" {\n  arch = mlp(input = 4, output = 1)\n  input = data.d\n}\n'
        'optimizer "o" {\n  model = model.m\n  fn = sgd(lr = 0.5)\n}\ntrain {\n  loss = mse\n}\n'
    )
    compiled, diagnostics = compile_blueprint(tmp_path / "b.twin", "local", environ={})
    assert compiled is not None, [d.message for d in diagnostics]
    ir = json.loads(compiled.files["ir.json"])
    assert ir["train"]["optimizer"]["name"] == "sgd" and ir["train"]["optimizer"]["lr"] == 0.5
    assert ir["train"]["optimizers"] == {}


def test_the_gan_checks_one_step_on_the_cpu(tmp_path: Path) -> None:
    script = bundle(GAN, tmp_path / "b")
    done = launch(script, "--check")
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["ok"], report
    assert report["output_shape"] == [6, 6, 6]


def test_the_gan_compiles_for_a_gpu_target() -> None:
    compiled, _ = compile_blueprint(GAN, "juwels-booster", environ={})
    script = compiled.files["train.py"]
    assert "def training_step(" in script and "class Models(nn.ModuleDict)" in script
    assert "find_unused_parameters=True" in script and "torch.optim.RMSprop(" in script
    assert json.loads(compiled.files["ir.json"])["strategy"]["device"] == "cuda"


@pytest.mark.slow
def test_the_gan_trains_on_two_ranks_and_resumes_exactly(tmp_path: Path) -> None:
    import torch

    script = bundle(GAN, tmp_path / "b")
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    done = launch(script, "--run-dir", str(whole), ranks=2)
    assert done.returncode == 0, done.stderr[-3000:]
    history = records(whole, "epoch")
    assert len(history) == 6
    # On the training batches, the discriminator neither wins outright nor is blind, and its
    # accuracy moves as the generator learns (it is not stuck at one value). On the validation
    # set, after the epoch's last updates, it may take every sample for one kind.
    real = [e["train_d_real_accuracy"] for e in history]
    fake = [e["train_d_fake_accuracy"] for e in history]
    assert all(0.0 < a < 1.0 for a in real + fake)
    assert len({round(a, 3) for a in real}) > 1 and len({round(a, 3) for a in fake}) > 1
    assert all(0.0 <= e[f"val_d_{kind}_accuracy"] <= 1.0 for e in history for kind in ("real", "fake"))
    terms = ("mape_energy", "mae_angle", "mape_ecal")
    for e in history:  # val_loss is the generator's loss; every value is recorded, each term on both kinds
        assert e["val_loss"] == e["val_g_loss"] and e["train_loss"] == pytest.approx(e["train_g_loss"], rel=1e-5)
        assert all(f"{split}_{term}{kind}" in e for split in ("train", "val") for term in terms for kind in ("", "_generated"))
        assert e["val_mape_ecal"] == 0.0 < e["val_mape_ecal_generated"]  # the real showers' ecal is the field
        assert 0.0 < e["val_mae_angle"] and 0.0 < e["train_mape_energy"]
    # The discriminator learns to estimate the energy (the extra MAPE term falls).
    assert history[-1]["val_mape_energy"] < history[0]["val_mape_energy"]
    assert history[-1]["train_mape_energy"] < history[0]["train_mape_energy"]
    # Stopped part-way through an epoch, then resumed: the same weights as uninterrupted.
    a = resumes_exactly(script, whole, parts, max_steps=30)
    assert {k.split(".")[0] for k in a} == {"generator", "discriminator"}
    checkpoint = torch.load(sorted((parts / "checkpoints").glob("step-*.pt"))[-1], weights_only=False)
    assert sorted(checkpoint["optimizer"]) == ["d", "g"]
