"""`dtec check`: run a compiled bundle's `train.py --check` on this computer, and say what it found.

The script builds the data set and the model (the user's code included) and runs one forward and
backward pass on one real batch on the CPU; it prints one JSON object. Here that becomes a summary,
or coded diagnostics at the blueprint value involved, with the user's frames of the traceback as
notes that show their code.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dtec.diagnostics import Diagnostic, Related, diag
from dtec.lang.blueprint import Blueprint
from dtec.source import Span, read_source

TIMEOUT_S = 600
_SHOWN_FRAMES = 5
# Set by launchers: the check is one process on the CPU, whatever the shell it runs in says.
_LAUNCH_VARIABLES = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "SLURM_STEP_NUM_TASKS",
                     "TORCHELASTIC_RUN_ID", "TORCHELASTIC_ERROR_FILE")


@dataclass(frozen=True)
class CheckResult:
    """What `train.py --check` reported (None when it printed no report), as diagnostics too."""

    report: dict[str, Any] | None
    diagnostics: list[Diagnostic] = field(default_factory=list)


def run_check(bundle, timeout_s: float = TIMEOUT_S, extra_env: dict[str, str] | None = None) -> CheckResult:
    """Run the bundle's `train.py --check` in a temporary folder on the CPU; report its findings.

    The script and the user's code are the bundle's; the data is read where it is here (the
    blueprint's folder is the data root, unless $DTEC_DATA_ROOT says otherwise).
    """
    env = one_process_env()
    env["CUDA_VISIBLE_DEVICES"] = ""  # the CPU, as the check promises, also on a GPU node
    env.update(extra_env or {})  # $DTEC_WEIGHTS: the initial weights, loaded where they are here
    if bundle.blueprint is not None:
        env.setdefault("DTEC_DATA_ROOT", os.path.abspath(bundle.blueprint.folder))
    with tempfile.TemporaryDirectory(prefix="dtec-check-") as folder:
        for name in ["train.py", *bundle.code.files]:
            (Path(folder) / name).parent.mkdir(parents=True, exist_ok=True)
            (Path(folder) / name).write_text(bundle.files[name], encoding="utf-8")
        try:
            done = subprocess.run([sys.executable, "train.py", "--check"], cwd=folder, env=env,
                                  capture_output=True, text=True, errors="replace", timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return CheckResult(None, [diag("DT308", f"the check ran for more than {timeout_s:g} s", None)])
        # The copies go with the folder: the notes show the user's own files.
        sources = {Path(folder).resolve() / name: source for name, source in bundle.code.sources.items()}
    report = json_report(done.stdout)
    if report is not None and isinstance(report.get("frames"), list):
        report["frames"] = [_original(frame, sources) for frame in report["frames"]]
    if report is None:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        cause = lines[-1].strip() if lines else f"exit code {done.returncode}"
        return CheckResult(None, [diag("DT308", f"train.py stopped before it could report: {cause}", None)])
    if report.get("ok"):
        return CheckResult(report, _export_warning(bundle, report))
    return CheckResult(report, [_diagnostic(bundle, report)])


def _export_warning(bundle, report: dict[str, Any]) -> list[Diagnostic]:
    """DT320 when the check could not export the model as `train { export }` asks."""
    if not isinstance(report.get("export_error"), str):
        return []
    bp: Blueprint | None = bundle.blueprint
    model = bundle.ir.train.model
    span = bp and (bp.span("train", "export") or bp.span("model", model, "arch"))
    other = "torchscript" if bundle.ir.train.export == "torch_export" else "torch_export"
    return [diag("DT320", f"model `{model}` cannot be exported with `{bundle.ir.train.export}`: {report['export_error']}", span,
                 f"runs still train and keep final_model.pt; try `export = {other}`, or `export = none`")]


def one_process_env() -> dict[str, str]:
    """This process's environment without a launcher's variables: train.py runs as one process."""
    return {key: value for key, value in os.environ.items() if key not in _LAUNCH_VARIABLES}


def _original(frame: Any, sources: dict[Path, Path]) -> Any:
    """A frame in a bundle's copy of the user's code, moved to the file it was copied from."""
    if not (isinstance(frame, list) and frame and isinstance(frame[0], str)):
        return frame
    path = Path(frame[0])
    for copy, source in sources.items():
        if path.is_relative_to(copy):
            return [str(source / path.relative_to(copy)), *frame[1:]]
    return frame


def json_report(stdout: str) -> dict[str, Any] | None:
    """The last JSON object train.py printed on a line of its own (--check, --evaluate)."""
    for line in reversed(stdout.splitlines()):
        if line.startswith("{"):
            try:
                found = json.loads(line)
            except ValueError:
                continue
            return found if isinstance(found, dict) else None
    return None


# Where each stage's failure points in the blueprint, and how the message starts.
_STAGES = {
    "data": ("loading data `{data}` failed", ("data", "{data}", "source")),
    "model": ("building model `{model}` failed", ("model", "{model}", "arch")),
    "weights": ("starting model `{model}` from its weights failed", ("model", "{model}", "weights")),
    "forward": ("model `{model}` failed on a batch of {batch} samples of {sample_shape}", ("model", "{model}", "arch")),
    "backward": ("the backward pass of model `{model}` failed", ("model", "{model}", "arch")),
}


def _diagnostic(bundle, report: dict[str, Any]) -> Diagnostic:
    bp: Blueprint | None = bundle.blueprint
    model = bundle.ir.train.model
    names = {"model": model, "data": bundle.ir.models[model].input, **report}
    stage, error = report.get("stage"), str(report.get("error", "unknown error"))
    if stage == "output":  # the model's output does not fit the targets: train.py said how to fix it
        return diag("DT300", error, bp.span("model", model, "arch", "output") if bp else None)
    if stage == "weights" and error.startswith("freeze: "):  # a prefix of a python() model's names
        return diag("DT329", error.removeprefix("freeze: "), bp.span("model", model, "freeze") if bp else None,
                    "name a module or parameter of the model, as `named_parameters()` gives them")
    heading, path = _STAGES.get(stage, ("the check failed", ()))
    if stage == "data" and bundle.ir.data[names["data"]].source == "python":
        path = (*path, "callable")
    elif stage == "model" and bundle.ir.models[model].arch == "python":
        path = (*path, "class")
    span = bp.span(*(part.format(**names) for part in path)) if bp and path else None
    frames = [frame for frame in report.get("frames") or [] if isinstance(frame, list) and len(frame) == 3]
    notes = _frame_notes(frames[-_SHOWN_FRAMES:])
    help = None
    if stage == "data" and report.get("explained") and "not found" in error:
        help = "run `dtec check` where the data is, or `dtec run --no-check`"
    elif notes:
        help = "the notes show where in your code (the last is where it failed)"
    return diag("DT308", f"{heading.format(**names)}: {error}", span, help, notes)


def _frame_notes(frames: list[list]) -> list[Related]:
    """The user's frames as notes that show their line of code, outermost first."""
    notes = []
    for path, line, function in frames:
        source = read_source(Path(path), name=_shown(path))
        if isinstance(source, str) or not isinstance(line, int) or not 1 <= line <= source.line_count:
            continue
        start = sum(len(text) + 1 for text in source.text.split("\n")[: line - 1])
        text = source.line_text(line)
        indent = len(text) - len(text.lstrip())
        notes.append(Related(Span(source, start + indent, start + len(text)), f"in `{function}`"))
    return notes


def _shown(path: str) -> str:
    """The path relative to the working folder when it lies below it."""
    try:
        return os.path.relpath(path) if Path(path).resolve().is_relative_to(Path.cwd()) else path
    except (OSError, ValueError):
        return path


def summary(bundle, report: dict[str, Any]) -> list[str]:
    """Lines that say what the check built and ran, against the plan's estimate."""
    ir = bundle.ir
    model = ir.train.model
    data = ir.models[model].input
    estimate = ir.estimate
    mib = 2**20
    lines = [
        f"data     `{data}`: {report['samples']:,} training, {report['val_samples']:,} validation and"
        f" {report.get('test_samples', 0):,} test samples;"
        f" a sample {report['sample_shape']}, its target {report['target_shape']}",
        f"model    `{model}`: {report['parameters']:,} parameters"
        + (f" (estimated {estimate.parameters:,})" if estimate.parameters is not None else ""),
        f"step     forward and backward on {report['batch']} samples: output {report['output_shape']} per sample,"
        f" loss {report['loss']:.4g}, {report['step_s']:.2f} s on the CPU",
        f"memory   weights, gradients and optimizer state {report['state_bytes'] / mib:.1f} MiB (a full fp32 replica);"
        f" the step's peak grew the process by {report['step_rss_growth'] / mib:.1f} MiB",
    ]
    if estimate.total_bytes is not None:
        lines.append(f"         the plan for `{ir.target.name}`: ~{estimate.total_bytes / mib:.1f} MiB per rank"
                     f" ({ir.strategy.kind}, activations ~{(estimate.activation_bytes or 0) / mib:.1f} MiB)")
    return lines
