"""Slurm backend: the `job.sbatch` that runs a bundle's train.py on a machine (docs/backends.md)."""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from typing import Any

from dtec.backends.checks import EXEC_CONTAINERS, HEADER_UNSAFE, job_image
from dtec.backends.words import Part, render_line, render_word, split_words
from dtec.backends.templating import render
from dtec.ir import IR
from dtec.plan import Plan
from dtec.units import GIB, MIB

JOB_FILE = "job.sbatch"
TEMPLATE = "job.sbatch.jinja"
WORKERS_TEMPLATE = "workers.sbatch.jinja"
WORKER_LOGS = "workers/%x-%A_%a"  # a sweep's worker logs, relative to the study folder
PREEMPTED_EXIT = 143  # train.py checkpoints on SIGUSR1/SIGTERM, then exits 128 + SIGTERM
LOG_PATTERN = "logs/%x-%j"  # relative to the submit dir, which is the bundle folder
# Slurm may send the --signal up to 60 s early; keep the lead within [60 s, 10 min] and under
# a tenth of the walltime, so short test jobs still get most of their time.
_LEAD_MIN_S, _LEAD_MAX_S = 60, 600
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Set by dtec itself below the site environment; a profile value for them is ignored.
_COMPUTED_ENV = ("OMP_NUM_THREADS", "MASTER_ADDR", "MASTER_PORT", "SRUN_CPUS_PER_TASK")
# glibc's malloc moves its mmap threshold with the allocation history, so a CPU rank may give
# every large temporary tensor a fresh, zero-filled mmap, page-faulting its way through each step
# (measured in docs/benchmarks.md, "The allocator"). CPU-only
# launchers fix both (which turns the adjustment off): blocks up to 32 MiB come from the heap,
# and the heap is trimmed only past 1 GiB free.
CPU_MALLOC_ENV = (("MALLOC_MMAP_THRESHOLD_", 32 * MIB), ("MALLOC_TRIM_THRESHOLD_", GIB))


def generate(ir: IR, plan: Plan, shared: Mapping[str, str]) -> dict[str, str]:
    """Return `{"job.sbatch": text}` for a plan that dtec.backends.checks passed."""
    return {JOB_FILE: render(TEMPLATE, **context(ir, plan))}


def workers(ir: IR, plan: Plan, count: int, study: str) -> str:
    """Return the `workers.sbatch` of a sweep: a job array of `count` workers, each allocated as
    one trial's job asks, running `python -m dtec.study` in the study folder (docs/sweeps.md)."""
    values = context(ir, plan)
    tasks, cpus = _shape(plan)
    header = [
        *_resources(ir, plan, tasks, cpus, _exclusive(ir, plan)),
        f"--array=0-{count - 1}",
        f"--output={WORKER_LOGS}.out",
        f"--error={WORKER_LOGS}.err",
    ]
    return render(WORKERS_TEMPLATE, **values | {"header": header, "study": study, "count": count})


def _shape(plan: Plan) -> tuple[int, int]:
    """Tasks per node and CPUs per task of the job's allocation."""
    if plan.machine.launch.pattern == "torchrun-per-node":
        return 1, plan.cpus_per_rank * plan.ranks_per_node
    return plan.ranks_per_node, plan.cpus_per_rank


def context(ir: IR, plan: Plan) -> dict[str, Any]:
    """Compute every value the template places (quoted where it reaches the shell)."""
    machine = plan.machine
    launch = machine.launch
    tasks, cpus = _shape(plan)
    container = _container(ir, plan)
    exclusive = _exclusive(ir, plan)
    env = export_lines(machine.environment(plan.partition), ir.target.env)
    return {
        "header": _header(ir, plan, tasks, cpus, exclusive),
        "about": _about(ir, plan, tasks, cpus),
        "module_use": [shell_word(p) for p in machine.software.module_use],
        "modules": " ".join(map(shell_word, [*machine.software.modules, *ir.target.modules])),
        "env": env,
        "malloc": malloc_lines(plan, env),
        "venv": activate_word(ir.target.venv) if ir.target.venv else None,
        "data_root": data_root_word(ir),
        # The profile's lines are its own shell code; the blueprint's were checked (DT215).
        "setup": [*machine.software.setup, *map(render_line, ir.target.setup)],
        "export_srun_cpus": launch.export_srun_cpus_per_task,
        "omp_threads": plan.cpus_per_rank,
        "master_addr_suffix": shell_word(launch.master_addr_suffix)
        if launch.master_addr_suffix
        else "",
        # A sweep's worker gives each trial's step a free port: its trials may share a node with others.
        "master_port": '"${DTEC_MASTER_PORT:-' + dquote(launch.master_port)[1:-1] + '}"',
        "container": container,
        "launch": _launch(plan, container, exclusive),
        "pattern": launch.pattern,
        "preempted_exit": PREEMPTED_EXIT,
    }


# ---- the header ------------------------------------------------------------------------------
def _header(ir: IR, plan: Plan, tasks: int, cpus: int, exclusive: bool) -> list[str]:
    return [
        *_resources(ir, plan, tasks, cpus, exclusive),
        f"--output={LOG_PATTERN}.out",
        f"--error={LOG_PATTERN}.err",
        # A requeued job keeps its id: append to its logs instead of truncating them.
        "--open-mode=append",
        f"--signal=B:USR1@{signal_lead(ir.target.walltime_s)}",
        "--requeue",
    ]


def _resources(ir: IR, plan: Plan, tasks: int, cpus: int, exclusive: bool) -> list[str]:
    """The flags that name the job and what it asks for (one run's allocation)."""
    machine, target = plan.machine, ir.target
    flags = [f"--job-name={job_name(ir.twin.name)}"]
    for key in ("account", "partition", "qos"):
        value = sbatch_value(getattr(target, key))
        if value is not None:
            flags.append(f"--{key}={value}")
    flags += [
        f"--time={slurm_time(target.walltime_s)}",
        f"--nodes={plan.nodes}",
        f"--ntasks-per-node={tasks}",
        f"--cpus-per-task={cpus}",
    ]
    # Templates check_setting accepted: one option of plain characters, quoted all the same.
    gpu = machine.gpu_flag(plan.gpus_per_node, plan.nodes)
    if gpu:
        flags.append(shlex.quote(gpu))
    memory = machine.memory_flag(
        _memory_gib(plan, tasks * cpus, exclusive), plan.node.requestable_memory_gb
    )
    if memory:
        flags.append(shlex.quote(memory))
    if exclusive:
        flags.append("--exclusive")
    reservation = sbatch_value(target.reservation)
    if reservation is not None:
        flags.append(f"--reservation={reservation}")
    if machine.launch.hint_nomultithread:
        flags.append("--hint=nomultithread")
    return flags


def _about(ir: IR, plan: Plan, tasks: int, cpus: int) -> list[str]:
    partition = _printable(plan.partition.name) if plan.partition is not None else "default"
    ranks = f"{plan.ranks_per_node} rank{'s' if plan.ranks_per_node != 1 else ''} per node"
    device = f"{plan.gpus_per_node} GPUs" if plan.gpus_per_node else "CPU only"
    nodes = f"{plan.nodes} node{'s' if plan.nodes != 1 else ''}"
    per_node = f"{tasks} task{'s' if tasks != 1 else ''} per node"
    what = f"{nodes} x {ranks}, {device}, {plan.strategy}, backend {plan.backend}"
    return [
        f"dtec bundle `{job_name(ir.twin.name)}` for `{plan.machine.name}` ({partition}): {what}.",
        f"Launch: {plan.machine.launch.pattern}, {per_node} x {cpus} CPUs.",
    ]


def _printable(text: str) -> str:
    return _CONTROL.sub("?", text)


def _exclusive(ir: IR, plan: Plan) -> bool:
    """Return whether to ask for whole nodes: the target's say, else site or partition."""
    if ir.target.exclusive is not None:
        return ir.target.exclusive
    whole = plan.partition is not None and plan.partition.whole_node
    # CPU masks name the cores of a whole node: a job using every GPU takes the node outright.
    full = plan.node.gpus > 0 and plan.gpus_per_node == plan.node.gpus and _masks(plan)
    return plan.machine.rules.exclusive or whole or full


def _masks(plan: Plan) -> bool:
    bind = plan.machine.launch.cpu_bind or ""
    return "mask_cpu" in bind or "map_cpu" in bind


def _memory_gib(plan: Plan, cpus_used: int, exclusive: bool) -> float:
    """Return the memory to request per node: all of it, or the share of the node the job uses."""
    node = plan.node
    if exclusive or (plan.partition is not None and plan.partition.whole_node):
        return node.requestable_memory_gb
    shares = [cpus_used / max(node.usable_cpus, 1)]
    if node.gpus:
        shares.append(plan.gpus_per_node / node.gpus)
    return node.requestable_memory_gb * min(1.0, max(shares))


def job_name(twin: str) -> str:
    """Return a job name safe in file names (`%x`) and on the command line."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", twin)
    name = re.sub(r"-{2,}", "-", name).strip("-.")[:64]
    return name or "dtec"


def slurm_time(seconds: int) -> str:
    """Return `--time` as D-HH:MM:SS."""
    days, rest = divmod(int(seconds), 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{days}-{hours:02d}:{minutes:02d}:{secs:02d}"


def signal_lead(walltime_s: int) -> int:
    """Return how many seconds before the time limit Slurm warns the job (USR1)."""
    return max(_LEAD_MIN_S, min(_LEAD_MAX_S, walltime_s // 10))


def sbatch_value(value: str | None) -> str | None:
    """Quote a blueprint value for an `#SBATCH` line; None for no value."""
    if value is None or value == "":
        return None
    if HEADER_UNSAFE.search(value):  # the planner reported it (DT215): never write it
        raise ValueError(f"{value!r} cannot stand on an #SBATCH line")
    return shlex.quote(value)


# ---- the body --------------------------------------------------------------------------------
def shell_word(value: str) -> str:
    """Quote a value (a blueprint's, or a profile's literal) so that bash reads it as written.

    Single quotes where shellcheck takes them at their word; around `$`, a backtick or `\\`,
    escaped double quotes say the same without SC2016 (an expansion the author forgot) or SC1003;
    control characters only ANSI-C quoting can spell (a raw carriage return is SC1017).
    """
    if _CONTROL.search(value):
        return "$'" + "".join(_ansi_c(c) for c in value) + "'"
    if re.search(r"[$`\\]", value):
        return '"' + re.sub(r'([$`"\\])', r"\\\1", value) + '"'
    return shlex.quote(value)


def _ansi_c(char: str) -> str:
    if char in "\\'":
        return "\\" + char
    return f"\\x{ord(char):02x}" if _CONTROL.fullmatch(char) else char


def activate_word(venv: str) -> str:
    """Return the venv's activate script as one word (its `$NAME` variables expand)."""
    (word,) = split_words(venv)  # one word: dtec.backends.checks reported any other venv
    return render_word((*word, Part("/bin/activate")))


def dquote(value: str) -> str:
    """Double-quote a trusted profile value: `$VAR` still expands, quotes and backticks do not."""
    return '"' + re.sub(r'(["\\`])', r"\\\1", value) + '"'


def export_lines(site: Mapping[str, str], user: Mapping[str, str]) -> list[tuple[str, str]]:
    """Return (name, shell word) pairs: profile values may use $VARS, blueprint values are inert."""
    out = {name: dquote(value) for name, value in site.items() if name not in _COMPUTED_ENV}
    for name, value in user.items():
        out.pop(name, None)  # a blueprint value replaces the site's, and comes after the others
        out[name] = shell_word(value)
    return list(out.items())


def data_root_word(ir: IR) -> str | None:
    """Return the target's `data_root` as a shell word, or None: $DTEC_DATA_ROOT is then the caller's."""
    return shell_word(ir.target.data_root) if ir.target.data_root else None


def malloc_lines(plan: Plan, env: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Return (name, shell word) pairs fixing glibc's malloc thresholds on a CPU-only plan.

    Each word keeps a value the environment already has (`"${NAME:-default}"`); a name that the
    profile or the blueprint exports is left to that export.
    """
    if plan.device != "cpu":
        return []
    exported = {name for name, _ in env}
    return [
        (name, f'"${{{name}:-{value}}}"') for name, value in CPU_MALLOC_ENV if name not in exported
    ]


def _container(ir: IR, plan: Plan) -> dict[str, Any] | None:
    software = plan.machine.software
    image = job_image(plan.machine, plan.settings)
    if image is None:
        return None
    runtime = software.container_runtime or "singularity"
    assert runtime in EXEC_CONTAINERS, "the planner reports other runtimes (DT215)"
    words = [
        *shlex.split(software.container_command or runtime),
        software.container_verb,
        *software.container_options,
    ]
    return {
        "image": shell_word(image),
        "is_file": "://" not in image,  # docker://, oras://, library:// are pulled, not checked
        # The bundle, the run folder (which $RUN_DIR may move) and the data root must be visible inside.
        "command": " ".join(map(shell_word, words)) + ' --bind "$binds" "$container"',
    }


def _launch(plan: Plan, container: dict[str, Any] | None, exclusive: bool) -> list[str]:
    """Return the launch command as lines of shell words (joined with line continuations)."""
    launch = plan.machine.launch
    srun = ["srun"]
    # On part of a node, masks would point at cores other jobs own: leave binding to Slurm there.
    if launch.cpu_bind and (exclusive or not _masks(plan)):
        srun.append(shell_word(f"--cpu-bind={launch.cpu_bind}"))
    if launch.gpu_bind and plan.gpus_per_node:
        srun.append(shell_word(f"--gpu-bind={launch.gpu_bind}"))
    srun += map(shell_word, launch.srun_args)
    lines = [" ".join(srun)]
    if container is not None:
        lines.append(container["command"])
    script = ["train.py", '--run-dir "$run_dir"', "--resume auto"]
    if launch.pattern == "torchrun-per-node":
        # The relayed USR1 reaches every process of the step; torchrun must live on (its default
        # would be to die) while its ranks checkpoint, so it runs with USR1 ignored.
        lines.append('bash -c \'trap "" USR1; exec "$@"\' ignore-usr1')
        lines.append(" ".join(map(shell_word, shlex.split(launch.torchrun))))
        lines.append(
            f'--nnodes="$SLURM_NNODES" --nproc_per_node={plan.ranks_per_node} '
            f'--rdzv_backend=c10d --rdzv_endpoint="$MASTER_ADDR:$MASTER_PORT" '
            '--rdzv_id="$SLURM_JOB_ID"'
        )
        if launch.torchrun_args:
            lines.append(" ".join(map(shell_word, launch.torchrun_args)))
    else:
        # srun starts every rank; train.py reads SLURM_PROCID, SLURM_LOCALID, SLURM_STEP_NUM_TASKS.
        script.insert(0, "python")
    lines.append(" ".join(script))
    return lines
