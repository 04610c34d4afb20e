"""Static checks of the files a blueprint names: data files and user code, against the blueprint."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dtec.compiler import compile_blueprint
from dtec.analysis import analyse

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
  loss = LOSS
}
"""
STATIONS = "station,date,rain,snow,temp,q\n" + "".join(
    f"{1000 + i},2020-01-{i + 1:02d},0.{i},1.{i},2.{i},3.{i}\n" for i in range(9)
)
MODELS = """\
import torch
from torch import nn
from torch.utils.data import TensorDataset

if True:
    from json import loads as parse_json


def load(samples=32):
    x = torch.randn(samples, 30, 8)
    return TensorDataset(x, x[:, -1, :1])


class Net(nn.Module):
    def __init__(self, outputs=1):
        super().__init__()
        self.head = nn.Linear(8, outputs)

    def forward(self, x):
        return self.head(x[:, -1])
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project folder (a repository) with an npz, a CSV and a code folder."""
    (tmp_path / ".git").mkdir()
    (tmp_path / "data").mkdir()
    x = np.zeros((40, 30, 8), np.float32)
    np.savez(tmp_path / "data" / "gauges.npz", x=x, y=np.zeros((40, 1), np.float32), names=np.array(["a", "b"]))
    (tmp_path / "data" / "stations.csv").write_text(STATIONS)
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "models.py").write_text(MODELS)
    return tmp_path


def lint(project: Path, source: str, arch: str = "lstm(input = 8, hidden = 4, output = 1)", loss: str = "mse"):
    """Return (code, the text the diagnostic points at, message, help) of each diagnostic."""
    text = BLUEPRINT.replace("SOURCE", source).replace("ARCH", arch).replace("LOSS", loss)
    path = project / "bp.twin"
    path.write_text(text)
    found = analyse(path, environ={}, targets=[]).diagnostics
    return [(d.code, text[d.span.start : d.span.end], d.message, d.help) for d in found]


def codes(found) -> list[tuple[str, str]]:
    return [(code, at) for code, at, _, _ in found]


# ---- lint passed what compile crashed on -------------------------------------------------------


@pytest.mark.parametrize("loss", ["cross_entropy", "bce"])
def test_a_classification_loss_on_a_csv_without_classes_is_dt301_in_lint_and_compile(project: Path, loss: str) -> None:
    source = 'csv("data/stations.csv", "q", features = ["rain", "snow", "temp"])'
    found = lint(project, source, "mlp(input = 3, output = 1)", loss)
    assert codes(found) == [("DT301", loss)]
    bundle, diagnostics = compile_blueprint(project / "bp.twin", "local", environ={})  # raised ValueError
    assert bundle is None and [d.code for d in diagnostics] == ["DT301"]


@pytest.mark.parametrize(
    ("source", "loss", "task"),
    [
        ('python("models:load", samples = 32)', "cross_entropy", "classification"),
        ('npz("data/gauges.npz")', "bce", "classification"),
        ('python("models:load")', "mse", "regression"),
    ],
)
def test_data_that_does_not_say_its_task_takes_the_loss_s(project: Path, source: str, loss: str, task: str) -> None:
    assert lint(project, source, 'python("models:Net")', loss) == []
    bundle, diagnostics = compile_blueprint(project / "bp.twin", "local", environ={})  # raised ValueError
    assert bundle is not None and not diagnostics
    assert f'TASK = "{task}"' in bundle.files["train.py"]


# ---- npz ---------------------------------------------------------------------------------------


def test_npz_arrays_and_shapes_are_checked_against_the_blueprint(project: Path) -> None:
    assert lint(project, 'npz("data/gauges.npz", shape = [30, 8], targets = 1)') == []
    found = lint(project, 'npz("data/gauges.npz", x = "inputs", y = "y", shape = [30, 8])')
    assert found == [("DT304", '"inputs"', "`data/gauges.npz` has no array `inputs` (the inputs); it holds `names`, `x`, `y`",
                      'name one of its arrays: `x = "..."`')]
    found = lint(project, 'npz("data/gauges.npz", shape = [30, 7], targets = 2)')
    assert codes(found) == [("DT305", "[30, 7]"), ("DT305", "2")]
    assert found[0][3] == "set `shape = [30, 8]`" and found[1][3] == "set `targets = 1`"
    assert codes(lint(project, 'npz("data/gauges.npz", x = "names")')) == [("DT305", '"names"')]  # strings


def test_the_npz_shape_is_held_against_the_model_where_the_blueprint_leaves_it_out(project: Path) -> None:
    found = lint(project, 'npz("data/gauges.npz")', "lstm(input = 7, hidden = 4, output = 1)")
    assert codes(found) == [("DT300", "7")]
    assert found[0][3] == "set `input = 8`"


def test_npz_samples_of_x_and_y_must_agree(project: Path) -> None:
    np.savez(project / "data" / "odd.npz", x=np.zeros((40, 30, 8), np.float32), y=np.zeros((39, 1), np.float32))
    found = lint(project, 'npz("data/odd.npz", shape = [30, 8])')
    assert [(c, m) for c, _, m, _ in found] == [("DT305", "`data/odd.npz` has 40 samples in `x` but 39 in `y`")]


def test_missing_unreadable_remote_and_outside_files(project: Path, tmp_path_factory) -> None:
    found = lint(project, 'npz("data/gauge.npz")')
    assert found == [("DT302", '"data/gauge.npz"', "file `data/gauge.npz` not found", "did you mean `data/gauges.npz`?")]
    assert codes(lint(project, 'npz("data/stations.csv")')) == [("DT303", '"data/stations.csv"')]
    assert codes(lint(project, 'npz("data")')) == [("DT303", '"data"')]
    # Absolute paths not here may be on the cluster; files outside the project are not read.
    assert codes(lint(project, 'npz("/scratch/p/x.npz")')) == [("DT306", '"/scratch/p/x.npz"')]
    outside = tmp_path_factory.mktemp("elsewhere") / "secret.csv"
    outside.write_text("password,y\nhunter2,1\n")
    found = lint(project, f'csv("{outside}", "nope")', "mlp(input = 1, output = 1)")
    assert codes(found) == [("DT306", f'"{outside}"')] and "hunter2" not in str(found)


# ---- csv ---------------------------------------------------------------------------------------


def test_csv_target_features_and_cells_are_checked(project: Path) -> None:
    good = 'csv("data/stations.csv", "q", features = ["rain", "snow", "temp"])'
    assert lint(project, good, "mlp(input = 3, output = 1)") == []
    found = lint(project, 'csv("data/stations.csv", "Q", features = ["rain", "snw"])', "mlp(input = 2, output = 1)")
    assert [(c, at, h) for c, at, _, h in found] == [("DT304", '"Q"', "did you mean `q`?"), ("DT304", '"snw"', "did you mean `snow`?")]
    found = lint(project, 'csv("data/stations.csv", "q", features = ["rain", "q"])', "mlp(input = 1, output = 1)")
    assert codes(found) == [("DT114", '"q"')]


def test_csv_feature_count_and_text_columns(project: Path) -> None:
    found = lint(project, 'csv("data/stations.csv", "q", features = 4)', "mlp(input = 4, output = 1)")
    assert [(c, at, m) for c, at, m, _ in found] == [
        ("DT305", "4", "`features` is 4 but `data/stations.csv` has 5 columns besides the target"),
        ("DT305", "4", "column `date` of `data/stations.csv` holds '2020-01-01' on line 2, not a number"),
    ]
    found = lint(project, 'csv("data/stations.csv", "q")', "mlp(input = 4, output = 1)")
    assert codes(found) == [("DT305", 'csv("data/stations.csv", "q")')]  # `date`; the model is not held to 5
    # Without `features`, every other column is one: the count reaches the model check.
    (project / "data" / "numbers.csv").write_text("a,b,q\n1,2,3\n")
    found = lint(project, 'csv("data/numbers.csv", "q")', "mlp(input = 4, output = 1)")
    assert [(c, at, h) for c, at, _, h in found] == [("DT300", "4", "set `input = 2`")]


# ---- python("module:name") ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "message", "help"),
    [
        ("models:Nte", "`models:Nte`: no `Nte` defined at the top level in `src/models.py`", "did you mean `Net`?"),
        ("modles:Net", "`modles:Net`: no module `modles` in `src`, nor installed here", "did you mean `models`?"),
        ("models.sub:Net", "`models.sub:Net`: `models` is a module, not a package in `src`", None),
        ("models", "`models` is not `module:name`", 'write it as `"package.module:Name"`'),
    ],
)
def test_python_references_are_found_in_the_code_folder_without_importing(project: Path, spec: str, message: str, help) -> None:
    assert lint(project, 'python("models:load")', 'python("models:Net")') == []
    assert lint(project, 'python("models:parse_json")', 'python("json:JSONDecoder")') == []  # imported; installed
    found = lint(project, 'python("models:load")', f'python("{spec}")')
    assert found == [("DT307", f'"{spec}"', message, help)]


def test_a_module_that_does_not_parse_or_a_missing_code_folder(project: Path) -> None:
    (project / "src" / "broken.py").write_text("def f(:\n")
    found = lint(project, 'python("broken:f")', 'python("models:Net")')
    assert [(c, m) for c, _, m, _ in found] == [("DT307", "`broken:f`: line 1 does not parse (invalid syntax) in `src/broken.py`")]
    (project / "src" / "broken.py").unlink()
    (project / "src" / "models.py").rename(project / "models.py")
    (project / "src").rmdir()
    found = lint(project, 'python("models:load")', 'python("models:Net")')
    assert codes(found) == [("DT307", '"src"')]  # the folder, once


def test_lint_of_data_files_imports_no_numpy(project: Path) -> None:
    lint(project, 'npz("data/gauges.npz")')  # writes bp.twin
    script = (
        "import sys\n"
        "from dtec.cli import app\n"
        "from typer.testing import CliRunner\n"
        f"result = CliRunner().invoke(app, ['lint', {str(project / 'bp.twin')!r}])\n"
        "assert result.exit_code == 0, result.output\n"
        "print(','.join(m for m in ('numpy', 'torch', 'pandas') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


# ---- losses and python() data that declare their task ------------------------------------------


def test_a_python_source_declares_its_task_and_shape_for_the_checks(project: Path) -> None:
    """`classes`, `targets` and `shape` are the data's, held against model and loss, and not
    passed to the function (which takes no `classes`: a TypeError when the job started)."""
    source = 'python("models:load", samples = 32, classes = 3, shape = [30, 8])'
    assert lint(project, source, "lstm(input = 8, hidden = 4, output = 3)", "cross_entropy") == []
    bundle, _ = compile_blueprint(project / "bp.twin", "local", environ={})
    assert 'TASK = "classification"' in bundle.files["train.py"]
    assert '"kwargs": {"samples": 32}' in bundle.files["train.py"]
    assert bundle.ir.data["d"].classes == 3 and bundle.ir.data["d"].sample_shape == [30, 8]
    assert codes(lint(project, source, "lstm(input = 8, hidden = 4, output = 3)", "mse")) == [("DT301", "mse")]
    assert codes(lint(project, source, "lstm(input = 7, hidden = 4, output = 2)", "cross_entropy")) == [
        ("DT300", "7"), ("DT300", "2")]
    both = lint(project, 'python("models:load", classes = 3, targets = 1)', 'python("models:Net")', "cross_entropy")
    assert [(c, m) for c, _, m, _ in both] == [("DT114", "`python` takes one of `targets` and `classes`, not both")]


@pytest.mark.parametrize(
    ("loss", "found"),
    [
        ('python("models:focal")', [("DT307", '"models:focal"')]),
        ('sum(terms = [mse, python("models:kl")])', [("DT307", '"models:kl"')]),
        ('python("models:load", gamma = 2)', []),  # found; its arguments are passed on as written
        ("mse(pos_weight = 3)", [("DT104", "pos_weight")]),
        ("sum(terms = [mse, huber(delta = 0.5)], weights = [1])", [("DT114", "[1]")]),
        ("sum(terms = [mse, bce])", [("DT301", "bce")]),  # the data says regression
        ("cross_entropy", [("DT301", "cross_entropy")]),
    ],
)
def test_every_form_of_loss_is_checked(project: Path, loss: str, found: list) -> None:
    result = lint(project, 'npz("data/gauges.npz", targets = 1)', loss=loss)
    assert codes(result) == found
    if found and found[0][0] == "DT104":
        assert result[0][3] == "`pos_weight` is an argument of `bce`"


def test_the_terms_of_a_sum_score_the_same_targets_where_the_data_does_not_say(project: Path) -> None:
    found = lint(project, 'python("models:load")', 'python("models:Net")', 'sum(terms = [python("models:load"), mse, cross_entropy])')
    assert [(c, at, m) for c, at, m, _ in found] == [
        ("DT301", "cross_entropy", "`cross_entropy` scores class numbers but `mse`, an earlier term, scores values (regression)")]


@pytest.mark.parametrize(
    ("source", "arch", "loss", "found"),
    [
        ("classes = 3", "output = 3", "cross_entropy(weights = [1, 2])", "`weights` has 2 values but the data has 3 classes"),
        ("classes = 3", "output = 3", "nll(weights = [1, 2, 3])", None),
        ("classes = 2", "output = 1", "bce(pos_weight = [1, 2])", "`pos_weight` has 2 values but the model has 1 output"),
        ("classes = 2", "output = 1", "bce(pos_weight = 2)", None),
    ],
)
def test_per_class_weights_match_the_classes(project: Path, source: str, arch: str, loss: str, found: str | None) -> None:
    result = lint(project, f'python("models:load", {source})', f"lstm(input = 8, hidden = 4, {arch})", loss)
    assert [(c, m) for c, _, m, _ in result] == ([("DT323", found)] if found else [])


def test_a_python_loss_in_the_train_code_folder_is_bundled(project: Path) -> None:
    (project / "losses").mkdir()
    (project / "losses" / "custom.py").write_text("def kl(pred, target):\n    return (pred - target).pow(2).mean()\n")
    text = (BLUEPRINT.replace("SOURCE", 'npz("data/gauges.npz", targets = 1)').replace("ARCH", "lstm(input = 8, hidden = 4, output = 1)")
            .replace("LOSS", 'sum(terms = [mse, python("custom:kl", scale = 2)], weights = [1, 0.1])\n  path = "losses"'))
    (project / "bp.twin").write_text(text)
    bundle, diagnostics = compile_blueprint(project / "bp.twin", "local", environ={})
    assert bundle is not None and not diagnostics
    assert bundle.files["code/losses/custom.py"].startswith("def kl(")
    assert bundle.ir.train.path == "code/losses" and bundle.ir.train.loss.label == "mse + 0.1 * python"
    assert 'CODE = ["code/src", "code/losses"]' in bundle.files["train.py"]
    assert '{"fn": "python", "callable": "custom:kl", "kwargs": {"scale": 2}}' in bundle.files["train.py"]
    (project / "losses" / "custom.py").write_text("def other(pred, target):\n    return pred.mean()\n")
    found = analyse(project / "bp.twin", environ={}, targets=[]).diagnostics
    assert [(d.code, d.message) for d in found] == [("DT307", "`custom:kl`: no `kl` defined at the top level in `losses/custom.py`")]


def test_accuracy_is_monitored_only_where_the_task_is_known(project: Path) -> None:
    loss = 'python("models:load")\n  checkpoint = { best = max(val_accuracy) }'
    found = lint(project, 'python("models:load")', 'python("models:Net")', loss)
    assert [(c, at) for c, at, _, _ in found] == [("DT310", "val_accuracy")]
    assert "give the data source `classes = N`" == found[0][3]
    assert lint(project, 'python("models:load", classes = 3)', 'python("models:Net")', loss) == []
