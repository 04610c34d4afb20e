"""`dtec check`: the bundle's train.py --check builds the data and the model and runs one step."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
from fake_tools import fake_tool
from typer.testing import CliRunner

from dtec.cli import app

BLUEPRINT = """\
twin "t" {}
data "d" {
  source = SOURCE
  batch  = 8
}
model "m" {
  arch  = ARCH
  input = data.d
  path  = "src"
}
train {
  loss = mse
}
target "slurm" {
  partition = "debug"
  machine {
    gpus = 0
  }
}
"""
MODELS = """\
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self, outputs=1):
        super().__init__()
        self.head = nn.Linear(8, outputs)

    def forward(self, x):
        return self.head(x[:, -1])


class Broken(nn.Module):
    def __init__(self, width=4):
        super().__init__()
        self.head = make_head(width)


def make_head(width):
    return nn.Linear(width, "x")
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / ".git").mkdir()
    (tmp_path / "data").mkdir()
    x = np.random.default_rng(0).standard_normal((40, 30, 8)).astype(np.float32)
    np.savez(tmp_path / "data" / "gauges.npz", x=x, y=x[:, -1, :1])
    rows = "".join(f"{1000 + i},2020-01-{i + 1:02d},0.{i},1.{i},2.{i}\n" for i in range(24))
    (tmp_path / "data" / "stations.csv").write_text("station,date,rain,snow,q\n" + rows)
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "models.py").write_text(MODELS)
    return tmp_path


def dtec(*args: str):
    return CliRunner().invoke(app, list(args))


def check(project: Path, source: str, arch: str, *args: str):
    path = project / "bp.twin"
    path.write_text(BLUEPRINT.replace("SOURCE", source).replace("ARCH", arch))
    return dtec("check", str(path), *args)


def found(result) -> list[str]:
    return [line.split("]")[0].split("[")[1] for line in result.stderr.splitlines() if line.startswith(("error[", "info["))]


def test_the_quickstart_passes_with_its_sizes_against_the_estimate(blueprints_dir: Path) -> None:
    result = dtec("check", str(blueprints_dir / "quickstart.twin"))
    assert result.exit_code == 0, result.output
    assert "a sample [30, 8], its target [1]" in result.stderr
    assert "`surrogate`: 52,289 parameters (estimated 52,289)" in result.stderr
    assert "output [1] per sample" in result.stderr


def test_csv_features_select_the_columns_train_py_reads(project: Path) -> None:
    # `date` is text and `station` an id: only the named columns are read.
    result = check(project, 'csv("data/stations.csv", "q", features = ["rain", "snow"])', "mlp(input = 2, output = 1)")
    assert result.exit_code == 0, result.output
    assert "a sample [2], its target [1]" in result.stderr


@pytest.mark.parametrize(
    ("source", "arch", "code"),
    [
        ('npz("data/gauge.npz")', "lstm(input = 8, hidden = 4, output = 1)", "DT302"),  # missing npz
        ('npz("data/gauges.npz", x = "inputs")', "lstm(input = 8, hidden = 4, output = 1)", "DT304"),  # array key
        ('npz("data/gauges.npz", shape = [30, 7])', "lstm(input = 7, hidden = 4, output = 1)", "DT305"),  # shape
        ('npz("data/gauges.npz")', 'python("models:Nte")', "DT307"),  # a typo in module:Class
        ('csv("data/stations.csv", "Q", features = ["rain"])', "mlp(input = 1, output = 1)", "DT304"),  # target
        ('csv("data/stations.csv", "q", features = 3)', "mlp(input = 3, output = 1)", "DT305"),  # feature count
    ],
)
def test_broken_references_stop_the_check_before_it_runs(project: Path, source: str, arch: str, code: str) -> None:
    result = check(project, source, arch)
    assert result.exit_code == 1 and code in found(result), result.output
    assert "checking" not in result.stderr  # refused when compiling: nothing ran


def test_a_user_model_with_the_wrong_output_size_is_dt300_at_its_arch(project: Path) -> None:
    result = check(project, 'npz("data/gauges.npz", targets = 1)', 'python("models:Net", outputs = 3)')
    assert result.exit_code == 1
    assert found(result) == ["DT300"]
    assert "bp.twin:7:11" in result.stderr  # the arch
    assert 'model "m" outputs [3] per sample, but the targets of data "d" are [1]' in result.stderr


def test_an_error_in_user_code_shows_its_frames_only(project: Path) -> None:
    result = check(project, 'npz("data/gauges.npz")', 'python("models:Broken")')
    assert result.exit_code == 1 and found(result) == ["DT308"]
    assert "building model `m` failed: TypeError:" in result.stderr
    assert "bp.twin:7:18" in result.stderr  # the class
    notes = [line for line in result.stderr.splitlines() if line.lstrip().startswith("-->")][1:]
    assert [line.split("models.py:")[1] for line in notes] == ["17:9", "21:5"]  # __init__, make_head
    assert all("src/models.py:" in line and "dtec-check-" not in line for line in notes)  # the user's file, not the bundle's copy
    assert "torch/nn" not in result.stderr and "train.py" not in result.stderr


def test_data_lint_cannot_read_is_read_by_the_check(project: Path, tmp_path_factory) -> None:
    outside = tmp_path_factory.mktemp("scratch") / "gauges.npz"
    np.savez(outside, inputs=np.zeros((40, 30, 8), np.float32), y=np.zeros((40, 1), np.float32))
    result = check(project, f'npz("{outside}")', "lstm(input = 8, hidden = 4, output = 1)")
    assert result.exit_code == 1 and found(result) == ["DT306", "DT308"], result.output
    assert "loading data `d` failed:" in result.stderr and "has no array 'x'" in result.stderr


def test_run_checks_a_queued_job_before_writing_or_submitting(project: Path) -> None:
    broken = ('npz("data/gauges.npz", targets = 1)', 'python("models:Net", outputs = 3)')
    out = project / "run-folder"
    result = check(project, *broken, "-t", "slurm")  # writes bp.twin
    assert found(result) == ["DT300"]
    result = dtec("run", str(project / "bp.twin"), "-t", "slurm", "-o", str(out))
    assert result.exit_code == 1 and found(result) == ["DT300"] and "--no-check" in result.stderr
    assert not out.exists()
    result = dtec("run", str(project / "bp.twin"), "-t", "slurm", "-o", str(out), "--no-check", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "checking" not in result.stderr


def test_a_sweep_on_a_queue_is_checked_before_its_workers_are_submitted(project: Path, tmp_path_factory, monkeypatch) -> None:
    broken = ('npz("data/gauges.npz", targets = 1)', 'python("models:Net", outputs = 3)')
    path = project / "bp.twin"
    path.write_text(BLUEPRINT.replace("SOURCE", broken[0]).replace("ARCH", broken[1])
                    + 'sweep {\n  trials = 2\n  space = [loguniform("train.optimizer.lr", 1e-4, 1e-2)]\n}\n')
    tools = tmp_path_factory.mktemp("bin")  # a scheduler that records what it is asked: the array "runs" once submitted
    fake_tool(tools, "sbatch", f'echo "$@" >> {tools}/calls\necho 4711\n')
    fake_tool(tools, "squeue", f'test -f {tools}/calls && echo RUNNING\n')
    monkeypatch.setenv("PATH", f"{tools}:{os.environ['PATH']}")
    monkeypatch.chdir(project)
    result = dtec("run", "bp.twin", "-t", "slurm", "--detach")
    assert result.exit_code == 1 and found(result) == ["DT300"] and "--no-check" in result.stderr
    assert not (project / "runs").exists() and not (tools / "calls").exists()  # no study, no job array
    result = dtec("run", "bp.twin", "-t", "slurm", "--detach", "--no-check")
    assert result.exit_code == 0, result.output
    assert "checking" not in result.stderr and (tools / "calls").read_text() == "--parsable workers.sbatch\n"
    # Following the running array checks nothing again (the check would fail): it is the same study.
    result = dtec("run", "bp.twin", "-t", "slurm", "--detach")
    assert result.exit_code == 0 and "checking" not in result.stderr and "still runs" in result.stderr, result.output


def test_train_py_check_prints_one_json_report(project: Path, tmp_path: Path) -> None:
    from dtec.compiler import compile_blueprint
    from dtec.preflight import run_check

    path = project / "bp.twin"
    path.write_text(BLUEPRINT.replace("SOURCE", 'npz("data/gauges.npz")').replace("ARCH", 'python("models:Net")'))
    bundle, _ = compile_blueprint(path, "local", environ={})
    report = run_check(bundle).report
    assert report is not None and report["ok"] and report["parameters"] == 9
    assert json.loads(json.dumps(report)) == report
    assert report["state_bytes"] == 9 * 4 * 4  # weights, gradients, AdamW's two moments


@pytest.mark.slow
@pytest.mark.parametrize("name", ["digits.twin", "pulsar-segmentation.twin", "gw-denoising.twin"])
def test_the_estimate_counts_the_parameters_the_built_model_has(blueprints_dir: Path, name: str) -> None:
    # A CNN, a 1-D and a 2-D U-Net: the static count is that of the model train.py builds.
    result = dtec("check", str(blueprints_dir / name))
    counted = re.search(r"`\w+`: ([\d,]+) parameters \(estimated ([\d,]+)\)", result.stderr)
    assert counted is not None, result.stderr
    assert counted.group(1) == counted.group(2), result.stderr
