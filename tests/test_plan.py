"""Planning onto machines: decisions for `auto`, and every machine check at its place."""

from __future__ import annotations

from pathlib import Path

import pytest

from dtec.lint import analyse

BASE = """\
twin "t" {}
data "d" {
  source  = synthetic(samples = 256, shape = [30, 8], targets = 1)
  batch   = 16
  workers = WORKERS
}
model "m" {
  arch  = lstm(input = 8, hidden = 32, output = 1)
  input = data.d
}
train {
  loss      = mse
  precision = PRECISION
}
strategy {
  kind          = KIND
  nodes         = NODES
  gpus_per_node = GPUS
}
TARGET
"""

LUMI = 'target "lumi" {\n  account   = "project_465000001"\n  partition = "PARTITION"\n  walltime  = WALLTIME\n}\n'


def blueprint(**values: str) -> str:
    defaults = {"WORKERS": "auto", "PRECISION": "auto", "KIND": "auto", "NODES": "1", "GPUS": "all", "TARGET": LUMI}
    text = BASE
    for key, value in {**defaults, **values}.items():
        text = text.replace(key, value)
    return text.replace("PARTITION", values.get("PARTITION", "standard-g")).replace("WALLTIME", values.get("WALLTIME", "1h"))


def check(text: str, target: str = "lumi"):
    return analyse(Path("bp.twin"), text, {}, targets=[target])


def found(result) -> list[tuple[str, int, int]]:
    return [(d.code, *(d.span.start_pos if d.span else (0, 0))) for d in result.diagnostics]


def test_lumi_plan_uses_every_gcd_in_bf16() -> None:
    result = check(blueprint())
    assert found(result) == []
    plan = result.plans["lumi"]
    assert (plan.strategy, plan.nodes, plan.ranks_per_node, plan.device, plan.precision) == ("ddp", 1, 8, "cuda", "bf16")
    assert (plan.cpus_per_rank, plan.workers, plan.global_batch) == (7, 6, 16 * 8)
    assert {d.subject for d in plan.decisions} >= {"strategy", "precision", "loader workers", "global batch"}


def test_single_rank_is_single_and_cpu_is_fp32() -> None:
    text = blueprint(TARGET='target "deucalion" {\n  account = "f202500001a"\n}\n', GPUS="0")
    result = check(text, "deucalion")
    plan = result.plans["deucalion"]
    assert found(result) == []
    assert (plan.strategy, plan.device, plan.precision, plan.backend) == ("single", "cpu", "fp32", "gloo")


def test_large_model_is_sharded_with_fsdp(blueprints_dir: Path) -> None:
    result = analyse(blueprints_dir / "climate-foundation.twin", environ={})
    plan = result.plans["lumi"]
    assert plan.strategy == "fsdp"
    assert plan.parameters > 6e9
    reason = next(d.reason for d in plan.decisions if d.subject == "strategy")
    assert "GiB per rank" in reason


@pytest.mark.parametrize(
    ("values", "target", "expected", "help_part"),
    [
        ({"PARTITION": "standard-gg"}, "lumi", ("DT201", 22, 15), "did you mean `standard-g`?"),
        ({"PARTITION": "small-g", "NODES": "8"}, "lumi", ("DT202", 17, 19), "at most 4"),
        ({"PARTITION": "dev-g", "WALLTIME": "4h"}, "lumi", ("DT203", 23, 15), "3h"),
        ({"GPUS": "16"}, "lumi", ("DT204", 18, 19), "at most 8"),
        ({"GPUS": "4"}, "lumi", ("DT212", 18, 19), "gpus_per_node = all"),
        ({"WORKERS": "12"}, "lumi", ("DT213", 5, 13), "workers = auto"),
        ({"TARGET": 'target "lumi" {\n  account = "abc"\n}\n'}, "lumi", ("DT211", 21, 13), "check the project"),
        ({"TARGET": 'target "lumi" {\n  partition = "small-g"\n}\n'}, "lumi", ("DT209", 20, 1), 'env("LUMI_ACCOUNT")'),
        ({"TARGET": 'target "kubernetes" {}\n'}, "kubernetes", ("DT210", 20, 1), "image ="),
        ({"TARGET": 'target "deucalion" {\n  account = "x1a"\n}\n', "PRECISION": "bf16", "GPUS": "0"}, "deucalion", ("DT205", 13, 15), "fp32"),
        ({"TARGET": 'target "deucalion" {\n  account = "x1a"\n}\n', "GPUS": "2"}, "deucalion", ("DT206", 18, 19), "procs_per_node"),
        ({"TARGET": 'target "lumii" {}\n'}, "lumii", ("DT200", 20, 1), "did you mean `lumi`?"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_machine_checks(values: dict, target: str, expected: tuple, help_part: str) -> None:
    result = check(blueprint(**values), target)
    assert found(result) == [expected]
    assert help_part in result.diagnostics[0].help


def test_zero_without_deepspeed() -> None:
    text = blueprint(KIND="ddp").replace("  gpus_per_node = all\n", "  gpus_per_node = all\n  zero = 2\n")
    assert found(check(text)) == [("DT207", 19, 10)]


def test_model_that_never_fits() -> None:
    text = blueprint().replace(
        "lstm(input = 8, hidden = 32, output = 1)", "transformer(input = 8, dim = 16384, heads = 64, layers = 96, output = 1)"
    )
    result = check(text)
    assert found(result) == [("DT208", 8, 11)]
    assert "fully sharded over 8 ranks" in result.diagnostics[0].message


def test_scaling_study_is_checked_against_the_partition() -> None:
    text = blueprint(PARTITION="small-g") + "scaling {\n  nodes = [1, 2, 8]\n}\n"
    assert found(check(text)) == [("DT202", 27, 18)]


def test_machine_block_overrides_the_generic_slurm_profile() -> None:
    target = 'target "slurm" {\n  partition = "debug"\n  machine {\n    cpus = 2\n    gpus = 0\n    max_nodes = 1\n  }\n}\n'
    text = blueprint(TARGET=target, GPUS="all").replace("  gpus_per_node = all\n", "  gpus_per_node = all\n  procs_per_node = 2\n")
    result = check(text, "slurm")
    assert found(result) == []
    plan = result.plans["slurm"]
    assert (plan.device, plan.ranks_per_node, plan.cpus_per_rank, plan.workers, plan.strategy) == ("cpu", 2, 1, 0, "ddp")
    too_many = check(text.replace("nodes         = 1", "nodes         = 2"), "slurm")
    assert [d.code for d in too_many.diagnostics] == ["DT202"]
