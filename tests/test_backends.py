"""Slurm, local and Kubernetes backends: every shipped machine, validators, injection, goldens."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
import yaml

from dtec.backends import checks, kubernetes, slurm
from dtec.compiler import generate as compile_generate
from dtec.diagnostics import has_errors
from dtec.ir import build_ir
from dtec.analysis import analyse
from dtec.machines import MachineError, load_machines

HERE = Path(__file__).resolve().parent
CASES_DIR = HERE / "backends"
IN_CI = os.environ.get("CI", "").lower() == "true"
K8S_VERSION = "1.30.0"
# Machines whose case lives outside quickstart.twin (interLink takes one node, local one computer).
CASE_OF = {"interlink": "interlink.twin", "local": "tiny.twin"}
MACHINES = [m.name for m in load_machines()]
SLURM_MACHINES = [m.name for m in load_machines() if m.scheduler == "slurm"]
KUBE_MACHINES = [m.name for m in load_machines() if m.is_kube]
# Every (blueprint, target) pair with golden files.
GOLDEN_CASES = sorted(
    {(CASE_OF.get(name, "quickstart.twin"), name) for name in MACHINES}
    | {("tiny.twin", "slurm"), ("kube.twin", "kubernetes"), ("kube.twin", "kubeflow"), ("kube.twin", "kubeflow-v1")}
)
DNS1035 = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")


def generate(path: Path, target: str, text: str | None = None, sets: tuple[str, ...] = ()):
    """Run the real pipeline (check, plan, IR) and the backend: (ir, plan, files)."""
    result = analyse(path, text, environ={}, targets=[target], sets=sets)
    assert result.ok, [(d.code, d.message) for d in result.diagnostics]
    plan = result.plans[target]
    ir = build_ir(result.blueprint, plan)
    return ir, plan, compile_generate(ir, plan)


def lint(path: Path, target: str, text: str | None = None, sets: tuple[str, ...] = ()):
    """Return the diagnostics of checking and planning `path` for `target` (what compile refuses)."""
    return analyse(path, text, environ={}, targets=[target], sets=sets).diagnostics


def spanned(diagnostic) -> str:
    """Return the text a diagnostic points at."""
    span = diagnostic.span
    return span.source.text[span.start : span.end]


def case(name: str) -> Path:
    return CASES_DIR / CASE_OF.get(name, "quickstart.twin")


def need(tool: str) -> str:
    found = shutil.which(tool)
    if found is None:
        message = f"{tool} is not on PATH; scripts/install-deps.sh installs it"
        if IN_CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return found


def shellcheck(text: str) -> None:
    need("shellcheck")
    run = subprocess.run(
        ["shellcheck", "-s", "bash", "-"], input=text, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stdout + run.stderr


def bash_n(text: str) -> None:
    run = subprocess.run(["bash", "-n"], input=text, capture_output=True, text=True, timeout=30)
    assert run.returncode == 0, run.stderr


def sbatch_flags(text: str) -> list[str]:
    """Return the #SBATCH flags as sbatch reads them (its tokenizer honours shell quotes)."""
    return [
        shlex.split(line[len("#SBATCH ") :])[0]
        for line in text.splitlines()
        if line.startswith("#SBATCH ")
    ]


def make_executable(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


# ---- every machine ---------------------------------------------------------------------------
def test_every_profile_has_a_case() -> None:
    for name in MACHINES:
        declared = analyse(case(name), environ={}, targets=[]).blueprint.get("target") or {}
        assert name in declared, f'add a `target "{name}"` block to {case(name)}'


@pytest.mark.parametrize(("blueprint", "target"), GOLDEN_CASES, ids=lambda v: str(v))
def test_bundle_matches_golden_and_is_deterministic(
    blueprint: str, target: str, golden_bundle
) -> None:
    _, _, files = generate(CASES_DIR / blueprint, target)
    assert generate(CASES_DIR / blueprint, target)[2] == files
    golden_bundle(CASES_DIR / blueprint, target, files)


@pytest.mark.parametrize("machine", SLURM_MACHINES)
def test_sbatch_passes_shellcheck_and_bash_n(machine: str) -> None:
    text = generate(case(machine), machine)[2]["job.sbatch"]
    bash_n(text)
    shellcheck(text)


@pytest.mark.parametrize("machine", SLURM_MACHINES)
def test_sweep_workers_sbatch_is_an_array_allocated_as_one_trial(machine: str) -> None:
    from dtec.backends.slurm import workers

    ir, plan, files = generate(case(machine), machine)
    text = workers(ir, plan, 3, "sweep-0123456789ab")
    bash_n(text)
    shellcheck(text)
    job, array = sbatch_flags(files["job.sbatch"]), sbatch_flags(text)
    # The trial's allocation, as an array of three; no requeue or time-limit signal of its own.
    kept = [f for f in job if not f.startswith(("--output", "--error", "--open-mode", "--signal", "--requeue"))]
    assert array == [*kept, "--array=0-2", "--output=workers/%x-%A_%a.out", "--error=workers/%x-%A_%a.err"]
    assert text.rstrip().endswith('exec python -m dtec.study "$PWD" "${SLURM_ARRAY_TASK_ID:?submit workers.sbatch as a job array}"')
    # The same environment as the trial's job (modules, venv, exports, setup).
    after = files["job.sbatch"].split('mkdir -p "$run_dir"\n', 1)[1]
    environment = re.split(r"\n(?:# Since Slurm|export OMP_NUM_THREADS)", after)[0]
    assert environment.strip() in text


@pytest.mark.parametrize("machine", SLURM_MACHINES)
def test_sbatch_has_exactly_one_launcher(machine: str) -> None:
    _, plan, files = generate(case(machine), machine)
    text = files["job.sbatch"]
    flags = sbatch_flags(text)
    launches = [line for line in text.splitlines() if line.startswith("srun")]
    assert len(launches) == 1, launches
    assert f"--nodes={plan.nodes}" in flags
    assert sum(f.startswith(("--gres=gpu", "--gpus")) for f in flags) == (
        1 if plan.gpus_per_node else 0
    )
    assert "--gres=gpu:0" not in flags
    assert 'export SRUN_CPUS_PER_TASK="$SLURM_CPUS_PER_TASK"' in text
    assert f"export OMP_NUM_THREADS={plan.cpus_per_rank}" in text
    if plan.machine.launch.pattern == "torchrun-per-node":
        assert "--ntasks-per-node=1" in flags
        assert f"--cpus-per-task={plan.cpus_per_rank * plan.ranks_per_node}" in flags
        assert f"--nproc_per_node={plan.ranks_per_node}" in text
        assert '--rdzv_id="$SLURM_JOB_ID"' in text and '--nnodes="$SLURM_NNODES"' in text
    else:
        assert f"--ntasks-per-node={plan.ranks_per_node}" in flags
        assert f"--cpus-per-task={plan.cpus_per_rank}" in flags
        assert "torchrun" not in text and "torch.distributed.run" not in text
    assert "--signal=B:USR1@" in " ".join(flags) and "--requeue" in flags
    assert 'scontrol requeue "$SLURM_JOB_ID"' in text
    assert "--output=logs/%x-%j.out" in flags and "--error=logs/%x-%j.err" in flags


def test_lumi_flags() -> None:
    ir, _, files = generate(case("lumi"), "lumi")
    text, flags = files["job.sbatch"], sbatch_flags(files["job.sbatch"])
    assert {
        "--gpus-per-node=8",
        "--cpus-per-task=7",
        "--ntasks-per-node=8",
        "--account=project_465000000",
        "--partition=standard-g",
    } <= set(flags)
    assert 'export NCCL_SOCKET_IFNAME="hsn"' in text
    assert "mask_cpu=0x00fe000000000000" in text  # one CCD per GCD on a whole node
    # The LUMI AI guide starts ranks through the image's runscript; compute nodes are online.
    assert 'singularity run --bind "$binds" "$container"' in text
    assert 'binds="$PWD,$run_dir"' in text
    assert "HF_HUB_OFFLINE" not in text
    assert "module load lumi-aif-singularity-bindings" in text
    assert ir.strategy.backend == "nccl"


def test_lumi_masks_only_on_whole_nodes() -> None:
    sets = ('target.lumi.partition="small-g"', "strategy.gpus_per_node=2")
    text = generate(case("lumi"), "lumi", sets=sets)[2]["job.sbatch"]
    assert "mask_cpu" not in text and "--exclusive" not in sbatch_flags(text)
    assert "--mem=120G" in sbatch_flags(text)  # 2 of 8 GCDs: a quarter of the 480 GB


@pytest.mark.parametrize("machine", ["juwels-booster", "jureca-dc"])
def test_jsc_flags(machine: str) -> None:
    text = generate(case(machine), machine)[2]["job.sbatch"]
    flags = sbatch_flags(text)
    assert "--gres=gpu:4" in flags and "--hint=nomultithread" in flags
    assert not any(f.startswith("--mem") for f in flags)
    assert 'export MASTER_ADDR="$MASTER_ADDR"i\n' in text
    assert "torchrun_jsc" in text
    assert 'export NCCL_SOCKET_IFNAME="ib0"' in text


def test_marenostrum5_flags() -> None:
    text = generate(case("marenostrum5"), "marenostrum5")[2]["job.sbatch"]
    flags = sbatch_flags(text)
    assert "--qos=acc_ehpc" in flags and "--gres=gpu:4" in flags and "--cpus-per-task=80" in flags
    assert not any(f.startswith(("--mem", "--partition")) for f in flags)
    assert 'bsc_singularity exec --nv --bind "$binds" "$container"' in text


def test_marenostrum5_without_container_is_reported() -> None:
    text = (
        case("marenostrum5")
        .read_text()
        .replace('  container = "/gpfs/projects/ehpc123/images/pytorch-24.08.sif"\n', "")
    )
    found = lint(case("marenostrum5"), "marenostrum5", text=text)
    assert [d.code for d in found] == ["DT215"] and "container" in found[0].message
    # At the target block: the setting is missing.
    assert (found[0].span.start, spanned(found[0])) == (text.index('target "marenostrum5"'), 'target "marenostrum5"')


def test_deucalion_arm_is_cpu_only_with_gloo() -> None:
    ir, plan, files = generate(case("deucalion"), "deucalion")
    flags = sbatch_flags(files["job.sbatch"])
    assert not any(f.startswith(("--gres", "--gpus")) for f in flags)
    assert (
        ir.strategy.backend == "gloo"
        and ir.strategy.device == "cpu"
        and ir.train.precision == "fp32"
    )
    assert f"--nproc_per_node={plan.ranks_per_node}" in files["job.sbatch"]
    # dtec sets OMP_NUM_THREADS per rank; the profile's whole-node value is not exported twice.
    assert files["job.sbatch"].count("OMP_NUM_THREADS=") == 1


MALLOC_DEFAULTS = [
    'export MALLOC_MMAP_THRESHOLD_="${MALLOC_MMAP_THRESHOLD_:-33554432}"',
    'export MALLOC_TRIM_THRESHOLD_="${MALLOC_TRIM_THRESHOLD_:-1073741824}"',
]


def malloc_exports(script: str) -> list[str]:
    return [line for line in script.splitlines() if line.startswith("export MALLOC_")]


@pytest.mark.parametrize(
    ("path", "target", "file", "sets"),
    [
        (CASES_DIR / "tiny.twin", "slurm", "job.sbatch", ()),
        (CASES_DIR / "quickstart.twin", "deucalion", "job.sbatch", ()),
        # Without GPUs, also on a computer that has some.
        (CASES_DIR / "tiny.twin", "local", "run.sh", ("strategy.gpus_per_node=0",)),
    ],
)
def test_cpu_launchers_fix_glibc_malloc_thresholds(path, target, file, sets) -> None:
    _, plan, files = generate(path, target, sets=sets)
    assert plan.device == "cpu"
    assert malloc_exports(files[file]) == MALLOC_DEFAULTS
    comment = files[file].split(MALLOC_DEFAULTS[0])[0].splitlines()[-1]
    assert comment.startswith("# ") and "malloc" in comment


@pytest.mark.parametrize("machine", ["lumi", "leonardo"])
def test_gpu_launchers_leave_malloc_alone(machine: str) -> None:
    _, plan, files = generate(case(machine), machine)
    assert plan.device == "cuda"
    assert "MALLOC_" not in files["job.sbatch"]


def test_malloc_thresholds_yield_to_the_environment_and_the_blueprint() -> None:
    sets = ('target.slurm.env={ MALLOC_TRIM_THRESHOLD_ = "0" }',)
    _, _, files = generate(CASES_DIR / "tiny.twin", "slurm", sets=sets)
    exports = malloc_exports(files["job.sbatch"])
    assert exports == ["export MALLOC_TRIM_THRESHOLD_=0", MALLOC_DEFAULTS[0]]
    probe = "\n".join([*MALLOC_DEFAULTS, 'echo "$MALLOC_MMAP_THRESHOLD_ $MALLOC_TRIM_THRESHOLD_"'])
    shown = subprocess.run(
        ["bash", "-euc", probe], env={"MALLOC_MMAP_THRESHOLD_": "65536", "PATH": os.environ["PATH"]},
        capture_output=True, text=True, timeout=30, check=False,
    )
    assert shown.stdout.split() == ["65536", "1073741824"], shown.stderr


def first_container(job_yaml: str) -> dict:
    """Return the first container of the Job (the PyTorchJob's master, the TrainJob's trainer) in a job.yaml."""
    job = next(d for d in yaml.safe_load_all(job_yaml) if d["kind"] in ("Job", "PyTorchJob", "TrainJob"))
    return job["spec"]["trainer"] if job["kind"] == "TrainJob" else pod_spec(job)["containers"][0]


def container_env(job_yaml: str) -> dict[str, str | None]:
    """Return the first container's env in a job.yaml."""
    return {e["name"]: e.get("value") for e in first_container(job_yaml)["env"]}


def test_cpu_pods_fix_glibc_malloc_thresholds_unless_the_blueprint_sets_them() -> None:
    _, plan, files = generate(case("kubernetes"), "kubernetes")
    assert plan.device == "cpu"
    env = container_env(files["job.yaml"])
    assert (env["MALLOC_MMAP_THRESHOLD_"], env["MALLOC_TRIM_THRESHOLD_"]) == ("33554432", "1073741824")
    sets = ('target.kubernetes.env={ MALLOC_TRIM_THRESHOLD_ = "0" }',)
    _, _, files = generate(case("kubernetes"), "kubernetes", sets=sets)
    assert container_env(files["job.yaml"])["MALLOC_TRIM_THRESHOLD_"] == "0"


def test_gpu_pods_leave_malloc_alone() -> None:
    pulsar = HERE.parent / "blueprints" / "pulsar-classification.twin"
    _, plan, files = generate(pulsar, "kubeflow")
    assert plan.device == "cuda"
    assert not [name for name in container_env(files["job.yaml"]) if name.startswith("MALLOC_")]


def test_generic_slurm_test_job_fits_two_cpus() -> None:
    _, plan, files = generate(CASES_DIR / "tiny.twin", "slurm")
    flags = sbatch_flags(files["job.sbatch"])
    tasks = int(next(f for f in flags if f.startswith("--ntasks-per-node=")).split("=")[1])
    cpus = int(next(f for f in flags if f.startswith("--cpus-per-task=")).split("=")[1])
    assert tasks * cpus <= 2 and plan.ranks_per_node == 2 and plan.backend == "gloo"
    assert "--partition=debug" in flags and not any(
        f.startswith(("--mem", "--gres")) for f in flags
    )


def test_memory_requests_round_up_and_are_never_zero() -> None:
    sets = ("target.slurm.machine.memory=512MB", 'target.slurm.machine.memory_flag="--mem={gb}G"')
    flags = sbatch_flags(generate(CASES_DIR / "tiny.twin", "slurm", sets=sets)[2]["job.sbatch"])
    assert [f for f in flags if f.startswith("--mem")] == ["--mem=1G"]  # --mem=0G: the whole node
    sets = ("target.kubernetes.machine.memory=1B",)
    files = generate(CASES_DIR / "kube.twin", "kubernetes", sets=sets)[2]
    resources = first_container(files["job.yaml"])["resources"]
    assert resources["limits"]["memory"] == resources["requests"]["memory"] == "1Mi"


def test_settings_a_target_cannot_express_are_reported() -> None:
    found = lint(CASES_DIR / "tiny.twin", "slurm", sets=('target.slurm.image="x:1"',))
    assert [(d.code, "image" in d.message, spanned(d)) for d in found] == [("DT215", True, '"x:1"')]


# ---- quoting and injection -------------------------------------------------------------------
# The blocks around hostile twin names and targets (a format template, as those are): two CPU ranks.
TWO_RANKS = """data "d" {{
  source = synthetic(samples = 64, shape = [4], targets = 1)
  batch  = 8
}}
model "m" {{
  arch  = mlp(input = 4, output = 1)
  input = data.d
}}
train {{
  loss      = mse
  optimizer = adam(lr = 0.01)
}}
strategy {{
  kind           = ddp
  procs_per_node = 2
}}
"""
NASTY = """twin "$(touch {marker}1)\\"; touch {marker}2 #`touch {marker}3`" {{}}
""" + TWO_RANKS + """target "slurm" {{
  account   = "a'b\\"c"
  partition = "de$(touch {marker}4)bug"
  env       = {{ X = "$(touch {marker}5)`touch {marker}6`'" }}
  machine {{
    cpus = 2
    gpus = 0
  }}
}}
target "local" {{
  env = {{ X = "$(touch {marker}5)`touch {marker}6`'" }}
}}
target "kubernetes" {{
  image = "ghcr.io/example/x:1"
  env   = {{ X = "$(touch {marker}5)`touch {marker}6`'" }}
}}
"""
X_VALUE = "$(touch {marker}5)`touch {marker}6`'"

STUB_ARGV = """#!/usr/bin/env bash
# Records how it was called: one argument per line, then X as the environment has it.
{{ printf '%s\\n' "$0" "$@"; printf 'X=%s\\n' "${{X-}}"; }} >> {log}
"""
STUB_SCONTROL = """#!/usr/bin/env bash
if [[ "$1 $2" == "show hostnames" ]]; then echo node01; fi
"""


def nasty(tmp_path: Path, target: str) -> tuple[Path, dict[str, str]]:
    marker = tmp_path / "pwned"
    text = NASTY.format(marker=marker)
    path = tmp_path / "nasty.twin"
    path.write_text(text)
    return marker, generate(path, target, text=text)[2]


def assert_inert(marker: Path) -> None:
    touched = sorted(p.name for p in marker.parent.glob("pwned*"))
    assert touched == [], f"blueprint text ran as shell code: {touched}"


def test_sbatch_keeps_hostile_names_inert(tmp_path: Path) -> None:
    marker, files = nasty(tmp_path, "slurm")
    text = files["job.sbatch"]
    bash_n(text)
    shellcheck(text)
    flags = sbatch_flags(text)
    assert "--account=a'b\"c" in flags  # decoded as sbatch decodes it
    assert f"--partition=de$(touch {marker}4)bug" in flags
    job = next(f for f in flags if f.startswith("--job-name=")).split("=", 1)[1]
    assert re.fullmatch(r"[A-Za-z0-9._-]+", job), job

    # Run the whole script outside Slurm with stub commands: nothing from the blueprint executes.
    bundle, bin_dir = tmp_path / "bundle", tmp_path / "bin"
    bundle.mkdir()
    bin_dir.mkdir()
    log = tmp_path / "srun.log"
    (bundle / "job.sbatch").write_text(text)
    (bundle / "train.py").write_text("")
    make_executable(bin_dir / "srun", STUB_ARGV.format(log=shlex.quote(str(log))))
    make_executable(bin_dir / "scontrol", STUB_SCONTROL)
    env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "HOME": str(tmp_path),
        "USER": "tester",
        "SLURM_SUBMIT_DIR": str(bundle),
        "SLURM_JOB_NODELIST": "node01",
        "SLURM_CPUS_PER_TASK": "2",
        "SLURM_NNODES": "1",
        "SLURM_JOB_ID": "42",
    }
    run = subprocess.run(
        ["bash", "job.sbatch"], cwd=bundle, env=env, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert_inert(marker)
    assert log.read_text().splitlines()[1:] == [
        "bash",
        "-c",
        'trap "" USR1; exec "$@"',
        "ignore-usr1",
        "torchrun",
        "--nnodes=1",
        "--nproc_per_node=2",
        "--rdzv_backend=c10d",
        "--rdzv_endpoint=node01:29500",
        "--rdzv_id=42",
        "train.py",
        "--run-dir",
        f"{bundle}/run",
        "--resume",
        "auto",
        f"X={X_VALUE.format(marker=marker)}",
    ]


def test_sbatch_header_refuses_newlines_and_backslashes() -> None:
    found = lint(CASES_DIR / "tiny.twin", "slurm", sets=('target.slurm.account="a\\nb\\\\c"',))
    assert [(d.code, spanned(d)) for d in found] == [("DT215", '"a\\nb\\\\c"')]
    with pytest.raises(ValueError):  # the generator never writes one, checked or not
        slurm.sbatch_value("a\nb")


def test_run_sh_passes_arguments_through_and_keeps_values_inert(tmp_path: Path) -> None:
    marker, files = nasty(tmp_path, "local")
    text = files["run.sh"]
    bash_n(text)
    shellcheck(text)
    bundle, bin_dir = tmp_path / "bundle", tmp_path / "bin"
    bundle.mkdir()
    bin_dir.mkdir()
    log = tmp_path / "python.log"
    (bundle / "run.sh").write_text(text)
    make_executable(bin_dir / "python", STUB_ARGV.format(log=shlex.quote(str(log))))
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "HOME": str(tmp_path)}
    extra = ["--epochs", "1", f"$(touch {marker}7)"]
    run = subprocess.run(
        ["bash", str(bundle / "run.sh"), *extra],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert_inert(marker)
    argv = log.read_text().splitlines()
    assert argv[1:] == [
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nnodes=1",
        "--nproc_per_node=2",
        "train.py",
        "--run-dir",
        "run",
        *extra,
        f"X={X_VALUE.format(marker=marker)}",
    ]


# ---- every blueprint string that reaches a launcher, hostile --------------------------------------
# Markers are relative: both launchers cd into the bundle folder first, where the test looks.
HOSTILE = [
    "$(touch PWNED1)",
    "`touch PWNED2`",
    "x\ntouch PWNED3\n#SBATCH --x",
    "a'b\"c; touch PWNED4 #",
    "${IFS}touch${IFS}PWNED5",
    "tail\\",
    "'\\''$(touch PWNED6)\\",
    "t\tab!",
]
HOSTILE_TWIN = """twin {v} {{}}
""" + TWO_RANKS + """target "slurm" {{
  account     = {v}
  partition   = {v}
  qos         = {v}
  reservation = {v}
  container   = {v}
  data_root   = {v}
  modules     = [{v}]
  env         = {{ X = {v} }}
  machine {{
    cpus               = 2
    gpus               = 0
    gpu_model          = {v}
    cpu_bind           = {v}
    master_addr_suffix = {v}
    module_use         = [{v}]
    {extra}
  }}
}}
target "local" {{
  env       = {{ X = {v} }}
  data_root = {v}
}}
"""
# Logs each call (its name, argument count, arguments, then $X and $MASTER_ADDR) NUL-separated.
STUB_LOG = """#!/usr/bin/env bash
printf '%s\\0' "${{0##*/}}" "$#" "$@" "${{X-}}" "${{MASTER_ADDR-}}" >> {log}
if [[ "${{0##*/}} ${{1-}} ${{2-}}" == "scontrol show hostnames" ]]; then echo node01; fi
"""
STUBS = ("srun", "scontrol", "module", "singularity", "sbatch", "python")


def twin_string(value: str) -> str:
    """Return `value` as a blueprint string literal."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return '"' + escaped.replace("\t", "\\t") + '"'


def hostile_bundle(tmp_path: Path, value: str, target: str, extra: str = "", sets: tuple[str, ...] = ()):
    """Return (files, messages) for the hostile blueprint, or (None, messages) when refused."""
    text = HOSTILE_TWIN.format(v=twin_string(value), extra=extra)
    try:
        result = analyse(tmp_path / "hostile.twin", text, environ={}, targets=[target], sets=sets)
    except MachineError as exc:
        return None, [exc.message]
    messages = [d.message for d in result.diagnostics]
    planned = result.plans.get(target)
    if not result.ok or planned is None:
        return None, messages
    return compile_generate(build_ir(result.blueprint, planned), planned), messages


def run_with_stubs(tmp_path: Path, name: str, text: str, env: dict[str, str]) -> list[list[str]]:
    """Run a launcher in a bundle folder with logging stubs on PATH; return the calls made."""
    bundle, bin_dir, log = tmp_path / "bundle", tmp_path / "bin", tmp_path / "calls.log"
    bundle.mkdir(exist_ok=True)
    bin_dir.mkdir(exist_ok=True)
    (bundle / name).write_text(text)
    (bundle / "train.py").write_text("")
    for stub in STUBS:
        make_executable(bin_dir / stub, STUB_LOG.format(log=shlex.quote(str(log))))
    base = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "HOME": str(tmp_path), "USER": "tester"}
    run = subprocess.run(
        ["bash", name], cwd=bundle, env={**base, **env}, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert sorted(p.name for p in tmp_path.rglob("PWNED*")) == [], "blueprint text ran as code"
    fields = log.read_text().split("\0")[:-1] if log.exists() else []
    calls = []
    while fields:
        count = int(fields[1])
        calls.append(fields[: count + 2][:1] + fields[2 : count + 4])
        fields = fields[count + 4 :]
    return calls


def check_script(text: str) -> None:
    bash_n(text)
    shellcheck(text)


@pytest.mark.parametrize("value", HOSTILE, ids=range(len(HOSTILE)))
def test_sbatch_keeps_every_blueprint_string_inert(tmp_path: Path, value: str) -> None:
    header = ("account", "partition", "qos", "reservation")
    files, messages = hostile_bundle(tmp_path, value, "slurm")
    refused = [key for key in header if any(f"`{key}` holds" in m for m in messages)]
    if refused:
        # What `#SBATCH` cannot carry is an error from lint as from compile; the rest must still be inert.
        assert files is None, refused
        files, messages = hostile_bundle(tmp_path, value, "slurm", sets=tuple(f"target.slurm.{k}=plain" for k in refused))
    assert files is not None, messages
    text = files["job.sbatch"]
    check_script(text)
    flags = sbatch_flags(text)
    for key in header:
        assert f"--{key}={'plain' if key in refused else value}" in flags, (key, flags, messages)
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / value).write_text("")  # the container image, which the job checks for
    slurm_env = {"SLURM_SUBMIT_DIR": str(bundle), "SLURM_JOB_NODELIST": "node01",
                 "SLURM_CPUS_PER_TASK": "1", "SLURM_NNODES": "1", "SLURM_JOB_ID": "42"}
    calls = run_with_stubs(tmp_path, "job.sbatch", text, slurm_env)
    master = "node01" + value
    # The data root is bound too, as `realpath -m` spells it: relative to the bundle.
    data_root = f",{os.path.normpath(bundle / value)}" if value else ""
    launch = [
        "srun", f"--cpu-bind={value}",
        "singularity", "exec", "--bind", f"{bundle},{bundle}/run{data_root}", value,
        "bash", "-c", 'trap "" USR1; exec "$@"', "ignore-usr1", "torchrun",
        "--nnodes=1", "--nproc_per_node=2", "--rdzv_backend=c10d",
        f"--rdzv_endpoint={master}:29500", "--rdzv_id=42",
        "train.py", "--run-dir", f"{bundle}/run", "--resume", "auto",
    ]
    assert calls == [
        ["module", "use", value, "", ""],
        ["module", "load", value, "", ""],
        ["scontrol", "show", "hostnames", "node01", value, ""],
        [*launch, value, master],
    ]


@pytest.mark.parametrize("value", HOSTILE, ids=range(len(HOSTILE)))
def test_run_sh_keeps_every_blueprint_string_inert(tmp_path: Path, value: str) -> None:
    files, messages = hostile_bundle(tmp_path, value, "local")
    assert files is not None, messages
    check_script(files["run.sh"])
    calls = run_with_stubs(tmp_path, "run.sh", files["run.sh"], {})
    assert calls == [[
        "python", "-m", "torch.distributed.run", "--standalone", "--nnodes=1",
        "--nproc_per_node=2", "train.py", "--run-dir", "run", value, "",
    ]]


@pytest.mark.parametrize("key", ["gpu_flag", "memory_flag", "torchrun"])
@pytest.mark.parametrize("value", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_flags_and_commands_are_refused_or_inert(
    tmp_path: Path, key: str, value: str
) -> None:
    files, messages = hostile_bundle(tmp_path, value, "slurm", f"{key} = {twin_string(value)}")
    if key != "torchrun":  # a template of plain characters only: all of these are refused
        assert files is None and any(f"`{key}`" in m for m in messages), messages
        return
    if files is None:
        assert any("`torchrun`" in m and "command" in m for m in messages), messages
        assert re.search(r"['\"\\\x00-\x1f]", value)  # unbalanced quotes, a backslash, control characters
        return
    check_script(files["job.sbatch"])
    launch = [line for line in files["job.sbatch"].splitlines() if "ignore-usr1" in line]
    words = shlex.split(value)
    assert launch and all(slurm.shell_word(word) in files["job.sbatch"] for word in words)


def test_run_sh_single_needs_no_launcher() -> None:
    _, _, files = generate(
        CASES_DIR / "tiny.twin", "local", sets=("strategy.kind=single", "strategy.procs_per_node=1")
    )
    assert 'exec "${PYTHON:-python}" train.py --run-dir "${RUN_DIR:-run}" "$@"' in files["run.sh"]


STUB_PREEMPTED = """#!/usr/bin/env bash
# Trains until SIGTERM, then "checkpoints" and exits as train.py does.
trap 'echo checkpointed >> {log}; exit 143' TERM
while :; do sleep 0.1; done
"""


def test_run_sh_stops_at_the_walltime(tmp_path: Path) -> None:
    assert "timeout" not in generate(CASES_DIR / "tiny.twin", "local")[2]["run.sh"]
    assert "exec timeout --preserve-status --kill-after=30s 30s " in generate(
        CASES_DIR / "tiny.twin", "local", sets=("target.local.walltime=1min",))[2]["run.sh"]
    # Two seconds: SIGTERM after one (train.py checkpoints), SIGKILL at two.
    sets = ("target.local.walltime=2s", "strategy.kind=single", "strategy.procs_per_node=1")
    script = generate(CASES_DIR / "tiny.twin", "local", sets=sets)[2]["run.sh"]
    shellcheck(script)
    log, bin_dir = tmp_path / "python.log", tmp_path / "bin"
    bin_dir.mkdir()
    make_executable(bin_dir / "python", STUB_PREEMPTED.format(log=shlex.quote(str(log))))
    (tmp_path / "run.sh").write_text(script)
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "HOME": str(tmp_path)}
    run = subprocess.run(["bash", "run.sh"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 143, run.stdout + run.stderr
    assert log.read_text() == "checkpointed\n"


def test_kubernetes_env_is_not_expanded(tmp_path: Path) -> None:
    marker, files = nasty(tmp_path, "kubernetes")
    env = container_env(files["job.yaml"])
    assert env["X"] == X_VALUE.format(marker=marker).replace("$(", "$$(")


# ---- Kubernetes ------------------------------------------------------------------------------
def validate_core(doc: dict) -> None:
    import kubernetes_validate

    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def validate_pytorchjob(doc: dict) -> None:
    """The operator's webhook rules, and each replica template as a core PodTemplateSpec."""
    assert doc["apiVersion"] == "kubeflow.org/v1"
    assert DNS1035.fullmatch(doc["metadata"]["name"])
    spec = doc["spec"]
    assert isinstance(spec["nprocPerNode"], str)
    replicas = spec["pytorchReplicaSpecs"]
    assert set(replicas) <= {"Master", "Worker"} and replicas["Master"]["replicas"] == 1
    if "Worker" in replicas:
        assert replicas["Worker"]["replicas"] >= 1
    for replica in replicas.values():
        assert replica["restartPolicy"] in ("Never", "OnFailure")
        containers = replica["template"]["spec"]["containers"]
        assert any(c["name"] == "pytorch" and c.get("image") for c in containers)
        validate_core(
            {
                "apiVersion": "v1",
                "kind": "PodTemplate",
                "metadata": {"name": "probe"},
                "template": replica["template"],
            }
        )


def validate_trainjob(doc: dict) -> None:
    """The Trainer's webhook rules dtec relies on, and the runtime patch's pod as a core PodTemplateSpec."""
    assert doc["apiVersion"] == "trainer.kubeflow.org/v1alpha1"
    trainer = doc["spec"]["trainer"]
    assert trainer.get("image") and isinstance(trainer["numProcPerNode"], int)
    assert not {e["name"] for e in trainer["env"]} & set(checks.TRAINJOB_RESERVED_ENV)
    validate_core({"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "probe"}, "template": runtime_pod(doc)})


def runtime_pod(doc: dict) -> dict:
    """The pod template a TrainJob's runtime patch gives the runtime's `node` job."""
    (patch,) = doc["spec"]["runtimePatches"]
    (job,) = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
    assert job["name"] == kubernetes.TRAINER_JOB
    return job["template"]["spec"]["template"]


@pytest.mark.parametrize("machine", KUBE_MACHINES)
def test_manifests_validate(machine: str) -> None:
    files = generate(case(machine), machine)[2]
    docs = list(yaml.safe_load_all(files["job.yaml"]))
    kinds = [d["kind"] for d in docs]
    assert kinds[0] == "ConfigMap" and set(docs[0]["data"]) == {"train.py", "predict.py", "ir.json"}
    for doc in docs:
        assert DNS1035.fullmatch(doc["metadata"]["name"]) and len(doc["metadata"]["name"]) <= 63
        if doc["kind"] == "PyTorchJob":
            validate_pytorchjob(doc)
        elif doc["kind"] == "TrainJob":
            validate_trainjob(doc)  # its CRD schema: tests/test_kube_schemas.py
        else:
            assert doc["apiVersion"] in ("v1", "batch/v1"), doc["kind"]
            validate_core(doc)


def pod_spec(doc: dict) -> dict:
    if doc["kind"] == "TrainJob":
        return runtime_pod(doc)["spec"]
    if doc["kind"] == "PyTorchJob":
        return doc["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]
    return doc["spec"]["template"]["spec"]


def test_indexed_job_and_service_agree() -> None:
    _, plan, files = generate(CASES_DIR / "kube.twin", "kubernetes")
    config, service, job = yaml.safe_load_all(files["job.yaml"])
    name = job["metadata"]["name"]
    assert name == "flood-forecast-v2" and config["metadata"]["name"] == f"{name}-bundle"
    assert {d["metadata"]["namespace"] for d in (config, service, job)} == {"ml-team"}
    spec, pod = job["spec"], pod_spec(job)
    assert (
        spec["completionMode"] == "Indexed"
        and spec["completions"] == spec["parallelism"] == plan.nodes == 2
    )
    assert spec["backoffLimit"] == 0 and spec["activeDeadlineSeconds"] == 7200
    assert (
        service["metadata"]["name"]
        == pod["subdomain"]
        == service["spec"]["selector"]["job-name"]
        == name
    )
    assert (
        service["spec"]["clusterIP"] == "None"
        and service["spec"]["publishNotReadyAddresses"] is True
    )
    container = pod["containers"][0]
    port = service["spec"]["ports"][0]["port"]
    assert (
        f"--master_addr={name}-0.{name}" in container["args"]
        and f"--master_port={port}" in container["args"]
    )
    assert "--node_rank=$(JOB_COMPLETION_INDEX)" in container["args"]
    assert container["resources"]["limits"]["cpu"] == str(plan.cpus_per_rank * plan.ranks_per_node)
    assert {"mountPath": "/dev/shm", "name": "dshm"} in container["volumeMounts"]
    assert pod["volumes"][0]["configMap"]["name"] == config["metadata"]["name"]


def test_pytorchjob_shape() -> None:
    _, plan, files = generate(CASES_DIR / "kube.twin", "kubeflow-v1")
    job = list(yaml.safe_load_all(files["job.yaml"]))[1]
    replicas = job["spec"]["pytorchReplicaSpecs"]
    assert job["spec"]["nprocPerNode"] == "2" and replicas["Worker"]["replicas"] == plan.nodes - 1
    assert all(r["restartPolicy"] == "Never" for r in replicas.values())
    assert "&id" not in files["job.yaml"]  # no YAML aliases between Master and Worker


def test_trainjob_shape() -> None:
    _, plan, files = generate(CASES_DIR / "kube.twin", "kubeflow")
    config, job = yaml.safe_load_all(files["job.yaml"])
    spec, trainer = job["spec"], job["spec"]["trainer"]
    assert spec["runtimeRef"] == {
        "apiGroup": "trainer.kubeflow.org", "kind": "ClusterTrainingRuntime", "name": "torch-distributed"
    }
    # The Torch plugin derives PET_NNODES and PET_NPROC_PER_NODE from these (CPU nodes: one per CPU otherwise).
    assert (trainer["numNodes"], trainer["numProcPerNode"]) == (plan.nodes, plan.ranks_per_node) == (2, 2)
    assert trainer["command"][0] == "torchrun" and "--run-dir=/dtec/run" in trainer["command"]
    assert not [w for w in trainer["command"] if w.startswith(("--nnodes", "--nproc", "--master"))]
    assert trainer["resourcesPerNode"]["limits"]["cpu"] == str(plan.cpus_per_rank * plan.ranks_per_node)
    assert {"name": "WANDB_PROJECT", "value": "flood $$(id)"} in trainer["env"]
    assert spec["activeDeadlineSeconds"] == 7200
    pod = runtime_pod(job)["spec"]
    assert pod["containers"] == [{"name": "node", "volumeMounts": pod["containers"][0]["volumeMounts"]}]
    assert pod["volumes"][0]["configMap"]["name"] == config["metadata"]["name"]
    assert {"mountPath": "/dev/shm", "name": "dshm"} in pod["containers"][0]["volumeMounts"]


def test_trainjob_runtime_is_the_targets() -> None:
    sets = ('target.kubeflow.runtime="torch-distributed-gpu"',)
    job = list(yaml.safe_load_all(generate(CASES_DIR / "kube.twin", "kubeflow", sets=sets)[2]["job.yaml"]))[1]
    assert job["spec"]["runtimeRef"]["name"] == "torch-distributed-gpu"


@pytest.mark.parametrize(("target", "kind"), [("kubernetes", "Job"), ("kubeflow", "TrainJob"), ("kubeflow-v1", "PyTorchJob")])
def test_kueue_labels_go_on_the_workload(target: str, kind: str) -> None:
    sets = (f'target.{target}.priority_class="high"',)
    docs = list(yaml.safe_load_all(generate(CASES_DIR / "kube.twin", target, sets=sets)[2]["job.yaml"]))
    queued = {d["kind"] for d in docs if "kueue.x-k8s.io/queue-name" in d["metadata"]["labels"]}
    assert queued == {kind}
    workload = next(d for d in docs if d["kind"] == kind)
    labels = workload["metadata"]["labels"]
    assert (labels["kueue.x-k8s.io/queue-name"], labels["kueue.x-k8s.io/priority-class"]) == ("ml-team-queue", "high")
    assert "kueue.x-k8s.io/queue-name" not in yaml.safe_dump(pod_spec(workload))


def test_no_queue_no_kueue_label() -> None:
    docs = yaml.safe_load_all(generate(case("kubeflow"), "kubeflow")[2]["job.yaml"])
    assert not [d for d in docs if any(k.startswith("kueue.") for k in d["metadata"]["labels"])]


@pytest.mark.parametrize(
    ("target", "setting", "at"),
    [
        ("kubeflow", 'queue="Team A"', '"Team A"'),
        ("kubernetes", 'priority_class="a_b"', '"a_b"'),
        ("kubeflow", f'queue="{"q" * 64}"', f'"{"q" * 64}"'),
        ("kubeflow", 'runtime="Torch"', '"Torch"'),
        ("kubeflow-v1", 'runtime="torch-distributed"', '"torch-distributed"'),
        ("kubernetes", 'runtime="torch-distributed"', '"torch-distributed"'),
        ("kubeflow", 'env={ PET_NNODES = "3" }', '"3"'),
    ],
)
def test_kube_target_keys_are_checked_at_their_value(target: str, setting: str, at: str) -> None:
    found = lint(CASES_DIR / "kube.twin", target, sets=(f"target.{target}.{setting}",))
    assert [(d.code, spanned(d)) for d in found] == [("DT215", at)]


def test_gpus_go_to_limits_on_kubernetes() -> None:
    sets = ("target.kubernetes.machine.gpus=4",)
    files = generate(case("kubernetes"), "kubernetes", sets=sets)[2]
    job = next(d for d in yaml.safe_load_all(files["job.yaml"]) if d["kind"] == "Job")
    resources = pod_spec(job)["containers"][0]["resources"]
    assert (
        resources["limits"]["nvidia.com/gpu"] == 4 and "nvidia.com/gpu" not in resources["requests"]
    )
    assert "--nproc_per_node=4" in pod_spec(job)["containers"][0]["args"]


def test_interlink_job() -> None:
    files = generate(case("interlink"), "interlink", sets=("target.interlink.machine.gpus=4",))[2]
    job = list(yaml.safe_load_all(files["job.yaml"]))[1]
    validate_core(job)
    pod = pod_spec(job)
    assert pod["nodeSelector"] == {"virtual-node.interlink/type": "virtual-kubelet"}
    assert {"key": "virtual-node.interlink/no-schedule", "operator": "Exists"} in pod["tolerations"]
    assert pod["restartPolicy"] == "Never"
    container = pod["containers"][0]
    assert container["command"] == ["/bin/bash", "-c"] and "$(" not in container["args"][0]
    assert "torchrun --standalone --nnodes=1 --nproc_per_node=4" in container["args"][0]
    assert set(container["resources"]["limits"]) == {"cpu", "memory"}  # GPUs go to the flags
    assert all("medium" not in v.get("emptyDir", {}) for v in pod["volumes"])
    flags = job["spec"]["template"]["metadata"]["annotations"]["slurm-job.vk.io/flags"].split()
    assert {"--partition=gpu", "--gres=gpu:4", "--nodes=1", "--time=0-04:00:00"} <= set(flags)


def test_interlink_several_nodes_is_reported() -> None:
    sets = ("target.interlink.machine.max_nodes=2", "strategy.nodes=2")
    found = lint(case("interlink"), "interlink", sets=sets)
    assert [(d.code, spanned(d)) for d in found] == [("DT215", "2")]


def test_kubernetes_reports_slurm_settings() -> None:
    found = lint(CASES_DIR / "kube.twin", "kubernetes", sets=('target.kubernetes.reservation="r"',))
    assert [d.code for d in found] == ["DT215"] and "reservation" in found[0].message


@pytest.mark.parametrize(
    "raw", ["", "123", "Flood Forecast!", "ÄÖÜ-twin", "a" * 200, "--x--", "$(id)", "x.y_z"]
)
def test_dns1035_names(raw: str) -> None:
    name = kubernetes.dns1035(raw)
    assert DNS1035.fullmatch(name) and len(name) <= 40, name


def test_slurm_time_and_signal_lead() -> None:
    assert (
        slurm.slurm_time(1800) == "0-00:30:00" and slurm.slurm_time(3 * 86400 + 61) == "3-00:01:01"
    )
    assert (
        slurm.signal_lead(600) == 60
        and slurm.signal_lead(7200) == 600
        and slurm.signal_lead(1800) == 180
    )


# ---- a target's software environment: venv and setup ----------------------------------------
TINY = Path(__file__).resolve().parent / "backends" / "tiny.twin"
SLURM_ENV = {"SLURM_JOB_NODELIST": "node01", "SLURM_CPUS_PER_TASK": "1", "SLURM_NNODES": "1",
             "SLURM_JOB_ID": "42"}


def test_venv_and_setup_expand_variables_and_run_in_order(tmp_path: Path) -> None:
    sets = (
        'target.slurm.venv="\\"$HOME/venvs/my env\\""',
        'target.slurm.setup=["python \'$HOME: literal\' \\"${USER}/x y\\" $SLURM_JOB_ID", '
        '"export X=$PWD/src:$X", "export UNSET_BEFORE=$NEVER_SET"]',
    )
    files = generate(TINY, "slurm", sets=sets)[2]
    script = files["job.sbatch"]
    check_script(script)
    activate = tmp_path / "venvs" / "my env" / "bin" / "activate"
    activate.parent.mkdir(parents=True)
    activate.write_text("export X=venv\n")  # what a venv puts first on the path
    bundle = tmp_path / "bundle"
    calls = run_with_stubs(tmp_path, "job.sbatch", script, {**SLURM_ENV, "SLURM_SUBMIT_DIR": str(bundle)})
    # The venv is active before the setup lines; their $NAMEs expand (an unset one to nothing),
    # single quotes keep a `$` as text.
    assert calls[0] == ["python", "$HOME: literal", "tester/x y", "42", "venv", ""]  # argv, $X, MASTER_ADDR
    srun = next(c for c in calls if c[0] == "srun")
    assert srun[-2] == f"{bundle}/src:venv"


def test_a_venv_that_is_not_there_stops_the_job_with_one_line(tmp_path: Path) -> None:
    files = generate(TINY, "slurm", sets=('target.slurm.venv="/nowhere/venv"',))[2]
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "train.py").write_text("")
    env = {**os.environ, **SLURM_ENV, "SLURM_SUBMIT_DIR": str(bundle)}
    run = subprocess.run(["bash", "-c", files["job.sbatch"]], cwd=bundle, env=env, capture_output=True, text=True)
    assert run.returncode == 1
    assert run.stderr == "dtec: the target's venv has no /nowhere/venv/bin/activate: build it first (dtec env)\n"


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("echo a; touch PWNED", "`;`"),
        ("echo a | tee PWNED", "`|`"),
        ("echo a && touch PWNED", "`&`"),
        ("echo $(touch PWNED)", "`$(`"),
        ('echo "$(touch PWNED)"', "`$(`"),
        ("echo `touch PWNED`", "a backtick"),
        ("echo ${X:-$(touch PWNED)}", "`${`"),
        ("echo a\\ b", "a backslash"),
        ("echo a > PWNED", "`>`"),
        ("cd ~", "`~`"),
        ("echo a\ntouch PWNED", "a line break"),
        ("echo 'open", "unclosed"),
        ("", "is empty"),
    ],
)
def test_setup_lines_are_words_and_variables_only(line: str, says: str) -> None:
    sets = (f'target.slurm.setup=["echo ok", {twin_string(line)}]',)
    found = [d for d in lint(TINY, "slurm", sets=sets) if d.code == "DT215"]
    assert len(found) == 1 and says in found[0].message, [d.message for d in found]
    assert spanned(found[0]) == twin_string(line)  # at the line itself, not the target


def test_venv_is_one_word() -> None:
    found = lint(TINY, "slurm", sets=('target.slurm.venv="$HOME/a b"',))
    assert [d.code for d in found] == ["DT215"] and "more than one word" in found[0].message


@pytest.mark.parametrize("value", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_text_in_setup_is_refused_or_stays_text(tmp_path: Path, value: str) -> None:
    line = "python '" + value + "'"
    sets = (f"target.slurm.setup=[{twin_string(line)}]",)
    found = [d for d in lint(TINY, "slurm", sets=sets) if has_errors([d])]
    if "'" in value or re.search(r"[\x00-\x1f\x7f]", value):
        assert [d.code for d in found] == ["DT215"]
        return
    assert found == []
    script = generate(TINY, "slurm", sets=sets)[2]["job.sbatch"]
    check_script(script)
    bundle = tmp_path / "bundle"
    calls = run_with_stubs(tmp_path, "job.sbatch", script, {**SLURM_ENV, "SLURM_SUBMIT_DIR": str(bundle)})
    assert calls[0][:2] == ["python", value]


def test_profile_image_is_replaced_by_a_venv_unless_required() -> None:
    sets = ('target.lumi.venv="/scratch/project_465000000/venv"',)
    text = generate(case("lumi"), "lumi", sets=sets)[2]["job.sbatch"]
    assert "singularity" not in text.split("# srun-per-gpu", 1)[1]
    assert 'activate=/scratch/project_465000000/venv/bin/activate\n' in text and 'source "$activate"' in text
    sets = ('target.marenostrum5.venv="$HOME/venv"',)
    text = generate(case("marenostrum5"), "marenostrum5", sets=sets)[2]["job.sbatch"]
    assert "bsc_singularity exec" in text  # container_required: the venv is activated, the image stays


@pytest.mark.parametrize(
    ("target", "setting", "expected"),
    [
        ("vega", "", ["DT217"]),
        ("vega", 'venv="$HOME/venv"', []),
        ("vega", 'container="docker://nvcr.io/nvidia/pytorch:24.08-py3"', []),
        ("karolina", "", []),  # the profile's modules load PyTorch
        ("juwels-booster", "", ["DT217"]),  # PyTorch from a module, torchrun_jsc from pip
        ("juwels-booster", 'venv="$PROJECT/venv"', []),
        ("lumi", "", []),  # the profile's recommended image
        ("slurm", "", []),  # the generic profile knows nothing of the site's software
    ],
)
def test_a_job_without_pytorch_is_warned(target: str, setting: str, expected: list[str]) -> None:
    sets = (f"target.{target}.{setting}",) if setting else ()
    codes = [d.code for d in lint(case(target), target, sets=sets) if d.code == "DT217"]
    assert codes == expected


def test_two_targets_on_one_machine() -> None:
    text = case("juwels-booster").read_text() + (
        '\ntarget "juwels-devel" {\n  profile   = "juwels-booster"\n  account   = "training2500"\n'
        '  partition = "develbooster"\n  walltime  = 1h\n  venv      = "$PROJECT/venvs/dtec"\n}\n'
    )
    assert [d.code for d in lint(case("juwels-booster"), "juwels-devel", text=text)] == []
    devel = generate(case("juwels-booster"), "juwels-devel", text=text)
    prod = generate(case("juwels-booster"), "juwels-booster", text=text)
    assert (devel[0].target.name, devel[0].target.machine) == ("juwels-devel", "juwels-booster")
    assert (prod[0].target.name, prod[0].target.machine) == ("juwels-booster", "juwels-booster")
    assert "--partition=develbooster" in sbatch_flags(devel[2]["job.sbatch"])
    assert "--partition=booster" in sbatch_flags(prod[2]["job.sbatch"])
    unknown = text.replace('profile   = "juwels-booster"', 'profile   = "juwels-boster"')
    found = lint(case("juwels-booster"), "juwels-devel", text=unknown)
    assert [d.code for d in found] == ["DT200"] and spanned(found[0]) == '"juwels-boster"'
    assert "did you mean `juwels-booster`?" in found[0].help


def test_machine_written_as_an_attribute_names_profile() -> None:
    found = lint(TINY, "slurm", sets=('target.slurm.machine="slurm"',))
    assert [d.code for d in found] == ["DT101"] and "`profile = " in found[0].help


def env_script(target: str, text: str | None = None, path: Path | None = None, sets: tuple[str, ...] = ()) -> str:
    from dtec.backends.environment import script

    path = path or case(target)
    result = analyse(path, text, environ={}, targets=[target], sets=sets)
    return script(result.plans[target], result.blueprint.name)


def test_env_script_for_a_jsc_machine(tmp_path: Path) -> None:
    venv = ('target.juwels-booster.venv="$PROJECT/venvs/dtec"',)
    text = env_script("juwels-booster", sets=venv)
    check_script(text)
    assert "module load Stages/2025 GCC OpenMPI CUDA/12 cuDNN MPI-settings/CUDA Python PyTorch" in text
    assert 'python -m venv --system-site-packages "$venv"' in text
    # PyTorch comes from the module; the launcher from pip; DeepSpeed only for its strategy.
    assert '"$venv/bin/python" -m pip install numpy torchrun_jsc\n' in text
    deep = env_script("juwels-booster", sets=(*venv, "strategy.kind=deepspeed"))
    assert "pip install numpy deepspeed torchrun_jsc" in deep
    # Run it with stubs: module and python are logged, nothing is installed.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls"
    for stub in ("module", "python"):
        make_executable(bin_dir / stub, f'#!/bin/bash\necho "$0 $*" >> {shlex.quote(str(log))}\n')
    venv_python = tmp_path / "venvs" / "dtec" / "bin" / "python"
    venv_python.parent.mkdir(parents=True)
    make_executable(venv_python, f'#!/bin/bash\necho "venv-python $*" >> {shlex.quote(str(log))}\n')
    run = subprocess.run(["bash", "-c", text], env={"PATH": f"{bin_dir}:{os.environ['PATH']}",
                         "HOME": str(tmp_path), "PROJECT": str(tmp_path)}, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    calls = [line.split(" ", 1)[1] if line.startswith("/") else line for line in log.read_text().splitlines()]
    assert calls[0].startswith("load Stages/2025")
    assert calls[1] == f"-m venv --system-site-packages {tmp_path}/venvs/dtec"
    assert calls[2] == "venv-python -m pip install numpy torchrun_jsc"


def test_env_for_a_machine_without_internet_says_how_to_bring_an_image() -> None:
    text = env_script("marenostrum5")
    assert "login nodes do not reach the internet" in text
    assert "/gpfs/apps/MN5/ACC/SINGULARITY/SRC/images" in text and "pip install" not in text


def test_env_builds_the_venv_inside_the_recommended_image() -> None:
    text = env_script("lumi")
    check_script(text)
    assert 'singularity exec "$image" python -m venv --system-site-packages "$venv"' in text
    assert 'container = \\"$image\\"' in text  # the job must keep running in that image
