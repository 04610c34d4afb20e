"""The test split, the evaluation at the end of a run, `dtec evaluate`, and the exported model."""

from __future__ import annotations

import json
import os
import runpy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset
from typer.testing import CliRunner

from dtec.analysis import analyse
from dtec.cli import app
from dtec.compiler import compile_blueprint
from dtec.evaluation import check_data

BLUEPRINT = (Path(__file__).resolve().parent / "train" / "quickstart.twin").read_text()
SPLIT = "split   = { train = 0.75, val = 0.25 }"


def blueprint(split: str = "{ train = 0.75, val = 0.125, test = 0.125 }", train: str = "") -> str:
    """tests/train/quickstart.twin with another split (and more `train { }` lines)."""
    assert SPLIT in BLUEPRINT
    text = BLUEPRINT.replace(SPLIT, f"split   = {split}")
    return text.replace("train {\n", "train {\n" + train, 1)


def codes(tmp_path: Path, text: str) -> list[tuple[str, str]]:
    (tmp_path / "t.twin").write_text(text)
    return [(d.code, d.message) for d in analyse(tmp_path / "t.twin", environ={}).diagnostics]


# ---- lint ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("split", "expected"),
    [
        ("{ train = 0.8, val = 0.1, test = 0.1 }", []),
        ("{ train = 0.8, val = 0.1, test = 0.2 }", [("DT106", "`split` fractions add up to 1.1, more than 1")]),
        ("{ train = 0.7, test = 0.1 }", [("DT319", "`split` fractions add up to 0.8: 20% of the samples are never used")]),
        ("{ train = 0.8, val = 0.2, order = time }", []),
    ],
)
def test_split_fractions_add_up_to_one(tmp_path: Path, split: str, expected: list) -> None:
    assert codes(tmp_path, blueprint(split)) == expected


def test_unused_samples_can_be_meant(tmp_path: Path) -> None:
    text = blueprint("{ train = 0.5, val = 0.1 }  # dtec: ignore[DT319]")
    assert codes(tmp_path, text) == []


def test_split_order_and_export_take_only_their_words(tmp_path: Path) -> None:
    found = codes(tmp_path, blueprint("{ train = 0.8, val = 0.2, order = shuffled }", "  export = onnx\n"))
    assert sorted(code for code, _ in found) == ["DT102", "DT102"]


# ---- the split in train.py ---------------------------------------------------------------------
def script_module(tmp_path: Path, text: str) -> dict:
    """The compiled train.py's definitions (its main() is not run)."""
    bundle, diagnostics = compile_blueprint(tmp_path / "t.twin", "local", text=text, environ={})
    assert bundle is not None, diagnostics
    for name, content in bundle.files.items():  # the copies of the user's code too
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(content)
    return runpy.run_path(str(tmp_path / "train.py"), run_name="bundle_train")


def parts(module: dict, samples: int, seed: int = 0) -> list[list[int]]:
    dataset = TensorDataset(torch.arange(samples))
    return [[int(part[i][0]) for i in range(len(part))] for part in module["split"](dataset, seed)]


def test_time_order_cuts_contiguous_parts_in_sample_order(tmp_path: Path) -> None:
    module = script_module(tmp_path, blueprint("{ train = 0.7, val = 0.2, test = 0.1, order = time }"))
    train, val, test = parts(module, 50)
    assert (train, val, test) == (list(range(35)), list(range(35, 45)), list(range(45, 50)))


def test_random_order_is_a_seeded_partition(tmp_path: Path) -> None:
    module = script_module(tmp_path, blueprint("{ train = 0.7, val = 0.2, test = 0.1 }"))
    train, val, test = parts(module, 50)
    assert sorted(train + val + test) == list(range(50))  # every sample once: the split adds to 1
    assert (len(train), len(val), len(test)) == (35, 10, 5)
    assert train != sorted(train)
    assert parts(module, 50) == [train, val, test]  # the same on every rank and run
    assert parts(module, 50, seed=1) != [train, val, test]


def test_rounding_never_drops_a_sample_from_a_full_split(tmp_path: Path) -> None:
    module = script_module(tmp_path, blueprint("{ train = 0.33, val = 0.33, test = 0.34 }"))
    for n in range(1, 40):
        assert sum(module["split_sizes"](n)) == n


def test_a_python_source_may_return_its_own_test_set(tmp_path: Path) -> None:
    module = script_module(tmp_path, blueprint())
    sets = tuple(TensorDataset(torch.arange(k)) for k in (3, 2, 1))
    assert module["split"](sets, 0) == sets
    train, val, test = module["split"](sets[:2], 0)
    assert (len(train), len(val), len(test)) == (3, 2, 0)


# ---- a run on two ranks, its test metrics, export, predict.py and dtec evaluate ---------------------
def env(**extra: str) -> dict[str, str]:
    launcher = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
    found = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "TORCHELASTIC_")) and k not in launcher}
    return {**found, "OMP_NUM_THREADS": "1", **extra}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`dtec run` of the quickstart with a test split, best checkpoint and final = best, on 2 ranks."""
    folder = tmp_path_factory.mktemp("evaluate")
    checkpoint = "  checkpoint = { every = 1, keep = 2, best = min(val_loss), final = best }\n"
    text = blueprint().replace("  checkpoint = { every = 1, keep = 2 }\n", "").replace("train {\n", "train {\n" + checkpoint)
    (folder / "q.twin").write_text(text)
    done = subprocess.run([sys.executable, "-m", "dtec", "run", "q.twin", "-o", "the-run"], cwd=folder,
                          env=env(PYTHONPATH=str(Path(__file__).resolve().parent.parent)),
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return folder / "the-run"


def direct_test_loss(run: Path) -> tuple[float, torch.Tensor, torch.Tensor, torch.nn.Module]:
    """The test split scored in one process, in one batch: (mse, inputs, outputs, model)."""
    module = runpy.run_path(str(run / "train.py"), run_name="bundle_train")
    test = module["split"](module["load_dataset"](), module["TRAIN"]["seed"])[2]
    x = torch.stack([test[i][0] for i in range(len(test))])
    y = torch.stack([test[i][1] for i in range(len(test))])
    model = module["build_model"](tuple(x.shape[1:]))
    model.load_state_dict(torch.load(run / "run" / "final_model.pt", weights_only=True))
    model.eval()
    with torch.no_grad():
        pred = model(x)
    return torch.nn.functional.mse_loss(pred, y).item(), x, pred, model


@pytest.mark.slow
def test_the_summary_holds_the_final_model_scored_on_the_test_split(finished_run: Path) -> None:
    summary = json.loads((finished_run / "run" / "summary.json").read_text())
    expected, x, _, _ = direct_test_loss(finished_run)
    assert len(x) == 64  # 512 samples, 0.125 of them
    assert summary["test"]["test_loss"] == pytest.approx(expected, rel=1e-5)
    lines = (finished_run / "run" / "metrics.jsonl").read_text().splitlines()
    test = [r for r in map(json.loads, lines) if r["kind"] == "test"]
    assert len(test) == 1 and test[0]["samples"] == 64
    assert test[0]["test_loss"] == summary["test"]["test_loss"]


@pytest.mark.slow
def test_the_exported_model_predicts_as_the_trained_one(finished_run: Path, tmp_path: Path) -> None:
    summary = json.loads((finished_run / "run" / "summary.json").read_text())
    assert summary["export"] == {"format": "torch_export", "file": "model.pt2"}
    _, x, pred, _ = direct_test_loss(finished_run)
    exported = torch.export.load(str(finished_run / "run" / "model.pt2")).module()
    for batch in (x[:1], x[:5], x):  # the batch dimension is dynamic
        torch.testing.assert_close(exported(batch), pred[: len(batch)], atol=1e-5, rtol=1e-5)
    np.savez(tmp_path / "samples.npz", x=x.numpy())
    out = tmp_path / "out.npy"
    command = [sys.executable, str(finished_run / "predict.py"), str(tmp_path / "samples.npz"), "--output", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env())
    assert done.returncode == 0, done.stderr
    np.testing.assert_allclose(np.load(out), pred.numpy(), atol=1e-5, rtol=1e-5)
    again = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env())
    assert again.returncode != 0 and "exists" in again.stderr  # never over an earlier output


@pytest.mark.slow
def test_dtec_evaluate_scores_as_the_run_did_and_keeps_every_result(finished_run: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(finished_run.parent)
    summary = json.loads((finished_run / "run" / "summary.json").read_text())
    files = []
    for _ in range(2):
        result = CliRunner().invoke(app, ["evaluate", "the-run", "--format", "json"])
        assert result.exit_code == 0, result.output
        found = json.loads(result.stdout)
        assert found["metrics"]["test_loss"] == pytest.approx(summary["test"]["test_loss"], rel=1e-6)
        assert found["samples"] == 64
        files.append(Path(found["file"]))
    assert files[0] != files[1] and all(json.loads(f.read_text())["metrics"] == found["metrics"] for f in files)
    best = CliRunner().invoke(app, ["evaluate", "the-run", "--checkpoint", "best"])
    assert best.exit_code == 0, best.output  # final = best: the same weights
    assert f"test_loss  {summary['test']['test_loss']:.6g}" in best.stdout


@pytest.mark.slow
def test_dtec_evaluate_on_other_data_checks_it_first(finished_run: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(finished_run.parent)
    result = CliRunner().invoke(app, ["evaluate", "the-run", "--data", "q.twin"])
    assert result.exit_code == 1
    assert "error[DT321]" in result.stderr and "--data q.twin" in result.stderr  # synthetic data
    assert "Traceback" not in result.output


def test_dtec_evaluate_refuses_a_run_that_did_not_finish(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "r" / "run").mkdir(parents=True)
    (tmp_path / "r" / "run" / "run.json").write_text('{"id": "r1"}')
    (tmp_path / "r" / "run" / "summary.json").write_text('{"status": "preempted"}')
    result = CliRunner().invoke(app, ["evaluate", "r"])
    assert result.exit_code == 1
    assert "error[DT321]: run r1 has no trained model to evaluate: its status is preempted" in result.stderr
    assert not (tmp_path / "r" / "run" / "evaluations").exists()
    unknown = CliRunner().invoke(app, ["evaluate", "no-such-run"])
    assert unknown.exit_code == 1 and "error[DT321]" in unknown.stderr and "no run `no-such-run`" in unknown.stderr


def test_other_data_must_be_of_the_runs_kind_and_shape(tmp_path: Path) -> None:
    source = {"name": "gauges", "source": "npz", "options": {"path": "g.npz", "x": "x", "y": "y"},
              "sample_shape": [12, 4]}
    np.savez(tmp_path / "good.npz", x=np.zeros((5, 12, 4)), y=np.zeros((5, 1)))
    np.savez(tmp_path / "shape.npz", x=np.zeros((5, 12, 3)), y=np.zeros((5, 1)))
    np.savez(tmp_path / "names.npz", inputs=np.zeros((5, 12, 4)), y=np.zeros((5, 1)))
    (tmp_path / "text.npz").write_text("not a zip")
    found = {name: [(d.code, d.span.source.text[d.span.start:d.span.end]) for d in check_data(source, str(tmp_path / name))]
             for name in ("good.npz", "shape.npz", "names.npz", "text.npz", "missing.npz")}
    at = {name: str(tmp_path / name) for name in found}
    assert found == {
        "good.npz": [],
        "shape.npz": [("DT305", at["shape.npz"])],
        "names.npz": [("DT304", at["names.npz"])],
        "text.npz": [("DT303", at["text.npz"])],
        "missing.npz": [("DT302", at["missing.npz"])],
    }


# ---- export, in process --------------------------------------------------------------------------
def exported_by(tmp_path: Path, text: str) -> tuple[dict, dict, torch.nn.Module]:
    """Train nothing: save a fresh model as final_model.pt and run the script's export of it."""
    (tmp_path / "code").mkdir(exist_ok=True)
    (tmp_path / "code" / "branchy.py").write_text(
        (Path(__file__).resolve().parent / "fixtures" / "rules" / "DT320" / "branchy.py").read_text())
    module = script_module(tmp_path, text)
    model = module["build_model"]((12, 4))
    torch.save(model.state_dict(), tmp_path / "final_model.pt")
    return module, module["export_final_model"](torch.randn(12, 4), tmp_path), model


def test_torchscript_exports_with_a_dynamic_batch(tmp_path: Path) -> None:
    _, record, model = exported_by(tmp_path, blueprint(train="  export = torchscript\n"))
    assert record == {"format": "torchscript", "file": "model.ts"}
    loaded = torch.jit.load(str(tmp_path / "model.ts"))
    x = torch.randn(7, 12, 4)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model.eval()(x), atol=1e-5, rtol=1e-5)


def test_a_model_that_cannot_be_exported_leaves_the_reason(tmp_path: Path) -> None:
    arch = '  export = torch_export\n'
    text = blueprint(train=arch).replace(
        "arch  = lstm(input = 4, hidden = 16, layers = 1, output = 1)",
        'arch  = python("branchy:Branchy", features = 4)\n  path  = "code"')
    _, record, _ = exported_by(tmp_path, text)
    assert record["file"] is None and "data-dependent" in record["error"]
    assert not list(tmp_path.glob("*.pt2")) and not list(tmp_path.glob(".tmp*"))


def test_export_none_leaves_out_the_export_and_predict_py(tmp_path: Path) -> None:
    bundle, _ = compile_blueprint(tmp_path / "t.twin", "local", text=blueprint(train="  export = none\n"), environ={})
    assert "predict.py" not in bundle.files
    assert "export_program" not in bundle.files["train.py"]
