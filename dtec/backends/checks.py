"""What each launcher can express, checked on the plan: `lint` reports all that `compile` refuses.

The planner calls `check` for every target; the generators then only write files. Light on
purpose (the lint path): no jinja2, yaml or pydantic here.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from dtec.backends.words import WordError, split_words

if TYPE_CHECKING:
    from typing import Any

    from dtec.machines import Machine
    from dtec.plan import Plan

# The planner's `report(code, message, *path, help=...)`: a path names the value at fault.
Report = Callable[..., None]

# Environment variable names: the shell's for job.sbatch and run.sh; Kubernetes also takes `-`, `.`.
SHELL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
KUBE_ENV_NAME = re.compile(r"[-._a-zA-Z][-._a-zA-Z0-9]*")
# Values on `#SBATCH` lines: sbatch's own tokenizer honours quotes but treats `\` as an escape
# everywhere, and a newline would end the comment and start shell code.
HEADER_UNSAFE = re.compile(r"[\x00-\x1f\x7f\\]")
# interLink's plugin splits its flags annotation on whitespace.
INTERLINK_FLAG_UNSAFE = re.compile(r"[\s\\]")
DNS1123 = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
# Set by the Trainer's Torch plugin; its webhook refuses a TrainJob whose env sets one
# (kubeflow/trainer:pkg/constants/constants.go TorchRunReservedEnvNames, v2.2.1).
TRAINJOB_RESERVED_ENV = ("PET_NNODES", "PET_NPROC_PER_NODE", "PET_NODE_RANK", "PET_MASTER_ADDR", "PET_MASTER_PORT")
EXEC_CONTAINERS = ("singularity", "apptainer")  # what job.sbatch can `exec` a rank in


def check(plan: Plan, report: Report, data_files: Mapping[str, str] | None = None,
          weighted: tuple[str, ...] = ()) -> None:
    """Report what the plan's launcher cannot express (DT215), at the value at fault.

    `data_files`: the data files the job reads, by data set, as written (relative to the data root);
    `weighted`: the models that start from another run's weights (`weights = from(...)`).
    """
    scheduler = plan.machine.scheduler
    data_files = data_files or {}
    if scheduler == "slurm":
        _slurm(plan, report)
        if job_image(plan.machine, plan.settings) is not None:
            _unbound_data(plan, report, data_files)
    elif scheduler == "local":
        _env_names(plan, report, SHELL_NAME, "use letters, digits and `_`, not starting with a digit")
    else:
        _kubernetes(plan, report)
        _data_root_in_pod(plan, report, data_files)
        for model in weighted:  # dtec.chain hands the job a file of the project's run folders
            report("DT215", "a pod does not see the project's run folders, which the weights come from",
                   "model", model, "weights", help="start from these weights on a Slurm or local target")


def _unbound_data(plan: Plan, report: Report, data_files: Mapping[str, str]) -> None:
    """Warn about an absolute data path the container does not see: it binds the bundle, the run and data roots."""
    root = plan.settings.get("data_root")
    for name, path in data_files.items():
        inside = root and posixpath.isabs(root) and posixpath.normpath(path).startswith(posixpath.normpath(root).rstrip("/") + "/")
        if posixpath.isabs(path) and not inside:
            report(
                "DT218",
                f"`{path}` is outside the data root, and the job reads it in a container that binds only the bundle, "
                "the run folder and the data root",
                "data", name, "source", "path",
                help="write the path relative to the data root and set the target's `data_root`"
                " (unless the site binds that file system into every container)",
            )


def _data_root_in_pod(plan: Plan, report: Report, data_files: Mapping[str, str]) -> None:
    """A pod sees none of this computer's files: a relative data path needs the target's `data_root`."""
    if plan.settings.get("data_root"):
        return
    for name, path in data_files.items():
        if not posixpath.isabs(path):
            report(
                "DT215",
                f"a pod cannot read `{path}` from this computer; relative data paths need the target's `data_root`",
                "data", name, "source", "path",
                help='add `data_root = "/data"` (a folder in the image, or on a volume the cluster mounts) to the target',
            )


def job_image(machine: Machine, settings: Mapping[str, Any]) -> str | None:
    """Return the image a Slurm job runs in: the target's, else the profile's unless a venv replaces it."""
    software = machine.software
    if settings.get("container"):
        return settings["container"]
    if software.container_required or not settings.get("venv"):
        return software.image
    return None


def _slurm(plan: Plan, report: Report) -> None:
    _site_flags(plan, report, HEADER_UNSAFE, "a control character or a backslash, which `#SBATCH` cannot carry")
    _env_names(plan, report, SHELL_NAME, "use letters, digits and `_`, not starting with a digit")
    _words(plan, report)
    software = plan.machine.software
    image = job_image(plan.machine, plan.settings)
    if image is None:
        if software.container_required:
            report(
                "DT215",
                f"`{plan.machine.name}` trains in a container; the target has no `container`",
                "target", plan.target, "container",
                help='add `container = "/path/to/pytorch.sif"` to the target block'
                + (f" (images: {software.image_dir})" if software.image_dir else ""),
            )
        return
    runtime = software.container_runtime or "singularity"
    if runtime not in EXEC_CONTAINERS:
        report(
            "DT215",
            f"dtec cannot launch `{runtime}` containers from Slurm yet",
            "target", plan.target, "container",
            help="use a singularity or apptainer image",
        )


def _kubernetes(plan: Plan, report: Report) -> None:
    kube = plan.machine.kube
    assert kube is not None, "the profile schema requires [kube] for Kubernetes kinds"
    namespace = plan.settings.get("namespace") or kube.namespace
    if len(namespace) > 63 or not DNS1123.fullmatch(namespace):
        report(
            "DT215",
            f"namespace `{namespace}` is not a Kubernetes name",
            "target", plan.target, "namespace",
            help="use lower-case letters, digits and `-` (at most 63)",
        )
    _env_names(plan, report, KUBE_ENV_NAME, "use letters, digits, `_`, `-` and `.`, not starting with a digit")
    # Kueue reads both as labels and refuses a queue name that is not a DNS-1123 subdomain
    # (kubernetes-sigs/kueue:pkg/controller/jobframework/validation.go, v0.19.2); a label value
    # holds at most 63 characters.
    for key in ("queue", "priority_class"):
        value = plan.settings.get(key)
        if value is not None and (len(value) > 63 or not DNS1123_SUBDOMAIN.fullmatch(value)):
            report(
                "DT215",
                f"{key.replace('_', ' ')} `{value}` is not a Kueue name",
                "target", plan.target, key,
                help="use lower-case letters, digits, `-` and `.` (at most 63), as `kubectl get localqueues` shows it",
            )
    runtime = plan.settings.get("runtime")
    if runtime is not None and kube.workload != "trainjob":
        report(
            "DT215",
            f"`runtime` names a Kubeflow Trainer v2 runtime; `{plan.machine.name}` runs a {kube.workload}",
            "target", plan.target, "runtime",
            help="remove `runtime`, or use the `kubeflow` profile (TrainJob)",
        )
    elif runtime is not None and (len(runtime) > 253 or not DNS1123_SUBDOMAIN.fullmatch(runtime)):
        report(
            "DT215",
            f"runtime `{runtime}` is not a Kubernetes name",
            "target", plan.target, "runtime",
            help="name a ClusterTrainingRuntime as `kubectl get clustertrainingruntimes` shows it",
        )
    if kube.workload == "trainjob":
        _trainjob_env(plan, report)
    if kube.workload != "interlink-job":
        return
    if plan.nodes > 1:
        # Pods on the virtual node cannot reach each other; the multi-node pattern (srun inside the
        # pre-exec annotation) needs the image and the ConfigMap files on the host side, which
        # the plugin does not document.
        report(
            "DT215",
            f"interLink runs one pod as one Slurm job on one node; {plan.nodes} nodes asked",
            "strategy", "nodes",
            help="use `nodes = 1` here, or a Slurm target for several nodes",
        )
    _site_flags(plan, report, INTERLINK_FLAG_UNSAFE, "whitespace or a backslash, which interLink flags cannot carry")


def _trainjob_env(plan: Plan, report: Report) -> None:
    for name in plan.settings.get("env") or {}:
        if name in TRAINJOB_RESERVED_ENV:
            report(
                "DT215",
                f"`{name}` is set by the Kubeflow Trainer for torchrun; its webhook refuses a TrainJob that sets it",
                "target", plan.target, "env", name,
                help=f"remove `{name}`: the Trainer sets it from the node count and `procs_per_node`",
            )


def _words(plan: Plan, report: Report) -> None:
    """Report `setup` lines and a `venv` that are more than words and `$NAME` (dtec.backends.words)."""
    lines = [(("setup", i), line) for i, line in enumerate(plan.settings.get("setup") or [])]
    venv = plan.settings.get("venv")
    if venv is not None:
        lines.append((("venv",), venv))
    for path, line in lines:
        try:
            count = len(split_words(line))
        except WordError as exc:
            problem = str(exc)
        else:
            if path != ("venv",) or count == 1:
                continue
            problem = "is more than one word; quote a path with spaces"
        what = "`venv`" if path == ("venv",) else f"setup line `{line}`" if line.isprintable() else "a setup line"
        report(
            "DT215", f"{what} {problem}", "target", plan.target, *path,
            help="a setup line is one command of words and `$NAME` variables; put more in a script and run that",
        )


def _site_flags(plan: Plan, report: Report, unsafe: re.Pattern[str], what: str) -> None:
    for key, value in plan.site_flags.items():
        if value and unsafe.search(value):
            report("DT215", f"`{key}` holds {what}", "target", plan.target, key, help=f"check the target's `{key}`")


def _env_names(plan: Plan, report: Report, pattern: re.Pattern[str], rule: str) -> None:
    for name in plan.settings.get("env") or {}:
        if not pattern.fullmatch(name):
            report(
                "DT215",
                f"`{name}` is not a valid environment variable name",
                "target", plan.target, "env", name,
                help=rule,
            )
