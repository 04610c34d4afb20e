"""Loader workers of the generated train.py: how they start, and a hung one ends its run."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from quickstart import write_bundle
from train_runs import load_script, ok, records, run, torchrun

USER_DATA = ('data.gauges.path="code"', "model.surrogate.arch=mlp(input = 6, output = 1)")


def options(tmp_path: Path, *sets: str) -> dict:
    """loader_options of the quickstart compiled with `sets`, for a CPU rank."""
    train_py = load_script(write_bundle(tmp_path, "data.gauges.workers=2", *sets))
    return train_py.loader_options(SimpleNamespace(device=torch.device("cpu")))


def test_built_in_sources_start_workers_from_a_forkserver_with_a_timeout(tmp_path: Path) -> None:
    found = options(tmp_path)
    # Forked from a server without the rank's threads, so no lock one of them held comes along.
    assert found["multiprocessing_context"] == "forkserver"
    assert found["timeout"] == 120  # the collective timeout (DTEC_PG_TIMEOUT), not 0 = forever


def test_a_python_source_keeps_fork_since_its_objects_need_not_pickle(tmp_path: Path) -> None:
    source = 'data.gauges.source=python(callable = "toy:make_datasets", samples = 64, features = 6)'
    found = options(tmp_path, source, *USER_DATA)
    assert found["multiprocessing_context"] == "fork" and found["timeout"] == 120


@pytest.mark.slow
def test_two_ranks_train_with_workers_started_by_a_forkserver(tmp_path: Path) -> None:
    script = write_bundle(tmp_path, "data.gauges.workers=2", "train.epochs=2")
    ok(torchrun(script, timeout=600))
    assert [e["epoch"] for e in records(tmp_path / "run", "epoch")] == [1, 2]


@pytest.mark.slow
def test_a_hung_loader_worker_ends_the_run_with_an_error_that_says_so(tmp_path: Path) -> None:
    source = 'data.gauges.source=python(callable = "toy:stalling_datasets", samples = 64, features = 6)'
    script = write_bundle(tmp_path, source, *USER_DATA, "data.gauges.workers=1", "train.epochs=1")
    # Before: the rank waited for ever (timeout 0), and then on exit for the SIGTERM-immune worker.
    result = run([sys.executable, str(script), "--run-dir", str(tmp_path / "run")], timeout=300,
                 DTEC_PG_TIMEOUT="3")
    assert result.returncode == 1, result.stdout[-3000:]
    assert "DataLoader timed out after 3.0 seconds" in result.stdout.splitlines()[-1]
