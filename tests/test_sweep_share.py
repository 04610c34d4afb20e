"""Local sweep trials share the computer: each plans with its part of the CPUs, memory and GPUs."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from dtec.compiler import compile_blueprint
from dtec.host import cpu_count
from dtec.machines import detect_local
from dtec.machines.local import share, trial_devices
from dtec.study import study_id

FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture
def gpus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A computer with `n` NVIDIA GPUs, as nvidia-smi tells it."""
    def make(n: int) -> None:
        tool = tmp_path / "nvidia-smi"
        tool.write_text(f'#!/bin/sh\nfor i in $(seq {n}); do echo "NVIDIA H100 80GB HBM3, 81559, 9.0"; done\n')
        tool.chmod(tool.stat().st_mode | stat.S_IEXEC)
        monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    return make


def test_a_share_divides_cpus_memory_and_gpus(gpus) -> None:
    gpus(4)
    whole = detect_local()
    part = share(whole, 2).node
    assert part.usable_cpus == max(1, whole.node.usable_cpus // 2)
    assert part.requestable_memory_gb == whole.node.requestable_memory_gb / 2
    assert part.gpus == 2 and share(whole, 3).node.gpus == 1
    assert share(whole, 8).node.gpus == 1  # fewer GPUs than trials: each has one, and trials share
    assert all(p.node == part for p in share(whole, 2).partitions)


def test_each_worker_gets_its_own_gpus(gpus, monkeypatch: pytest.MonkeyPatch) -> None:
    gpus(4)
    assert [trial_devices(n, 2) for n in range(2)] == [{"CUDA_VISIBLE_DEVICES": "0,1"}, {"CUDA_VISIBLE_DEVICES": "2,3"}]
    assert [trial_devices(n, 3)["CUDA_VISIBLE_DEVICES"] for n in range(3)] == ["0", "1", "2"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5,7")  # the GPUs this computer gives dtec: the workers split them
    assert [trial_devices(n, 3)["CUDA_VISIBLE_DEVICES"] for n in range(3)] == ["5", "7", "5"]


def test_no_gpu_no_devices(gpus) -> None:
    gpus(0)
    assert trial_devices(0, 2) == {}


def test_a_local_trial_plans_with_its_share_and_says_so() -> None:
    blueprint = FIXTURES / "flood-sweep.twin"
    bundle, diagnostics = compile_blueprint(blueprint, "local", sweep=False, sharing=2)
    assert bundle is not None, diagnostics
    assert bundle.plan.cpus_per_rank == max(1, cpu_count() // 2)
    assert f"export OMP_NUM_THREADS={max(1, cpu_count() // 2)}\n" in bundle.files["run.sh"]
    [decision] = [d for d in bundle.plan.decisions if d.subject == "computer share"]
    assert decision.value == "1/2" and "2 trials at once" in decision.reason


def test_a_trial_with_gpus_takes_its_part(gpus) -> None:
    gpus(4)
    bundle, diagnostics = compile_blueprint(FIXTURES / "flood-sweep.twin", "local", sweep=False, sharing=2)
    assert bundle is not None, diagnostics
    assert bundle.plan.gpus_per_node == 2 and bundle.plan.ranks_per_node == 2


def test_the_study_does_not_change_with_parallel(tmp_path: Path) -> None:
    # `--set sweep.parallel=4` continues the study: its id is the blueprint's, not a trial's share.
    text = (FIXTURES / "flood-sweep.twin").read_text()
    ids = set()
    for parallel in (1, 2, 4):
        path = tmp_path / f"p{parallel}.twin"
        path.write_text(text.replace("parallel = 2", f"parallel = {parallel}"))
        bundle, diagnostics = compile_blueprint(path, "local")
        assert bundle is not None, diagnostics
        assert bundle.plan.cpus_per_rank == cpu_count()
        ids.add(study_id(bundle.blueprint.get("sweep"), bundle.files["ir.json"]))
    assert len(ids) == 1


@pytest.mark.parametrize("target, sharing", [("local", 1), ("lumi", 2)])
def test_a_lone_trial_or_a_cluster_trial_is_not_shared(target: str, sharing: int) -> None:
    # On a cluster each worker is an allocation of its own (a job array task, a pod).
    blueprint = Path(__file__).resolve().parent.parent / "blueprints" / "quickstart.twin"
    alone, _ = compile_blueprint(blueprint, target, sweep=False)
    bundle, diagnostics = compile_blueprint(blueprint, target, sweep=False, sharing=sharing)
    assert bundle is not None, diagnostics
    assert not [d for d in bundle.plan.decisions if d.subject == "computer share"]
    assert bundle.files == alone.files
