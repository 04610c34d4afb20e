"""Initial weights from another run, and chains of blueprints: which run's `final_model.pt` a job reads.

A model's `weights = from(run = ...)` names its run; `from(blueprint = ...)` means that blueprint's
newest completed run for the same target. When it has none, `dtec run` runs it first (locally: to
its end; on Slurm: submitted, and the next stage held with `--dependency=afterok`). The job reads
the file named by $DTEC_WEIGHTS; the run folders live in the project, which the cluster sees.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from dtec import runs
from dtec.lang.weights import FINAL_MODEL


class ChainError(Exception):
    """Weights that cannot be had, said in one line with what to do."""


@dataclass(frozen=True)
class Source:
    """The run whose final weights a job starts from (`job`: a Slurm job still to finish first)."""

    run: runs.Run
    job: str | None = None

    @property
    def path(self) -> Path:
        return self.run.folder.resolve() / FINAL_MODEL

    def env(self) -> dict[str, str]:
        return {"DTEC_WEIGHTS": str(self.path)}

    def record(self) -> dict:
        """What the run record keeps of it (run.json `weights`)."""
        return {"run_id": self.run.id, "folder": str(self.run.folder.resolve()), "path": str(self.path),
                "ir_sha256": self.run.record.get("ir_sha256"), "after_job": self.job}


def weights(bundle):
    """The trained model's `weights` (IR), or None."""
    return bundle.ir.models[bundle.ir.train.model].weights


def stage(bundle) -> Path | None:
    """The blueprint of the earlier stage (`from(blueprint = ...)`), where it is here."""
    found = weights(bundle)
    if found is None or found.blueprint is None or bundle.blueprint is None:
        return None
    return Path(os.path.realpath(bundle.blueprint.folder / found.blueprint))


def find(bundle, *, queued: bool = False) -> Source | None:
    """The weights the bundle's model starts from; None when its earlier stage has not run.

    With `queued`, a Slurm job of the earlier stage still pending or running is taken as well:
    the next stage then waits for it.
    """
    found = weights(bundle)
    if found is None:
        return None
    if bundle.ir.target.scheduler == "kubernetes":
        raise ChainError("a model that starts from a run's weights runs on Slurm or locally: "
                         "a Kubernetes pod does not see the project's run folders")
    if found.run is not None:
        folder = bundle.blueprint.folder / found.run if bundle.blueprint is not None else Path(found.run)
        run = runs.load(folder)
        if run is None or not (folder / FINAL_MODEL).is_file():
            raise ChainError(f"run `{found.run}` has no finished {FINAL_MODEL.as_posix()}; "
                             "`dtec status` says how it stands")
        return Source(run)
    target = bundle.ir.target.name
    mine = [r for r in runs.all_runs()
            if r.record.get("twin") == found.twin and r.record.get("target") == target]
    for run in reversed(mine):  # the newest first
        if (run.folder / FINAL_MODEL).is_file() and runs.state(run).status == "completed":
            return Source(run)
    if queued:
        for run in reversed(mine):
            job = run.job or {}
            if job.get("kind") == "slurm" and runs.state(run).active:
                return Source(run, str(job.get("job_id")))
    return None
