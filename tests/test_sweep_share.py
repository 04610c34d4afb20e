"""Local sweep trials share the computer: each plans with its part of the CPUs, memory and GPUs."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest
from fake_tools import fake_tool

from dtec.compiler import compile_blueprint
from dtec.host import cpu_count
from dtec.machines import detect_local
from dtec.machines.local import share, trial_devices
from dtec.machines.model import node_replace
from dtec.study import study_id

FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture
def gpus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A computer with `n` NVIDIA GPUs, as nvidia-smi tells it."""
    def make(n: int) -> None:
        fake_tool(tmp_path, "nvidia-smi", f'for i in $(seq {n}); do echo "NVIDIA H100 80GB HBM3, 81559, 9.0"; done\n')
        monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    return make


def test_a_share_divides_cpus_memory_and_gpus() -> None:
    node = node_replace(detect_local().node, cpus=8, usable_cpus=8, memory_gb=32, requestable_memory_gb=30,
                        gpus=4, gpu_memory_gb=80)
    whole = replace(detect_local(), node=node, partitions=tuple(replace(p, node=node) for p in detect_local().partitions))
    half = share(whole, 2)
    assert (half.node.usable_cpus, half.node.requestable_memory_gb, half.node.gpus, half.node.gpu_memory_gb) == (4, 15, 2, 80)
    assert all(p.node == half.node for p in half.partitions)
    assert (share(whole, 3).node.usable_cpus, share(whole, 3).node.gpus) == (2, 1)  # rounded down: one GPU idle
    crowded = share(whole, 8).node  # fewer GPUs than trials: one each, two trials on a GPU, half its memory each
    assert (crowded.usable_cpus, crowded.gpus, crowded.gpu_memory_gb) == (1, 1, 40)
    assert share(whole, 16).node.usable_cpus == 1


def test_each_worker_gets_its_own_gpus(gpus, monkeypatch: pytest.MonkeyPatch) -> None:
    gpus(4)
    assert [trial_devices(n, 2) for n in range(2)] == [{"CUDA_VISIBLE_DEVICES": "0,1"}, {"CUDA_VISIBLE_DEVICES": "2,3"}]
    assert [trial_devices(n, 3)["CUDA_VISIBLE_DEVICES"] for n in range(3)] == ["0", "1", "2"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5,7")  # the GPUs this computer gives dtec: the workers split them
    assert [trial_devices(n, 3)["CUDA_VISIBLE_DEVICES"] for n in range(3)] == ["5", "7", "5"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-a1,GPU-b2,-1,3")  # CUDA stops at the first invalid entry
    assert [trial_devices(n, 2)["CUDA_VISIBLE_DEVICES"] for n in range(2)] == ["GPU-a1", "GPU-b2"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3,4,5")  # more listed than there are: only those that exist
    assert [trial_devices(n, 2)["CUDA_VISIBLE_DEVICES"] for n in range(2)] == ["0,1", "2,3"]


def test_amd_workers_split_what_hip_sees(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_tool(tmp_path, "nvidia-smi", "exit 9\n")
    fake_tool(tmp_path, "rocm-smi", "".join(f'echo "GPU[{i}]  : Card series:  AMD Instinct MI250X"\n' for i in range(4)))
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    for variable in ("ROCR_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES"):
        monkeypatch.delenv(variable, raising=False)
    assert [trial_devices(n, 2) for n in range(2)] == [{"HIP_VISIBLE_DEVICES": "0,1"}, {"HIP_VISIBLE_DEVICES": "2,3"}]
    monkeypatch.setenv("ROCR_VISIBLE_DEVICES", "4,5")  # HIP numbers the devices ROCr leaves visible from 0
    assert [trial_devices(n, 2) for n in range(2)] == [{"HIP_VISIBLE_DEVICES": "0"}, {"HIP_VISIBLE_DEVICES": "1"}]


def test_no_gpu_no_devices(gpus) -> None:
    gpus(0)
    assert trial_devices(0, 2) == {}


def test_a_local_trial_plans_with_its_share_and_says_so(tmp_path: Path) -> None:
    # The target says how many CPUs the computer has: the share is of those, not of this machine's.
    blueprint = tmp_path / "bp.twin"
    blueprint.write_text((FIXTURES / "flood-sweep.twin").read_text().replace("parallel = 2", "parallel = 4")
                         + 'target "local" {\n  machine {\n    cpus = 8\n  }\n}\n')
    bundle, diagnostics = compile_blueprint(blueprint, "local", sweep=False, sharing=4)
    assert bundle is not None, diagnostics
    assert bundle.plan.cpus_per_rank == 2 and "export OMP_NUM_THREADS=2\n" in bundle.files["run.sh"]
    [decision] = [d for d in bundle.plan.decisions if d.subject == "computer share"]
    assert decision.value == "1/4" and "4 trials at once" in decision.reason and "2 of its 8 CPUs" in decision.reason
    whole, _ = compile_blueprint(blueprint, "local")
    assert whole.plan.cpus_per_rank == 8


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


def test_a_cluster_trial_is_not_shared() -> None:
    # On a cluster each worker is an allocation of its own (a job array task, a pod).
    blueprint = Path(__file__).resolve().parent.parent / "blueprints" / "quickstart.twin"
    alone, _ = compile_blueprint(blueprint, "lumi", sweep=False)
    bundle, diagnostics = compile_blueprint(blueprint, "lumi", sweep=False, sharing=2)
    assert bundle is not None, diagnostics
    assert not [d for d in bundle.plan.decisions if d.subject == "computer share"]
    assert bundle.files == alone.files


def test_more_ranks_than_the_share_has_cpus_is_said(tmp_path: Path) -> None:
    blueprint = tmp_path / "bp.twin"
    blueprint.write_text((FIXTURES / "flood-sweep.twin").read_text()
                         + 'strategy {\n  procs_per_node = 2\n}\n\ntarget "local" {\n  machine {\n    cpus = 2\n  }\n}\n')
    bundle, diagnostics = compile_blueprint(blueprint, "local", sweep=False, sharing=2)
    assert bundle is not None, diagnostics
    [decision] = [d for d in bundle.plan.decisions if d.subject == "CPUs per rank"]
    assert decision.reason == "2 ranks on 1 CPU: they take turns, one thread each"
    alone, _ = compile_blueprint(blueprint, "local", sweep=False)
    assert not [d for d in alone.plan.decisions if d.subject == "CPUs per rank"]
