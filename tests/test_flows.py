"""Data-free training (issue 20): a `sampler` source, the `reverse_kl` objective of a normalizing
flow, weight initialisation and per-rank seeds; the phi4-flow example end to end on two CPU ranks."""

from __future__ import annotations

import json
import math
import shutil
import sys
from pathlib import Path

import pytest

from dtec.analysis import analyse
from dtec.compiler import compile_blueprint
from train_runs import bundle, launch, load_script, records, resumes_exactly

REPO = Path(__file__).resolve().parent.parent
FLOW = REPO / "blueprints" / "phi4-flow.twin"
OBJECTIVE = """objective = reverse_kl(
    prior  = normal(mean = 0, std = 1),
    action = python("phi4:action", mass2 = 0.5, coupling = 0.5),
  )"""  # as `dtec fmt` lays it out in the example


def project(tmp_path: Path, text: str) -> Path:
    """The example's blueprint, as `text`, beside a copy of its code."""
    if not (tmp_path / "code").exists():
        shutil.copytree(REPO / "blueprints" / "code" / "flows", tmp_path / "code" / "flows")
    (tmp_path / "b.twin").write_text(text)
    return tmp_path / "b.twin"


def codes(text: str, tmp_path: Path) -> list[str]:
    return sorted(d.code for d in analyse(project(tmp_path, text), environ={}).diagnostics)


# ---- lint ----------------------------------------------------------------------------------------
def test_the_flow_example_lints_clean_and_its_ir_holds_the_objective() -> None:
    assert list(analyse(FLOW, environ={}).diagnostics) == []
    compiled, _ = compile_blueprint(FLOW, "local", environ={})
    ir = compiled.ir
    assert ir.train.objective.name == "reverse_kl" and ir.train.loss is None and ir.train.metrics == []
    assert ir.train.objective.options["prior"] == {"fn": "normal", "mean": 0.0, "std": 1.0}
    assert ir.train.objective.options["action"] == {"fn": "python", "callable": "phi4:action",
                                                    "kwargs": {"mass2": 0.5, "coupling": 0.5}}
    assert ir.data["prior"].source == "sampler" and ir.data["prior"].sample_shape == [16]
    assert ir.models["flow"].init == {"fn": "normal", "mean": 0.0, "std": 0.01}
    assert ir.train.seed_per_rank is True
    assert ir.train.checkpoint.best.metric == "val_ess" and ir.train.checkpoint.best.mode == "max"


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("", "", []),
        # a sampler has no targets: the supervised objective (or elbo) cannot train on it
        (OBJECTIVE, "loss = mse", ["DT310", "DT362"]),  # and val_ess is not recorded
        # reverse_kl needs the draws of a sampler
        ("sampler(shape = [16], batches = 40, val_samples = 4096, seed = 3)",
         "synthetic(samples = 64, shape = [16], targets = 1)", ["DT362"]),
        ("outputs = [x, logdet]", "outputs = [x, logj]", ["DT351"]),
        ("  outputs = [x, logdet]\n", "", ["DT351"]),
        ("  export        = none", "  export = none\n  metrics = [mae]", ["DT353"]),
        ("  export        = none", "  export = none\n  loss = mse", ["DT350"]),
        ("  batch  = 128", "  batch  = 128\n  split  = { train = 0.5, val = 0.5 }", ["DT363"]),
        ("  batch  = 128", "  batch  = 128\n  shuffle = false", ["DT363"]),
        ("phi4:action", "phi4:acton", ["DT307"]),
        ("max(val_ess)", "min(val_ess)", ["DT310"]),
        ("max(val_ess)", "min(val_kl)", []),
        ("max(val_ess)", "max(val_accuracy)", ["DT310"]),
        ("val_samples = 4096", "val_samples = 0", ["DT310"]),
        ("std = 0.01)", "mean = 1)", ["DT107"]),  # std is required
        ("init    = normal(std = 0.01)", "init    = orthogonal", ["DT103"]),
        ("seed_per_rank = true", "seed_per_rank = 1", ["DT105"]),
    ],
)
def test_lint_of_the_new_keys(old: str, new: str, expected: list[str], tmp_path: Path) -> None:
    text = FLOW.read_text()
    assert old in text
    assert codes(text.replace(old, new), tmp_path) == expected


def test_val_ess_is_recorded_only_by_reverse_kl(tmp_path: Path) -> None:
    vae = (REPO / "blueprints" / "climate-vae.twin").read_text()
    shutil.copytree(REPO / "blueprints" / "code", tmp_path / "code")
    (tmp_path / "v.twin").write_text(vae.replace("min(val_loss)", "max(val_ess)"))
    assert [d.code for d in analyse(tmp_path / "v.twin", environ={}).diagnostics] == ["DT310"]
    (tmp_path / "v.twin").write_text(vae.replace("min(val_loss)", "min(val_kl)"))  # elbo's own
    assert list(analyse(tmp_path / "v.twin", environ={}).diagnostics) == []


# ---- the training script -------------------------------------------------------------------------
def test_the_flow_checks_one_step_on_the_cpu(tmp_path: Path) -> None:
    result = launch(bundle(FLOW, tmp_path / "b"), "--check")
    report = json.loads(result.stdout.splitlines()[-1])
    assert report["ok"], report
    assert report["sample_shape"] == report["output_shape"] == [16] and report["val_samples"] == 4096


def test_a_logdet_of_the_wrong_shape_is_one_line(tmp_path: Path) -> None:
    blueprint = project(tmp_path, FLOW.read_text())
    flow = tmp_path / "code" / "flows" / "flow.py"
    flow.write_text(flow.read_text().replace("return x, logdet", "return x, logdet[:1]"))
    report = json.loads(launch(bundle(blueprint, tmp_path / "b"), "--check").stdout.splitlines()[-1])
    assert not report["ok"] and report["explained"] and report["stage"] == "output"
    assert "`logdet` of shape [1]" in report["error"]


@pytest.mark.parametrize(
    ("init", "weight_std", "weight_mean"),
    [("normal(std = 0.01)", 0.01, 0.0), ("normal(mean = 0.5, std = 0.2)", 0.2, 0.5), ("zeros", 0.0, 0.0),
     ("xavier(gain = 2.0)", None, 0.0)],
)
def test_init_sets_every_linear_layer_before_training(
    init: str, weight_std: float | None, weight_mean: float, tmp_path: Path
) -> None:
    import torch

    text = FLOW.read_text().replace("normal(std = 0.01)", init)
    module = load_script(bundle(project(tmp_path, text), tmp_path / "b"))
    module.seed_everything(0)
    model = module.build_model((16,))
    last = model.layers[0].net[-1]
    assert torch.count_nonzero(last.weight) == 0  # the flow's own: its last layers start at zero
    module.init_weights(model)
    linear = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert len(linear) == 18
    for layer in linear:
        assert torch.count_nonzero(layer.bias) == 0
        if weight_std is None:  # xavier: uniform in ±gain·sqrt(6 / (fan_in + fan_out))
            bound = 2.0 * math.sqrt(6 / sum(layer.weight.shape))
            assert layer.weight.abs().max() <= bound and layer.weight.std() > bound / 4
        else:
            assert layer.weight.std().item() == pytest.approx(weight_std, rel=0.2, abs=1e-12)
            assert layer.weight.mean().item() == pytest.approx(weight_mean, abs=0.05)


def test_without_init_the_model_keeps_its_own_weights(tmp_path: Path) -> None:
    text = FLOW.read_text().replace("  init    = normal(std = 0.01)  # small weights: the flow starts near the identity\n", "")
    script = bundle(project(tmp_path, text), tmp_path / "b")
    assert "init_weights" not in script.read_text() and "MODEL[\"init\"]" not in script.read_text()


def test_the_flow_compiles_for_a_gpu_target() -> None:
    compiled, _ = compile_blueprint(FLOW, "juwels-booster", environ={})
    script = compiled.files["train.py"]
    assert "def prior_sample(" in script and "class LogWeights:" in script and "class PriorBatches:" in script
    assert "init_weights(model)  # before trained weights" in script
    assert "seed_everything((TRAIN[\"seed\"] * 1_000_003 + 1 + rt.rank) % 2**63)" in script
    assert json.loads(compiled.files["ir.json"])["strategy"]["device"] == "cuda"


def validation_by_hand(run_dir: Path, blueprint_text: str) -> dict:
    """The final model's validation values computed here, in one process, from the draws the
    sampler makes (normal, seed 3) and the action: what the script's ranks must agree on."""
    import torch

    sys.path.insert(0, str(REPO / "blueprints" / "code" / "flows"))
    try:
        from flow import CouplingFlow
        from phi4 import action
    finally:
        sys.path.pop(0)
    model = CouplingFlow(sites=16, layers=6, hidden=64)
    model.load_state_dict(torch.load(run_dir / "final_model.pt", weights_only=True))
    z = torch.randn((4096, 16), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        x, logdet = model(z)
        log_q = (-0.5 * z.pow(2) - 0.5 * math.log(2 * math.pi)).sum(1) - logdet
        terms = (log_q + action(x, mass2=0.5, coupling=0.5)).double()
    log_w = -terms
    loss = terms.mean().item()
    ess = (torch.logsumexp(log_w, 0) * 2 - torch.logsumexp(2 * log_w, 0)).exp().item() / len(z)
    log_z = (torch.logsumexp(log_w, 0) - math.log(len(z))).item()
    return {"val_loss": loss, "val_ess": ess, "val_log_z": log_z, "val_kl": loss + log_z}


@pytest.mark.slow
def test_the_flow_trains_on_two_ranks_with_a_rising_ess_and_resumes_exactly(tmp_path: Path) -> None:
    script = bundle(FLOW, tmp_path / "b")
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    done = launch(script, "--run-dir", str(whole), ranks=2)
    assert done.returncode == 0, done.stderr[-3000:]
    history = records(whole, "epoch")
    assert len(history) == 8 and all(e["steps"] == 40 for e in history)
    ess = [e["val_ess"] for e in history]
    assert all(0 < v <= 1 for v in ess)
    assert ess[-1] > ess[0] + 0.1 and max(ess) > 0.5  # the flow approaches exp(-S)
    assert history[-1]["val_loss"] < history[0]["val_loss"] < 0  # the reverse KL can be negative
    # The ranks' sums and log-sum-exps combine to the values of the whole validation set.
    by_hand = validation_by_hand(whole, FLOW.read_text())
    for name, value in by_hand.items():
        assert history[-1][name] == pytest.approx(value, rel=1e-5, abs=1e-6), name
    summary = json.loads((whole / "summary.json").read_text())
    assert summary["best"]["metric"] == "val_ess" and summary["best"]["value"] == max(ess)
    # Stopped part-way through an epoch, then resumed: the same weights as uninterrupted.
    resumes_exactly(script, whole, parts, max_steps=50)
