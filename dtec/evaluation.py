"""`dtec evaluate`: a finished run's model scored on its test split, or on another data file.

The run's own `train.py --evaluate` does the scoring (the same evaluate() as at the end of the
run), in one process; here the run, the weights and `--data` are checked first, each failure a
coded diagnostic at the argument at fault, and the result is kept in a new file of the run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dtec.diagnostics import Diagnostic, diag
from dtec.lang.datafiles import DataFileError, csv_sample, npz_arrays
from dtec.preflight import json_report, one_process_env
from dtec.runs import Run, RunError, _read_json, find
from dtec.source import argument_span

TIMEOUT_S = 3600
FOLDER = "evaluations"  # in the run's outputs, beside summary.json
# The weights each --checkpoint name stands for, in the run's outputs.
WEIGHTS = {"final": "final_model.pt", "best": "checkpoints/best.pt"}


@dataclass(frozen=True)
class Evaluation:
    """The metrics of one evaluation and the file that keeps them, or why there are none."""

    result: dict[str, Any] | None = None
    file: Path | None = None
    diagnostics: list[Diagnostic] = field(default_factory=list)


def evaluate_run(ref: str, *, data: str | None = None, checkpoint: str = "final",
                 timeout_s: float = TIMEOUT_S) -> Evaluation:
    """Score the run `ref` names with `checkpoint`'s weights on its test split or on `data`."""
    try:
        run = find(ref)
    except RunError as exc:
        return _refused(str(exc), argument_span("", ref), "name a run folder, a run id or `latest`")
    summary = run.summary()
    status = summary.get("status") if isinstance(summary, dict) else None
    if status != "completed":
        shown = f"its status is {status}" if status else "it has not finished (no run/summary.json)"
        return _refused(f"run {run.id} has no trained model to evaluate: {shown}", argument_span("", ref),
                        f"wait for it (`dtec status {run.id}`), or resume it: `{run.resume_command()}`")
    weights = run.outputs / WEIGHTS[checkpoint] if checkpoint in WEIGHTS else Path(checkpoint)
    if not weights.is_file():
        help = "the run kept no best checkpoint: `train { checkpoint = { best = ... } }`" if checkpoint == "best" else None
        return _refused(f"no weights at {weights}", argument_span("--checkpoint", checkpoint), help or "name a weights file")
    ir = _read_json(run.folder / "ir.json") or {}
    source = _data_of(ir)
    if data is not None:
        found = check_data(source, data)
        if found:
            return Evaluation(diagnostics=found)
    elif source.get("source") != "python" and not (source.get("split") or {}).get("test"):
        return _refused(f"run {run.id} has no test split (`split.test` is 0)", argument_span("", ref),
                        "evaluate it on a data file with `--data PATH`, or train with `split = { ..., test = 0.1 }`")
    command = [sys.executable, "train.py", "--evaluate", "--run-dir", str(run.outputs.resolve()),
               "--checkpoint", str(weights.resolve())]
    command += ["--data", str(Path(data).resolve())] if data is not None else []
    at = argument_span("--data", data) if data is not None else argument_span("", ref)
    try:
        done = subprocess.run(command, cwd=run.folder, env=_environ(run, ir), capture_output=True, text=True,
                              errors="replace", timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return _refused(f"the evaluation ran for more than {timeout_s:g} s", at, None)
    report = json_report(done.stdout)
    if report is None or not report.get("ok"):
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        cause = (report or {}).get("error") or (lines[-1].strip() if lines else f"exit code {done.returncode}")
        return _refused(f"the evaluation of run {run.id} failed: {cause}", at, None)
    result = {
        "run": run.id,
        "checkpoint": checkpoint,
        "weights": str(weights),
        "data": str(data) if data is not None else "test split",
        "samples": report.get("samples"),
        "metrics": report.get("metrics", {}),
        "at": time.time(),
    }
    return Evaluation(result, keep(run, result))


def check_data(source: dict[str, Any], data: str) -> list[Diagnostic]:
    """`--data` is a file of the kind the run's source reads, with the same arrays or columns and shapes."""
    span = argument_span("--data", data)
    kind, options = source.get("source"), source.get("options") or {}
    if kind not in ("npz", "csv"):
        return [diag("DT321", f"data `{source.get('name')}` is {kind}: it is not read from a file, so --data cannot stand for it",
                      span, "leave out --data: the run's test split is scored")]
    path = Path(data)
    if not path.is_file():
        return [diag("DT302", f"data file not found: {data}", span, "name an existing file")]
    try:
        if kind == "npz":
            return _check_npz(options, source.get("sample_shape"), path, span)
        return _check_csv(options, path, span)
    except DataFileError as exc:
        return [diag("DT303", f"`{data}`: {exc}", span, f"give a {kind} file like the run's data")]


def _check_npz(options: dict, shape: list[int] | None, path: Path, span) -> list[Diagnostic]:
    x, y = options.get("x", "x"), options.get("y", "y")
    names, arrays = npz_arrays(path, (x, y))
    missing = [name for name in (x, y) if name not in arrays]
    if missing:
        return [diag("DT304", f"`{path}` has no array `{missing[0]}`; it holds {', '.join(names) or 'none'}", span,
                     f"the run reads arrays `{x}` (inputs) and `{y}` (targets)")]
    ax, ay = arrays[x], arrays[y]
    if not ax.shape or not ay.shape or ax.shape[0] != ay.shape[0]:
        return [diag("DT305", f"`{path}` has {ax.shape[:1]} samples in `{x}` but {ay.shape[:1]} in `{y}`", span, None)]
    if shape is not None and list(ax.shape[1:]) != list(shape):
        return [diag("DT305", f"the samples of `{x}` in `{path}` have shape {list(ax.shape[1:])}, but the run trained on {shape}",
                     span, "give samples of the run's shape")]
    return []


def _check_csv(options: dict, path: Path, span) -> list[Diagnostic]:
    header, _ = csv_sample(path)
    features = options.get("features")
    wanted = [options.get("target"), *(features if isinstance(features, list) else [])]
    missing = [name for name in wanted if name not in header]
    if missing:
        return [diag("DT304", f"`{path}` has no column `{missing[0]}`; its columns are {', '.join(header)}", span,
                     "give a table with the run's columns")]
    if isinstance(features, int) and len(header) - 1 != features:
        return [diag("DT305", f"`{path}` has {len(header) - 1} columns besides the target, but the run trained on {features}",
                     span, None)]
    return []


def keep(run: Run, result: dict[str, Any]) -> Path:
    """Write `result` to a new run/evaluations/evaluation-NNN.json: never over an earlier one."""
    folder = run.outputs / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    text = json.dumps(result, indent=2) + "\n"
    number = len(list(folder.glob("evaluation-*.json"))) + 1
    while True:
        path = folder / f"evaluation-{number:03d}.json"
        try:
            handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            number += 1
            continue
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        return path


def metric_rows(result: dict[str, Any]) -> list[tuple[str, str]]:
    """The result as (key, value) lines for the terminal."""
    rows = [("run", str(result["run"])), ("weights", str(result["weights"])),
            ("data", f"{result['data']} ({result['samples']} samples)")]
    return rows + [(name, f"{value:.6g}") for name, value in result["metrics"].items()]


def _refused(message: str, span, help: str | None) -> Evaluation:
    return Evaluation(diagnostics=[diag("DT321", message, span, help)])


def _data_of(ir: dict[str, Any]) -> dict[str, Any]:
    """The IR's record of the data set the trained model reads."""
    try:
        return ir["data"][ir["models"][ir["train"]["model"]]["input"]]
    except (KeyError, TypeError):
        return {}


def _environ(run: Run, ir: dict[str, Any]) -> dict[str, str]:
    """One process; relative data paths from the data root the run had (as the launcher sets it)."""
    env = one_process_env()
    root = (ir.get("target") or {}).get("data_root")
    blueprint = (run.record.get("blueprint") or {}).get("path")
    if "DTEC_DATA_ROOT" not in env and (root or blueprint):
        env["DTEC_DATA_ROOT"] = root or str(Path(blueprint).parent)
    return env
