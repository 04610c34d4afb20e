"""Local backend: `run.sh`, which runs the bundle's train.py on this computer."""

from __future__ import annotations

from collections.abc import Mapping

from dtec.backends.slurm import data_root_word, export_lines, malloc_lines, signal_lead
from dtec.backends.templating import render
from dtec.ir import IR
from dtec.plan import Plan

RUN_FILE = "run.sh"
TEMPLATE = "run.sh.jinja"


def generate(ir: IR, plan: Plan, shared: Mapping[str, str]) -> dict[str, str]:
    """Return `{"run.sh": text}` for a plan that dtec.backends.checks passed."""
    env = export_lines(plan.machine.environment(plan.partition), ir.target.env)
    ctx = {
        "env": env,
        "malloc": malloc_lines(plan, env),
        "data_root": data_root_word(ir),
        "omp_threads": plan.cpus_per_rank,
        "ranks": plan.ranks_per_node,
        # One process needs no launcher; torchrun's --standalone rendezvous picks a free port.
        "launcher": ""
        if plan.strategy == "single"
        else "-m torch.distributed.run --standalone --nnodes=1 "
        f"--nproc_per_node={plan.ranks_per_node} ",
        "timeout": timeout_words(plan),
    }
    return {RUN_FILE: render(TEMPLATE, **ctx)}


def timeout_words(plan: Plan) -> str:
    """Return the `timeout` that ends the run by the target's walltime, or "" when it sets none.

    As Slurm's --signal does, it warns ahead of the limit: train.py takes SIGTERM (torchrun passes
    it on to the ranks) for a checkpoint, and SIGKILL follows at the walltime itself.
    """
    if plan.settings.get("walltime") is None:
        return ""  # the plan's default walltime is for schedulers; a local run has no limit
    walltime = plan.walltime_s
    lead = max(1, min(signal_lead(walltime), walltime // 2))
    return f"timeout --preserve-status --kill-after={lead}s {max(1, walltime - lead)}s "
