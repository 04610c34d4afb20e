"""Compile a blueprint for one target into a bundle: the files, the IR and the plan."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from dtec import __version__
from dtec.diagnostics import Diagnostic, has_errors
from dtec.ir import IR, build_ir
from dtec.lang.blueprint import Blueprint
from dtec.lang.codefolders import BundledCode
from dtec.analysis import analyse
from dtec.plan import Plan

LAUNCHERS = {"slurm": "job.sbatch", "local": "run.sh", "kubernetes": "job.yaml", "kubeflow": "job.yaml", "interlink": "job.yaml"}


@dataclass(frozen=True)
class Bundle:
    """Generated files by name (sorted), with the IR and plan they came from."""

    files: dict[str, str]
    ir: IR
    plan: Plan
    blueprint: Blueprint | None = None  # where values are: diagnostics about the bundle point there
    code: BundledCode = field(default_factory=BundledCode)  # the user's code folders in `files`

    @property
    def launcher(self) -> str:
        """Return the name of the file that starts the job."""
        return LAUNCHERS[self.ir.target.scheduler]


def build(
    path: Path,
    target: str,
    *,
    text: str | None = None,
    sets: Sequence[str] = (),
    environ: Mapping[str, str] | None = None,
    machine_dirs: Sequence[Path] = (),
    sweep: bool = True,
    sharing: int = 1,
) -> tuple[tuple[IR, Plan, Blueprint, BundledCode] | None, list[Diagnostic]]:
    """Check and plan `path` for `target` and build its IR; None when any error was found."""
    result = analyse(path, text, environ, targets=[target], sets=sets, machine_dirs=machine_dirs, sweep=sweep,
                     sharing=sharing)
    diagnostics = list(result.diagnostics)
    if has_errors(diagnostics) or target not in result.plans:
        return None, diagnostics
    plan = result.plans[target]
    ir = build_ir(result.blueprint, plan, result.code.folders)  # type: ignore[arg-type]
    return (ir, plan, result.blueprint, result.code), diagnostics  # type: ignore[return-value]


def compile_blueprint(
    path: Path,
    target: str,
    *,
    text: str | None = None,
    sets: Sequence[str] = (),
    environ: Mapping[str, str] | None = None,
    machine_dirs: Sequence[Path] = (),
    template_dirs: Sequence[Path] = (),
    sweep: bool = True,
    sharing: int = 1,
    name: str | None = None,
) -> tuple[Bundle | None, list[Diagnostic]]:
    """Compile `path` for `target`; returns no bundle when any error was found.

    `sweep=False`: without the blueprint's `sweep` block, as one trial of it, one of `sharing`
    running at once. `name`: the Kubernetes workload's name (default: the twin's), for runs
    applied side by side.
    """
    built, diagnostics = build(path, target, text=text, sets=sets, environ=environ, machine_dirs=machine_dirs, sweep=sweep,
                               sharing=sharing)
    if built is None:
        return None, diagnostics
    ir, plan, blueprint, code = built
    return Bundle(generate(ir, plan, template_dirs, code, name), ir, plan, blueprint, code), diagnostics


def generate(
    ir: IR, plan: Plan, template_dirs: Sequence[Path] = (), code: BundledCode | None = None, name: str | None = None,
) -> dict[str, str]:
    """Run the backends for the IR's scheduler and add the user's code, `ir.json` and `manifest.json`.

    The planner checked what the launcher can express (dtec.backends.checks): nothing is refused here.
    """
    from dtec.backends import kubernetes, local, slurm
    from dtec.backends.train_script import render_predict, render_train

    backend = {"slurm": slurm, "local": local}.get(ir.target.scheduler, kubernetes)
    shared = {"train.py": render_train(ir, template_dirs), "ir.json": ir_json(ir), **(code.files if code else {})}
    predict = render_predict(ir, template_dirs)
    if predict is not None:
        shared["predict.py"] = predict
    launcher = kubernetes.generate(ir, plan, shared, name) if backend is kubernetes else backend.generate(ir, plan, shared)
    files = {**shared, **launcher}
    files["manifest.json"] = manifest(files, ir)
    return dict(sorted(files.items()))


def for_run(bundle: Bundle, run_id: str) -> Bundle:
    """The bundle as run `run_id` launches it: on Kubernetes, its objects are named for the run, so
    that a second run of the twin does not apply over the first (`dtec compile` names them for the
    twin alone). Deterministic: the name comes from the run id."""
    if bundle.ir.target.scheduler in ("local", "slurm"):
        return bundle
    from dtec.backends import kubernetes

    shared = {name: text for name, text in bundle.files.items() if name not in (kubernetes.JOB_FILE, "manifest.json")}
    files = {**shared, **kubernetes.generate(bundle.ir, bundle.plan, shared, kubernetes.workload_name(bundle.ir.twin.name, run_id))}
    files["manifest.json"] = manifest(files, bundle.ir)
    return replace(bundle, files=dict(sorted(files.items())))


def ir_json(ir: IR) -> str:
    """Serialise the IR deterministically."""
    return json.dumps(ir.model_dump(mode="json"), indent=2, sort_keys=False) + "\n"


def requirements(ir: IR) -> list[str]:
    """The Python packages the bundle's train.py imports (`pip install 'dtec[data]'` has the data ones)."""
    from dtec.backends.train_script import DATA_PACKAGES

    source = ir.data[ir.models[ir.train.model].input].source
    strategy = ["deepspeed"] if ir.strategy.kind == "deepspeed" else []
    numpy = ["numpy"] if source in ("npz", *DATA_PACKAGES) else []
    trackers = [{"mlflow": "mlflow", "tensorboard": "tensorboard"}[t.kind] for t in ir.monitor.track]
    return sorted({"torch", *strategy, *numpy, *DATA_PACKAGES.get(source, []), *trackers})


def manifest(files: Mapping[str, str], ir: IR) -> str:
    """List every file with its sha256, the dtec version and the target."""
    body = {
        "dtec_version": __version__,
        "ir_schema_version": ir.schema_version,
        "twin": ir.twin.name,
        "target": ir.target.name,
        "scheduler": ir.target.scheduler,
        "launcher": LAUNCHERS[ir.target.scheduler],
        "requires": requirements(ir),
        "files": {
            name: {"sha256": hashlib.sha256(content.encode("utf-8")).hexdigest(), "bytes": len(content.encode("utf-8"))}
            for name, content in sorted(files.items())
        },
    }
    return json.dumps(body, indent=2) + "\n"
