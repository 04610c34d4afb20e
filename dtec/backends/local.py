"""Local backend: `run.sh`, which runs the bundle's train.py on this computer."""

from __future__ import annotations

from collections.abc import Mapping

from dtec.backends.slurm import export_lines, malloc_lines
from dtec.backends.templating import render
from dtec.diagnostics import Diagnostic
from dtec.ir import IR
from dtec.plan import Plan

RUN_FILE = "run.sh"
TEMPLATE = "run.sh.jinja"
# Settings of a batch system or a container runtime; a plain process cannot honour them.
def generate(ir: IR, plan: Plan, shared: Mapping[str, str]) -> tuple[dict[str, str], list[Diagnostic]]:
    """Return `{"run.sh": text}` and what the target cannot express."""
    found: list[Diagnostic] = []
    env = export_lines(plan.machine.environment(plan.partition), ir.target.env, found)
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
    return {RUN_FILE: render(TEMPLATE, **ctx)}, found
