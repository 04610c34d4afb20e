"""Self-contained bundles: the user's code copied and checksummed, data read from a data root."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from dtec.analysis import analyse
from dtec.compiler import compile_blueprint
from dtec.lang import codefolders
from dtec.output import write_bundle

BLUEPRINT = """\
twin "flood" {}
data "stations" {
  source = SOURCE
  batch  = 16
  DATA_EXTRA
}
model "net" {
  arch  = ARCH
  input = data.stations
  MODEL_EXTRA
}
train {
  loss      = mse
  optimizer = adam(lr = 0.01)
  epochs    = 1
}
strategy {
  kind = single
}
target "local" {}
target "slurm" {
  partition = "debug"
  container = "/images/pytorch.sif"
  data_root = "/scratch/flood"
}
target "kubernetes" {
  image = "registry.example.org/flood:1"
}
"""
MODELS = """\
from torch import nn

WIDTH = 8


class Net(nn.Module):
    def __init__(self, features):
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(features, WIDTH), nn.Tanh(), nn.Linear(WIDTH, 1))

    def forward(self, x):
        return self.layers(x)
"""


def blueprint(source: str = 'csv("data/stations.csv", "q")', arch: str = 'python("models:Net", features = 2)',
              model_extra: str = 'path = "src"', data_extra: str = "") -> str:
    text = BLUEPRINT.replace("SOURCE", source).replace("ARCH", arch)
    return text.replace("MODEL_EXTRA", model_extra).replace("DATA_EXTRA", data_extra)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A repository with a blueprint, a CSV and the user's model code (and what is not source)."""
    root = tmp_path / "project"
    (root / ".git").mkdir(parents=True)
    (root / "data").mkdir()
    rows = "\n".join(f"{i % 7 / 7:.3f},{i % 3 / 3:.3f},{(i % 7) / 7 + (i % 3) / 3:.3f}" for i in range(64))
    (root / "data" / "stations.csv").write_text("rain,snow,q\n" + rows + "\n")
    (root / "src" / "helpers").mkdir(parents=True)
    (root / "src" / "models.py").write_text(MODELS)
    (root / "src" / "helpers" / "__init__.py").write_text("")
    (root / "src" / "settings.toml").write_text("width = 8\n")
    (root / "src" / "__pycache__").mkdir()
    (root / "src" / "__pycache__" / "models.cpython-312.pyc").write_bytes(b"\0compiled")
    (root / "src" / ".secret.py").write_text("TOKEN = 1\n")
    (root / "src" / "notes.md").write_text("not source\n")
    (root / "flood.twin").write_text(blueprint())
    return root


def compile_to(path: Path, target: str, folder: Path):
    bundle, diagnostics = compile_blueprint(path, target, environ={})
    assert bundle is not None, [(d.code, d.message) for d in diagnostics]
    write_bundle(bundle.files, folder)
    return bundle


def lint(project: Path, text: str, target: str = "local") -> list[tuple[str, str]]:
    path = project / "flood.twin"
    path.write_text(text)
    result = analyse(path, environ={}, targets=[target])
    return [(d.code, d.message) for d in result.diagnostics]


def test_the_code_is_copied_and_checksummed_and_no_path_of_this_computer_is_written(project: Path, tmp_path: Path) -> None:
    for target in ("local", "slurm"):
        folder = tmp_path / f"build-{target}"
        compile_to(project / "flood.twin", target, folder)
        copied = sorted(str(p.relative_to(folder)) for p in (folder / "code").rglob("*") if p.is_file())
        assert copied == ["code/src/helpers/__init__.py", "code/src/models.py", "code/src/settings.toml"]
        manifest = json.loads((folder / "manifest.json").read_text())
        for name in copied:
            assert manifest["files"][name]["sha256"] == hashlib.sha256((folder / name).read_bytes()).hexdigest()
        assert (folder / "code" / "src" / "models.py").read_text() == MODELS
        for path in folder.rglob("*"):
            if path.is_file():
                assert str(tmp_path) not in path.read_text(), f"{path.name} holds a path of the compiling machine"
        ir = json.loads((folder / "ir.json").read_text())
        assert ir["models"]["net"]["path"] == "code/src"
        assert ir["data"]["stations"]["options"]["path"] == "data/stations.csv"
        assert 'CODE = ["code/src"]' in (folder / "train.py").read_text()


def test_a_recompiled_bundle_drops_code_the_blueprint_no_longer_names(project: Path, tmp_path: Path) -> None:
    folder = tmp_path / "build"
    compile_to(project / "flood.twin", "local", folder)
    (project / "flood.twin").write_text(blueprint('synthetic(samples = 64, shape = [2], targets = 1)', "mlp(input = 2, output = 1)", ""))
    compile_to(project / "flood.twin", "local", folder)
    assert not (folder / "code").exists()
    assert "code/src/models.py" not in json.loads((folder / "manifest.json").read_text())["files"]


def test_a_link_in_place_of_the_code_folder_is_refused(project: Path, tmp_path: Path) -> None:
    from dtec.output import OutputError

    folder = tmp_path / "build"
    compile_to(project / "flood.twin", "local", folder)
    shutil.rmtree(folder / "code")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (folder / "code").symlink_to(elsewhere)
    bundle, _ = compile_blueprint(project / "flood.twin", "local", environ={})
    with pytest.raises(OutputError, match="a link"):
        write_bundle(bundle.files, folder, force=True)
    assert list(elsewhere.iterdir()) == []


@pytest.mark.slow
def test_a_moved_bundle_trains_from_its_copy_of_the_code_with_the_data_root_set(project: Path, tmp_path: Path) -> None:
    compile_to(project / "flood.twin", "local", tmp_path / "build")
    moved = tmp_path / "elsewhere" / "bundle"
    moved.parent.mkdir()
    shutil.move(tmp_path / "build", moved)
    # Edited while the job waits: the bundle runs the code it was compiled with.
    (project / "src" / "models.py").write_text("raise RuntimeError('edited after compiling')\n")
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "DTEC_DATA_ROOT")}
    env |= {"PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(["bash", "run.sh"], cwd=moved, env={**env, "DTEC_DATA_ROOT": str(project)},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads((moved / "run" / "summary.json").read_text())["status"] == "completed"
    unset = subprocess.run(["bash", "run.sh", "--run-dir", "again"], cwd=moved, env=env, capture_output=True, text=True, timeout=300)
    assert unset.returncode == 1
    assert "data/stations.csv is relative to the data root: set DTEC_DATA_ROOT" in unset.stderr


def test_dtec_run_sets_the_data_root_to_the_blueprint_folder(project: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "DTEC_DATA_ROOT"}
    done = subprocess.run([sys.executable, "-m", "dtec", "run", "flood.twin", "--dry-run", "-o", str(tmp_path / "job")],
                          cwd=project, env={**env, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"DTEC_DATA_ROOT={project}" in done.stdout
    # The target's data_root is the launcher's: dtec run leaves it alone.
    done = subprocess.run([sys.executable, "-m", "dtec", "run", "flood.twin", "-t", "slurm", "--dry-run", "-o", str(tmp_path / "s")],
                          cwd=project, env={**env, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "DTEC_DATA_ROOT" not in done.stdout


def test_job_sbatch_sets_and_binds_the_data_root(project: Path, tmp_path: Path) -> None:
    compile_to(project / "flood.twin", "slurm", tmp_path / "s")
    text = (tmp_path / "s" / "job.sbatch").read_text()
    assert "data_root=/scratch/flood\n" in text
    assert 'export DTEC_DATA_ROOT="${DTEC_DATA_ROOT:-$data_root}"' in text
    assert 'binds+=",$(realpath -m -- "$DTEC_DATA_ROOT")"' in text
    assert 'exec --bind "$binds" "$container"' in text
    if shutil.which("shellcheck"):
        check = subprocess.run(["shellcheck", "-s", "bash", "-"], input=text, capture_output=True, text=True)
        assert check.returncode == 0, check.stdout


def test_a_pod_needs_a_data_root_for_relative_data_and_carries_the_code(project: Path) -> None:
    found = lint(project, blueprint(), "kubernetes")
    assert [c for c, _ in found] == ["DT215"]
    assert "a pod cannot read `data/stations.csv` from this computer" in found[0][1]
    text = blueprint().replace('image = "registry', 'data_root = "/data"\n  image = "registry')
    (project / "flood.twin").write_text(text)
    bundle, diagnostics = compile_blueprint(project / "flood.twin", "kubernetes", environ={})
    assert bundle is not None, diagnostics
    objects = list(yaml.safe_load_all(bundle.files["job.yaml"]))
    config = objects[0]["data"]
    assert config["code.src.models.py"] == MODELS
    job = next(o for o in objects if o["kind"] == "Job")
    pod = job["spec"]["template"]["spec"]
    items = pod["volumes"][0]["configMap"]["items"]
    assert {"key": "code.src.models.py", "path": "code/src/models.py"} in items
    assert {"key": "train.py", "path": "train.py"} in items
    assert {"name": "DTEC_DATA_ROOT", "value": "/data"} in pod["containers"][0]["env"]


def test_a_container_that_does_not_bind_an_absolute_data_path_is_warned_about(project: Path) -> None:
    (project / "data" / "abs.csv").write_text((project / "data" / "stations.csv").read_text())
    outside = blueprint(f'csv("{project}/data/abs.csv", "q")')
    assert [c for c, _ in lint(project, outside, "slurm")] == ["DT218"]
    inside = outside.replace('data_root = "/scratch/flood"', f'data_root = "{project}"')
    assert lint(project, inside, "slurm") == []
    assert lint(project, blueprint(), "slurm") == []  # relative: under the data root, which is bound
    assert lint(project, outside, "local") == []  # no container


def test_a_data_module_is_found_in_the_data_sets_own_code_folder(project: Path) -> None:
    (project / "feeds").mkdir()
    (project / "feeds" / "gauges.py").write_text("def make(samples):\n    return None\n")
    text = blueprint('python("gauges:make", samples = 64)', "mlp(input = 2, output = 1)", "", 'path = "feeds"')
    assert lint(project, text) == []
    bundle, _ = compile_blueprint(project / "flood.twin", "local", environ={})
    assert "code/feeds/gauges.py" in bundle.files
    assert 'CODE = ["code/feeds"]' in bundle.files["train.py"]
    # One folder serves both: the model's code folder also holds the data module.
    text = blueprint('python("models:Net")', 'python("models:Net", features = 2)')
    assert lint(project, text) == []
    wrong = blueprint('python("gauge:make", samples = 64)', "mlp(input = 2, output = 1)", "", 'path = "feeds"')
    assert [c for c, _ in lint(project, wrong)] == ["DT307"]


def test_code_folders_that_cannot_be_copied(project: Path, tmp_path: Path, monkeypatch) -> None:
    secret = tmp_path / "secret.py"
    secret.write_text("KEY = 1\n")
    (project / "src" / "key.py").symlink_to(secret)
    found = lint(project, blueprint())
    assert found == [("DT309", "code folder `src`: `key.py` links to a place outside the project")]
    (project / "src" / "key.py").unlink()
    (project / "src" / "key.py").symlink_to(project / "data" / "stations.csv")  # inside: followed
    assert lint(project, blueprint()) == []
    monkeypatch.setattr(codefolders, "MAX_BYTES", 64)
    assert [c for c, _ in lint(project, blueprint())] == ["DT309"]
    monkeypatch.undo()
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "models.py").write_text(MODELS)
    found = lint(project, blueprint(model_extra='path = "../shared"'))
    assert [c for c, _ in found] == ["DT309"] and "outside the project" in found[0][1]


def test_an_absolute_code_folder_not_on_this_computer_stays_absolute(project: Path) -> None:
    text = blueprint(model_extra='path = "/opt/flood/src"')
    assert [c for c, _ in lint(project, text)] == ["DT306"]
    bundle, _ = compile_blueprint(project / "flood.twin", "local", environ={})
    assert 'CODE = ["/opt/flood/src"]' in bundle.files["train.py"]
    assert not any(name.startswith("code/") for name in bundle.files)
