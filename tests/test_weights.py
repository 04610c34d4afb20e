"""Initial weights, frozen parameters and chains of blueprints (`weights = from(...)`, `freeze`)."""

from __future__ import annotations

import hashlib
import json
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

from dtec.analysis import analyse
from dtec.backends.train_script import render_train
from dtec.compiler import compile_blueprint
from dtec.lang.parameters import parameter_names

REPO = Path(__file__).resolve().parents[1]
WAIT_S = 300

STAGE1 = """twin "stage1" {{}}
data "points" {{
  source  = synthetic(samples = 256, shape = [8], targets = 1, seed = 7)
  batch   = 32
  workers = 0
}}
model "net" {{
  arch  = mlp(input = 8, hidden = [16, 16], output = 1)
  input = data.points
}}
train {{
  loss      = mse
  optimizer = adam(lr = 0.01)
  epochs    = 2
  seed      = 1
}}
strategy {{
  kind           = ddp
  procs_per_node = 2
}}
{targets}
"""
STAGE2 = STAGE1.replace('"stage1"', '"stage2"').replace("seed = 7", "seed = 8").replace(
    "input = data.points\n",
    'input = data.points\n  weights = from(blueprint = "stage1.twin", model = model.net)\n'
    '  freeze  = ["layers.1", "layers.3.weight"]\n',
)
SLURM = """target "slurm" {{
  partition = "{partition}"
  walltime  = 10min
  machine {{
    cpus = 2
    gpus = 0
  }}
}}"""


def project(tmp_path: Path, targets: str = "") -> Path:
    """A project (a git repository) holding the two stages."""
    (tmp_path / ".git").mkdir(parents=True)
    (tmp_path / "stage1.twin").write_text(STAGE1.format(targets=targets))
    (tmp_path / "stage2.twin").write_text(STAGE2.format(targets=targets))
    return tmp_path


def codes(path: Path) -> list[str]:
    return [d.code for d in analyse(path, environ={}, targets=["local"]).diagnostics]


# ---- lint --------------------------------------------------------------------------------------
def test_a_chain_lints_clean_and_the_ir_names_the_earlier_twin(tmp_path: Path) -> None:
    root = project(tmp_path)
    assert codes(root / "stage2.twin") == []  # `model.net` is the other blueprint's: no DT112
    bundle, _ = compile_blueprint(root / "stage2.twin", "local", environ={})
    model = bundle.ir.models["net"]
    assert model.weights.model_dump() == {"run": None, "blueprint": "stage1.twin", "twin": "stage1", "model": "net"}
    assert model.freeze == ["layers.1", "layers.3.weight"]


def test_weights_on_kubernetes_are_dt215_at_the_weights(tmp_path: Path) -> None:
    """A pod does not see the run folders: lint says so, as `dtec run` would refuse."""
    root = project(tmp_path, 'target "kubernetes" {\n  image = "python:3.12"\n}')
    found = analyse(root / "stage2.twin", environ={}, targets=["kubernetes"]).diagnostics
    assert [d.code for d in found] == ["DT215"] and "run folders" in found[0].message
    assert found[0].span.source.text[found[0].span.start:].startswith("from(blueprint")


@pytest.mark.parametrize(
    ("weights", "code"),
    [
        ("from()", "DT327"),
        ('from(run = "a", blueprint = "stage1.twin")', "DT327"),
        ('from(blueprint = "../outside.twin")', "DT327"),
        ('from(blueprint = "stage2.twin")', "DT327"),  # itself
        ('from(blueprint = "broken.twin")', "DT327"),
        ('from(run = "runs/x", model = model.net)', "DT327"),
    ],
)
def test_a_source_that_cannot_be_used_is_dt327(tmp_path: Path, weights: str, code: str) -> None:
    root = project(tmp_path / "p")
    (tmp_path / "outside.twin").write_text(STAGE1.format(targets=""))
    (root / "broken.twin").write_text('twin "b" {}\ntrain { loss = msee }\n')
    (root / "runs" / "x" / "run").mkdir(parents=True)
    (root / "runs" / "x" / "ir.json").write_text(json.dumps(
        {"twin": {"name": "stage1"}, "train": {"model": "net"},
         "models": {"net": {"arch": "mlp", "params": {"input": 8, "hidden": [16, 16], "output": 1}}}}))
    (root / "runs" / "x" / "run" / "final_model.pt").write_bytes(b"")
    text = (root / "stage2.twin").read_text()
    text = text.replace('from(blueprint = "stage1.twin", model = model.net)', weights)
    (root / "stage2.twin").write_text(text)
    assert code in codes(root / "stage2.twin")


def test_a_run_folder_source_is_held_to_its_ir(tmp_path: Path) -> None:
    root = project(tmp_path)
    folder = root / "runs" / "stage1" / "local" / "r1"
    (folder / "run").mkdir(parents=True)
    ir = {"twin": {"name": "stage1"}, "train": {"model": "net"},
          "models": {"net": {"arch": "mlp", "params": {"input": 8, "hidden": [16], "output": 1}}}}
    (folder / "ir.json").write_text(json.dumps(ir))
    text = (root / "stage2.twin").read_text().replace(
        'from(blueprint = "stage1.twin", model = model.net)', 'from(run = "runs/stage1/local/r1")')
    (root / "stage2.twin").write_text(text)
    assert sorted(codes(root / "stage2.twin")) == ["DT328", "DT330"]  # other widths; not finished
    (folder / "run" / "final_model.pt").write_bytes(b"")
    ir["models"]["net"]["params"]["hidden"] = [16, 16]
    (folder / "ir.json").write_text(json.dumps(ir))
    assert codes(root / "stage2.twin") == []


ARCHS = {
    "mlp": ("mlp(input = 8, hidden = [4, 5], output = 1)", [8]),
    "lstm": ("lstm(input = 3, hidden = 4, layers = 2, output = 1)", [5, 3]),
    "cnn": ("cnn(channels = 2, output = 1, widths = [4, 6])", [2, 8, 8]),
    "unet": ("unet(channels = 2, output = 1, depth = 2, width = 4)", [2, 16]),
    "transformer": ("transformer(input = 3, dim = 8, heads = 2, layers = 2, output = 1)", [6, 3]),
}


@pytest.mark.parametrize("arch", list(ARCHS))
def test_the_static_parameter_names_are_those_of_the_built_model(tmp_path: Path, arch: str) -> None:
    written, shape = ARCHS[arch]
    (tmp_path / "m.twin").write_text(
        f'twin "m" {{}}\ndata "d" {{\n  source = synthetic(samples = 8, shape = {shape}, targets = 1)\n'
        f'  batch = 2\n}}\nmodel "m" {{\n  arch = {written}\n  input = data.d\n}}\ntrain {{\n  loss = mse\n}}\n')
    result = analyse(tmp_path / "m.twin", environ={}, targets=["local"])
    bundle, _ = compile_blueprint(tmp_path / "m.twin", "local", environ={})
    script = tmp_path / "train.py"
    script.write_text(render_train(bundle.ir))
    built = runpy.run_path(str(script), run_name="not_main")["build_model"](tuple(shape))
    names = [name for name, _ in built.named_parameters()]
    assert parameter_names(result.blueprint.get("model", "m", "arch")) == names


# ---- the training script -----------------------------------------------------------------------
def trained(folder: Path) -> dict:
    import torch

    return torch.load(folder / "run" / "final_model.pt", weights_only=True)


def check_chain(root: Path, stage2_run: Path) -> None:
    """Stage 2 started from stage 1's final weights; the frozen ones are those, bit for bit."""
    summary = json.loads((stage2_run / "run" / "summary.json").read_text())
    assert summary["status"] == "completed"
    used = summary["inputs"]["weights"]
    stage1_run = next((root / "runs" / "stage1").glob(f"*/{used['run_id']}"))
    record = json.loads((stage2_run / "run" / "run.json").read_text())
    assert record["weights"]["run_id"] == used["run_id"]
    assert used["ir_sha256"] == json.loads((stage1_run / "run" / "run.json").read_text())["ir_sha256"]
    final1 = stage1_run / "run" / "final_model.pt"
    assert used["sha256"] == hashlib.sha256(final1.read_bytes()).hexdigest()
    first, second = trained(stage1_run), trained(stage2_run)
    frozen = {"layers.1.weight", "layers.1.bias", "layers.3.weight"}
    for name in first:
        same = bool((first[name] == second[name]).all())
        assert same == (name in frozen), name


@pytest.mark.slow
def test_a_two_stage_chain_runs_locally_and_freezes_bit_for_bit(tmp_path: Path) -> None:
    root = project(tmp_path)
    done = subprocess.run([sys.executable, "-m", "dtec", "run", "stage2.twin"], cwd=root,
                          capture_output=True, text=True, timeout=WAIT_S)
    assert done.returncode == 0, done.stderr
    assert "running it first" in done.stderr
    stage2_run = next(p for p in (root / "runs" / "stage2" / "local").iterdir() if p.name != "latest")
    check_chain(root, stage2_run)
    # Run again: the completed stage 1 is used, not run again.
    again = subprocess.run([sys.executable, "-m", "dtec", "run", "stage2.twin"], cwd=root,
                           capture_output=True, text=True, timeout=WAIT_S)
    assert again.returncode == 0, again.stderr
    assert "running it first" not in again.stderr
    assert len([p for p in (root / "runs" / "stage1" / "local").iterdir() if p.name != "latest"]) == 1


@pytest.mark.slurm
@pytest.mark.slow
def test_a_two_stage_chain_on_slurm_waits_with_afterok(slurm: str, tmp_path: Path) -> None:
    root = project(tmp_path, SLURM.format(partition=slurm))
    done = subprocess.run([sys.executable, "-m", "dtec", "run", "stage2.twin", "-t", "slurm"],
                          cwd=root, capture_output=True, text=True, timeout=WAIT_S * 2)
    assert done.returncode == 0, done.stderr + done.stdout
    stage1_run = next(p for p in (root / "runs" / "stage1" / "slurm").iterdir() if p.name != "latest")
    stage2_run = next(p for p in (root / "runs" / "stage2" / "slurm").iterdir() if p.name != "latest")
    job1 = json.loads((stage1_run / "run" / "run.json").read_text())["launches"][-1]["job_id"]
    launch2 = json.loads((stage2_run / "run" / "run.json").read_text())["launches"][-1]
    assert launch2["after"] == job1
    assert f"to start after job {job1} completes" in done.stderr
    check_chain(root, stage2_run)
