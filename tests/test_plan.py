"""Planning onto machines: decisions for `auto`, and every machine check at its place."""

from __future__ import annotations

from pathlib import Path

import pytest

from dtec.analysis import analyse

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


def check(text: str, target: str = "lumi", sets: tuple[str, ...] = ()):
    return analyse(Path("bp.twin"), text, {}, targets=[target], sets=sets)


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
    text = blueprint(TARGET='target "deucalion" {\n  account = "f202500001a"\n  venv = "$HOME/venv"\n}\n', GPUS="0")
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
        ({"TARGET": 'target "deucalion" {\n  account = "x1a"\n  venv = "$HOME/venv"\n}\n', "PRECISION": "bf16", "GPUS": "0"}, "deucalion", ("DT205", 13, 15), "fp32"),
        ({"TARGET": 'target "deucalion" {\n  account = "x1a"\n  venv = "$HOME/venv"\n}\n', "GPUS": "2"}, "deucalion", ("DT206", 18, 19), "procs_per_node"),
        ({"TARGET": 'target "lumii" {}\n'}, "lumii", ("DT200", 20, 1), "did you mean `lumi`?"),
        ({"TARGET": 'target "mn5-ac" {}\n'}, "mn5-ac", ("DT200", 20, 1), "did you mean `marenostrum5`?"),
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


def test_scaling_ranks_fill_whole_nodes_of_the_partition() -> None:
    text = blueprint(PARTITION="small-g") + "scaling {\n  ranks = [4, 8, 12, 2048]\n}\n"
    codes = found(check(text))
    assert [c for c in codes if c[0] == "DT368"] == [("DT368", 27, 18), ("DT368", 27, 22)]


def test_strong_scaling_points_split_the_global_batch_and_set_overrides_them() -> None:
    text = blueprint() + "scaling {\n  ranks = [2, 4, 3]\n  mode = strong\n}\n"
    assert [c for c in found(check(text)) if c[0] == "DT367"] == [("DT367", 27, 18)]
    assert [c for c in found(check(text, sets=("scaling.ranks=[2, 4]",))) if c[0].startswith("DT36")] == []
    nodes = blueprint() + "scaling {\n  nodes = [1, 2]\n  mode = strong\n}\n"
    assert [c for c in found(check(nodes)) if c[0].startswith("DT36")] == []


def test_machine_block_overrides_the_generic_slurm_profile() -> None:
    target = 'target "slurm" {\n  partition = "debug"\n  machine {\n    cpus = 2\n    gpus = 0\n    max_nodes = 1\n  }\n}\n'
    text = blueprint(TARGET=target, GPUS="all")
    result = check(text, "slurm", sets=("strategy.procs_per_node=2",))
    assert found(result) == []
    plan = result.plans["slurm"]
    assert (plan.device, plan.ranks_per_node, plan.cpus_per_rank, plan.workers, plan.strategy) == ("cpu", 2, 1, 0, "ddp")
    too_many = check(text, "slurm", sets=("strategy.procs_per_node=2", "strategy.nodes=2"))
    assert [d.code for d in too_many.diagnostics] == ["DT202"]


# ---- `machine { }` overrides: every problem a diagnostic at the value at fault ------------------
def slurm_with(*settings: str) -> str:
    """Return the base blueprint on the generic Slurm machine with `settings` in its `machine` block."""
    block = "".join(f"    {s}\n" for s in settings)
    return blueprint(TARGET=f'target "slurm" {{\n  partition = "debug"\n  machine {{\n{block}  }}\n}}\n', GPUS="all")


def spanned(diagnostic) -> str:
    span = diagnostic.span
    return span.source.text[span.start : span.end]


@pytest.mark.parametrize(
    ("settings", "at", "says"),
    [
        (["cpus = 0"], "0", "must be at least 1"),
        (["max_nodes = 0"], "0", "must be at least 1"),
        (["usable_cpus = 1000"], "1000", "usable_cpus 1000 exceeds cpus 1"),
        (["cpus = 8", "usable_cpus = 16"], "8", "usable_cpus 16 exceeds cpus 8"),
        (['gpu_vendor = "nvdia"'], '"nvdia"', "did you mean `nvidia`?"),
        (['launch = "foo"'], '"foo"', "expected one of `srun-per-gpu`, `torchrun-per-node`"),
        (['backend = "ncl"'], '"ncl"', "did you mean `nccl`?"),
        (['gpus = 1', 'gpu_flag = "--gpus"'], '"--gpus"', "{n}"),
        (["requestable_memory = 600GB"], "600GB", "requestable_memory_gb 558.794 exceeds"),
        (["requestable_memory = 2GB", "memory = 1GB"], "2GB", "requestable_memory_gb 1.863 exceeds memory_gb 0.931"),
        (["gpus = 2", "cpus_per_gpu = 4"], "2", "cpus_per_gpu 4 × 2 GPUs exceeds 1 usable cpus"),
        (['gpu_resource = "amd.com/gpu"'], '"amd.com/gpu"', "applies to Kubernetes kinds only"),
        (["shm_size = 1GB"], "1GB", "applies to Kubernetes kinds only"),
    ],
)
def test_machine_overrides_are_reported_at_the_value(settings: list[str], at: str, says: str) -> None:
    result = check(slurm_with(*settings), "slurm")
    assert [(d.code, spanned(d)) for d in result.diagnostics] == [("DT216", at)]
    assert says in result.diagnostics[0].message
    assert ".toml" not in result.diagnostics[0].message  # the blueprint is at fault, not the profile


def test_a_conflict_points_at_every_setting_involved() -> None:
    [diagnostic] = check(slurm_with("cpus = 8", "usable_cpus = 16"), "slurm").diagnostics
    assert [(r.message, r.span.source.text[r.span.start : r.span.end]) for r in diagnostic.related] == [
        ("`usable_cpus` is set here", "16")
    ]


def test_lint_reports_every_file_and_survives_a_crash(tmp_path: Path, monkeypatch) -> None:
    from typer.testing import CliRunner

    import dtec.lint
    from dtec.cli import app

    bad = {"a-cpus.twin": "cpus = 0", "b-usable.twin": "usable_cpus = 1000", "c-shm.twin": "shm_size = 1GB"}
    for name, setting in bad.items():
        (tmp_path / name).write_text(slurm_with(setting))
    (tmp_path / "d-typo.twin").write_text(blueprint().replace("loss      = mse", "loss      = msee"))
    result = CliRunner().invoke(app, ["lint", "-j", "1", str(tmp_path)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == 1
    reported = [line.split("-->")[1].strip().split(":")[0] for line in result.stdout.splitlines() if "-->" in line]
    assert [Path(p).name for p in reported] == [*bad, "d-typo.twin"]

    # An exception dtec did not expect, in one file, leaves the other files' reports whole.
    analyse = dtec.lint.analyse

    def crash_on_b(path, *args, **kwargs):
        if path.name == "b-usable.twin":
            raise RuntimeError("boom")
        return analyse(path, *args, **kwargs)

    monkeypatch.setattr(dtec.lint, "analyse", crash_on_b)
    result = CliRunner().invoke(app, ["lint", "-j", "1", str(tmp_path)])
    assert result.exit_code == 2
    assert f"internal error while checking {tmp_path / 'b-usable.twin'}: RuntimeError: boom" in result.stderr
    assert result.stdout.count("-->") == 3


# ---- --explain: every reason true of the machine it names --------------------------------------
def decisions(blueprint_path: Path, target: str, *sets: str) -> dict[str, tuple[str, str]]:
    result = analyse(blueprint_path, environ={"LUMI_ACCOUNT": "project_465000001"}, targets=[target], sets=sets)
    return {d.subject: (d.value, d.reason) for d in result.plans[target].decisions}


def test_explain_names_the_machines_own_gpu_platform_and_library(repo_root: Path) -> None:
    quickstart = repo_root / "blueprints" / "quickstart.twin"
    value, reason = decisions(quickstart, "lumi")["ranks"]
    assert value == "1 × 8"
    assert "(ROCm)" in reason and "backend nccl (RCCL)" in reason and "cuda" not in reason
    # The quickstart sets procs_per_node for CPUs: on GPUs it says so rather than ignoring it silently.
    assert "`procs_per_node` applies on machines without GPUs" in reason
    assert "NCCL" in decisions(quickstart, "juwels-booster")["ranks"][1]


def test_explain_reasons_agree_with_their_values(repo_root: Path) -> None:
    quickstart = repo_root / "blueprints" / "quickstart.twin"
    workers, why = decisions(quickstart, "juwels-booster")["loader workers"]
    assert workers == "8" and why.startswith("12 CPUs per rank") and "at most 8" in why
    local = decisions(quickstart, "local")
    assert local["walltime"] == ("none", "no `walltime` in the target block: the run is not limited")
    # A GPU profile without a GPU model names no `None`.
    gpu = decisions(quickstart, "slurm", "target.slurm.machine.gpus=1", "target.slurm.machine.bf16=true", "target.slurm.machine.cpus_per_gpu=1")
    assert gpu["precision"] == ("bf16", "the GPU computes in bfloat16")


@pytest.mark.parametrize(
    ("target", "setting"),
    [("local", 'cpu_bind="cores"'), ("local", 'torchrun="torchrun_jsc"'), ("kubernetes", 'memory_flag="--mem={gb}G"'),
     ("kubernetes", 'gpu_flag="--gpus={n}"'), ("interlink", 'module_use=["/opt/modules"]')],
)
def test_a_machine_setting_the_launcher_does_not_use_is_refused(repo_root: Path, target: str, setting: str) -> None:
    """Accepted and ignored would be a defect: a Slurm-only setting on another kind is DT216."""
    key = setting.partition("=")[0]
    sets = (f"target.{target}.machine.{setting}", f'target.{target}.image="x/y:1"') if target != "local" else (f"target.{target}.machine.{setting}",)
    result = analyse(repo_root / "tests" / "fixtures" / "minimal.twin", environ={}, targets=[target], sets=sets)
    [d] = result.diagnostics
    assert d.code == "DT216" and f"`{key}` does nothing on `{target}`" in d.message
