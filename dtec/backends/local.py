"""Local backend: `run.sh`, which runs the bundle's train.py on this computer."""

from __future__ import annotations

from collections.abc import Mapping

from dtec.backends.slurm import export_lines, malloc_lines
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
        "omp_threads": plan.cpus_per_rank,
        "ranks": plan.ranks_per_node,
        # One process needs no launcher; torchrun's --standalone rendezvous picks a free port.
        "launcher": ""
        if plan.strategy == "single"
        else "-m torch.distributed.run --standalone --nnodes=1 "
        f"--nproc_per_node={plan.ranks_per_node} ",
    }
    return {RUN_FILE: render(TEMPLATE, **ctx)}
