"""Run dtec's benchmark suite: results as JSON, a markdown summary and PNG plots.

    python -m benchmarks.run                      # everything (about 30-40 minutes on 2 cores)
    python -m benchmarks.run --quick              # small sizes, a few minutes: does it all work?
    python -m benchmarks.run --only growth,lint   # some benchmarks (merged into earlier results)
    python -m benchmarks.run --publish            # also copy the results to docs/benchmarks/
    python -m benchmarks.run --report --publish   # only rewrite results.md and the plots

Benchmarks: compile (in-process per blueprint and target; whole processes next to
`python -c pass`), lint (1,000 generated blueprints in one process), growth (compile time against
blueprint size, fitted exponent), training (generated train.py against hand-written loops, DDP,
FSDP, DeepSpeed ZeRO-1/2/3, and the instrumentation's cost), stopflag (the per-step pre-emption
check timed alone), data (the generated Zarr loader against a hand-written xarray one, and lint
of a Zarr blueprint against a synthetic one), profile (import times and cProfile
of the lint and compile paths), sweep (a worker's own cost per trial early and late in a study,
apart from Optuna's ask and tell, against what `dtec run` does before training), sweep_efficiency
(a real local sweep through `dtec run`: sum of trial training times / (wall x parallel), and trial
start -> first step against `dtec run` alone), completion
(`dtec lsp` completion latency through a real LSP client), lsp (`dtec lsp` through an LSP client:
didChange to diagnostics on a 500-line blueprint, start to first diagnostics), report_time (`dtec
report` on a synthetic scaling study of 8 points x 1,000 steps), phases (a scaling study's
per-phase instrumentation against a plain step, side by side on 2 ranks). The GPU comparison
is `benchmarks/gpu.sh`.

Output: DIR/results.json (default benchmarks/results/, which git ignores), DIR/results.md, DIR/*.png.
"""

from __future__ import annotations

import argparse
import os
import json
import shutil
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # `python benchmarks/run.py`
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from benchmarks import (  # noqa: E402
    compile_latency,
    data_loader,
    growth,
    lint_throughput,
    lsp_completion,
    lsp_latency,
    metrics,
    phase_overhead,
    profiles,
    report,
    report_time,
    stop_flag,
    sweep_efficiency,
    sweep_overhead,
    training,
)
from benchmarks.common import ROOT, log, machine  # noqa: E402

# name: (module, full sizes, quick sizes)
BENCHMARKS = {
    "compile": (compile_latency, {}, {"repeat": 5, "rounds": 3}),
    "lint": (lint_throughput, {}, {"count": 100, "repeat": 2}),
    "growth": (growth, {}, {"sizes": (10, 100, 1000), "budget": 0.5}),
    "training": (training, {}, {"rounds": 1, "warmup": 10, "steps": 30}),
    "stopflag": (stop_flag, {}, {"rounds": 1, "iterations": 300}),
    "metrics": (metrics, {}, {"rounds": 2, "steps": 3}),
    "data": (data_loader, {}, {"steps": 8192, "cells": 32, "rounds": 1, "batches": 5, "workers": (0,), "lint_rounds": 2}),
    "profile": (profiles, {}, {"lint_count": 100, "compile_repeat": 10}),
    "sweep": (sweep_overhead, {}, {"trials": 20, "window": 5}),
    "sweep_efficiency": (sweep_efficiency, {}, {"trials": 4, "epochs": 2, "plain": 1}),
    "completion": (lsp_completion, {}, {"rounds": 5}),
    "lsp": (lsp_latency, {}, {"edits": 10, "starts": 2}),
    "report_time": (report_time, {}, {"rounds": 2, "processes": 1}),
    "phases": (phase_overhead, {}, {"rounds": 4, "steps": 5, "warmup": 4}),
}
DOCS = ROOT / "docs" / "benchmarks"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="small sizes: minutes, not half an hour"
    )
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="NAME[,NAME]",
        help=f"run only these ({', '.join(BENCHMARKS)})",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument(
        "--fresh", action="store_true", help="do not merge into an earlier results.json"
    )
    parser.add_argument(
        "--strategies", help="training: comma-separated subset of " + ",".join(training.STRATEGIES)
    )
    parser.add_argument("--rounds", type=int, help="training: rounds (default 5; --quick 1)")
    parser.add_argument(
        "--report", action="store_true", help="run nothing: rewrite results.md and the plots"
    )
    parser.add_argument(
        "--publish", action="store_true", help=f"copy the results into {DOCS.relative_to(ROOT)}/"
    )
    args = parser.parse_args(argv)

    names = [n for item in args.only for n in item.split(",") if n] or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        parser.error(
            f"unknown benchmark(s): {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    results_path = args.out / "results.json"
    results = {"benchmarks": {}}
    if results_path.exists() and not args.fresh:
        results = json.loads(results_path.read_text())
    if not args.report:
        results["machine"] = machine()
    for name in [] if args.report else names:
        module, full, quick = BENCHMARKS[name]
        options = dict(quick if args.quick else full)
        if name == "training":
            if args.strategies:
                options["strategies"] = args.strategies.split(",")
            if args.rounds:
                options["rounds"] = args.rounds
        if name == "stopflag":
            ddp = results["benchmarks"].get("training", {}).get("strategies", {}).get("ddp")
            if ddp:  # the generated DDP step's CPU time (all ranks), to express the check's share
                options["step_ms"] = ddp["cpu_ms_per_step"]["dtec"]["median"]
        started = time.time()
        outcome = module.run(args.out / "work" / name, **options)
        outcome["meta"] = {
            "quick": args.quick,
            "options": {k: list(v) if isinstance(v, tuple) else v for k, v in options.items()},
            "seconds": round(time.time() - started, 1),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "git_commit": results["machine"]["git_commit"],
            "load_average_after": results["machine"]["load_average"] and list(os.getloadavg()),
        }
        results["benchmarks"][name] = outcome
        results_path.write_text(
            json.dumps(results, indent=1) + "\n"
        )  # after each, in case a later one fails
        log(f"{name}: done in {outcome['meta']['seconds']} s")
    shutil.rmtree(args.out / "work", ignore_errors=True)
    (args.out / "results.md").write_text(report.markdown(results))
    pictures = report.plots(results, args.out)
    log(
        f"wrote {results_path}, {args.out / 'results.md'}"
        + "".join(f", {p.name}" for p in pictures)
    )
    print(report.markdown(results))
    if args.publish:
        DOCS.mkdir(parents=True, exist_ok=True)
        for path in [results_path, args.out / "results.md", *pictures]:
            shutil.copy2(path, DOCS / path.name)
        log(f"copied into {DOCS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
