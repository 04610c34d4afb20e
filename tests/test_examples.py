"""The shipped examples of the training contract train end to end on two CPU ranks, shortened.

blueprints/digits.twin (classification: accuracy/F1, best epoch, early stopping, a test split,
export) and blueprints/pulsar-segmentation.twin (a U-Net under a weighted BCE, a plateau schedule):
each run through `dtec run` with fewer samples and epochs, its summary checked against what the
blueprint asks for, and the exported model used through the bundle's predict.py.
"""

from __future__ import annotations

import json
import os
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
# example: (the --set values that shorten it, the test metric that must beat chance, by how much)
EXAMPLES = {
    "digits": (["data.digits.source.samples=2400", "train.epochs=5"], "test_accuracy", 0.5),
    "pulsar-segmentation": (["data.series.source.samples=400", "train.epochs=3"], "test_recall", 0.5),
}


def env() -> dict[str, str]:
    launcher = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
    found = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "TORCHELASTIC_")) and k not in launcher}
    return {**found, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_the_example_trains_scores_its_test_split_and_predicts(tmp_path: Path, name: str) -> None:
    sets, metric, floor = EXAMPLES[name]
    project = tmp_path / "project"
    shutil.copytree(ROOT / "blueprints", project)
    (project / ".git").mkdir()  # the project's root: imports and code folders stay inside it
    command = [sys.executable, "-m", "dtec", "run", f"{name}.twin", "-t", "local", "-o", "run-1"]
    command += [arg for value in sets for arg in ("--set", value)]
    done = subprocess.run(command, cwd=project, env=env(), capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    bundle = project / "run-1"
    summary = json.loads((bundle / "run" / "summary.json").read_text())
    assert (summary["status"], summary["world_size"]) == ("completed", 2)
    assert summary["best"]["metric"] == "val_f1" and 1 <= summary["best"]["epoch"] <= summary["epochs"]
    assert summary["test"][metric] > floor, summary["test"]
    assert {"test_f1", "test_precision", "test_recall"} <= summary["test"].keys()
    assert summary["export"] == {"format": "torch_export", "file": "model.pt2"}

    # dtec evaluate scores the finished run as its end did (BatchNorm statistics untouched).
    again = subprocess.run([sys.executable, "-m", "dtec", "evaluate", "run-1", "--format", "json"], cwd=project,
                           env=env(), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    scored = json.loads(again.stdout)["metrics"]
    assert scored == pytest.approx(summary["test"], rel=1e-6)

    # predict.py on test inputs gives what the final (best) weights in the model class give.
    module = runpy.run_path(str(bundle / "train.py"), run_name="bundle_train")
    test = module["split"](module["load_dataset"](), module["TRAIN"]["seed"])[2]
    x = torch.stack([test[i][0] for i in range(min(len(test), 16))])
    model = module["build_model"](tuple(x.shape[1:]))
    model.load_state_dict(torch.load(bundle / "run" / "final_model.pt", weights_only=True))
    with torch.no_grad():
        expected = model.eval()(x).numpy()
    np.save(tmp_path / "x.npy", x.numpy())
    predict = [sys.executable, str(bundle / "predict.py"), str(tmp_path / "x.npy"), "--output", str(tmp_path / "y.npy")]
    done = subprocess.run(predict, env=env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), expected, atol=1e-4, rtol=1e-4)
