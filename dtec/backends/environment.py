"""`dtec env`: the script that builds a target's Python environment on a login node.

It loads the job's modules, makes a venv with `--system-site-packages` (inside the job's image
when it runs in one) and pip installs what the bundle needs: NumPy (torch.distributed's object
collectives), PyTorch where neither a module nor the image provides it, DeepSpeed for the
deepspeed strategy, and the profile's own packages (`torchrun_jsc` at JSC). On a machine whose
login nodes are offline it says how to bring an image instead.
"""

from __future__ import annotations

import shlex

from dtec.backends.checks import job_image
from dtec.backends.slurm import shell_word
from dtec.backends.words import render_word, split_words
from dtec.plan import Plan


def packages(plan: Plan, image: str | None) -> list[str]:
    """Return what pip installs for this plan: the bundle's needs, then the profile's."""
    software = plan.machine.software
    modules = [*software.modules, *(plan.settings.get("modules") or [])]
    out = ["numpy"]
    if image is None and not software.provides_torch(modules):
        out.append("torch")
    if plan.strategy == "deepspeed":
        out.append("deepspeed")
    return [*out, *(p for p in software.pip if p not in out)]


def default_venv(twin: str) -> str:
    """Return the venv path proposed when the target names none."""
    return f"$HOME/venvs/dtec-{twin}"


def script(plan: Plan, twin: str) -> str:
    """Return the bash script that builds the environment (or, offline, says what to do)."""
    machine, settings = plan.machine, plan.settings
    image = job_image(machine, settings)
    if not machine.rules.login_internet:
        return _offline(plan, image)
    venv = settings.get("venv") or default_venv(twin)
    (word,) = split_words(venv)  # a target's venv is one word (DT215 otherwise)
    lines = [
        "#!/bin/bash",
        f"# Builds the Python environment of `{twin}` for the target `{plan.target}` ({machine.title}).",
        "# Run it once on a login node; it changes nothing outside the venv.",
        "set -euo pipefail",
        "",
        f"venv={render_word(word)}",
    ]
    modules = [*machine.software.modules, *(settings.get("modules") or [])]
    if machine.software.module_use or modules:
        lines += ["set +u"]
        lines += [f"module use {shell_word(p)}" for p in machine.software.module_use]
        if modules:
            lines.append("module load " + " ".join(map(shell_word, modules)))
        lines += ["set -u"]
    run = ""
    if image is not None:
        runtime = machine.software.container_runtime or "singularity"
        command = [*shlex.split(machine.software.container_command or runtime), "exec"]
        lines.append(f"image={shell_word(image)}")
        # The venv is made inside the image, so that its python is the image's (and its torch).
        run = " ".join(map(shell_word, command)) + ' "$image" '
    wanted = " ".join(map(shell_word, packages(plan, image)))
    lines += [
        "",
        f'{run}python -m venv --system-site-packages "$venv"',
        # No --upgrade: what the modules or the image provide stays (their torch was built for them).
        f'{run}"$venv/bin/python" -m pip install {wanted}',
        f'{run}"$venv/bin/python" -c "import torch; print(\'torch\', torch.__version__)"',
        "",
        "echo \"dtec: built $venv; add to the target block:\"",
        "echo \"  venv = \\\"$venv\\\"\"",
    ]
    if image is not None and not settings.get("container"):
        # Named in the target, the profile's image stays the job's: the venv was made in it.
        lines.append("echo \"  container = \\\"$image\\\"\"")
    if machine.node.gpu_vendor == "amd" and image is None:
        lines.insert(-3, "# AMD GPUs need PyTorch's ROCm wheels (see the site's PyTorch page) or an image.")
    return "\n".join(lines) + "\n"


def _offline(plan: Plan, image: str | None) -> str:
    machine = plan.machine
    where = machine.software.image_dir
    runtime = machine.software.container_runtime or "apptainer"
    lines = [
        f"`{machine.name}` login nodes do not reach the internet: pip cannot install there.",
        "Bring an image with PyTorch instead:",
        f"  1. on a computer with internet: {runtime} pull pytorch.sif docker://nvcr.io/nvidia/pytorch:<tag>-py3",
        f"     (or build one with the packages the bundle needs: {', '.join(packages(plan, None))})",
        "  2. copy it to the machine (scp pytorch.sif <login>:<project folder>/)",
        '  3. name it in the target: container = "<project folder>/pytorch.sif"',
    ]
    if where:
        lines.append(f"The site keeps ready images in {where}.")
    if image:
        lines.append(f"The target already runs in {image}.")
    return "\n".join(lines) + "\n"
