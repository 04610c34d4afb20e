"""Smoke test of benchmarks/: every benchmark runs at tiny sizes and gives well-formed results.

No timing is asserted here (the machine running the tests may be busy); the numbers themselves are
`python -m benchmarks.run`'s business (docs/benchmarks.md).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

# benchmarks/ is not part of the wheel; CI runs pytest with `python -P` and importlib mode, so the
# checkout is not on sys.path. conftest.py has imported the installed dtec already, so adding the
# checkout here cannot shadow it.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import compile_latency, growth, lint_throughput, profiles, report, sweep_overhead, training
from benchmarks.blueprint_gen import SERIES, realistic, shipped
from benchmarks.common import fit_exponent, summary


def number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_targets(result: dict) -> None:
    for t in result["targets"]:
        assert set(t) == {"name", "value", "limit", "unit", "better", "met", "note"}
        assert t["value"] is None or number(t["value"])
        assert t["met"] in (True, False, None)
    json.dumps(result)  # serialisable, as results.json needs


def check_summary(s: dict, n: int | None = None) -> None:
    assert number(s["median"]) and s["min"] <= s["median"] <= s["max"]
    if n is not None:
        assert s["n"] == n


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict:
    """The cheap benchmarks at tiny sizes, shared by the tests below."""
    tmp = tmp_path_factory.mktemp("bench")
    return {
        "compile": compile_latency.run(tmp / "compile", repeat=1, rounds=1),
        "lint": lint_throughput.run(tmp / "lint", count=12, repeat=1),
        "growth": growth.run(
            tmp / "growth", sizes=(1, 4, 16), budget=0.0, min_repeat=1, max_repeat=1
        ),
        "profile": profiles.run(tmp / "profile", lint_count=3, compile_repeat=1, top=5),
    }


def test_helpers() -> None:
    assert summary([3.0, 1.0, 2.0]) == {"median": 2.0, "min": 1.0, "max": 3.0, "mean": 2.0, "n": 3}
    assert summary([])["median"] is None
    assert fit_exponent([10, 100, 1000], [1e-3, 1e-2, 1e-1]) == pytest.approx(1.0)
    assert fit_exponent([10, 100], [1e-3, 1e-1]) == pytest.approx(2.0)


def test_generated_blueprints_are_clean(tmp_path: Path) -> None:
    from dtec.analysis import analyse

    paths = realistic(len(shipped()) * 2, tmp_path)
    assert all(analyse(p).ok for p in paths)
    for make in SERIES.values():
        assert analyse(Path("g.twin"), make(3), environ={}).ok


def test_compile_latency(results: dict) -> None:
    r = results["compile"]
    check_targets(r)
    rows = r["in_process"]["rows"]
    assert {row["blueprint"] for row in rows} == {p.name for p in shipped()}
    quick = [
        row for row in rows if row["blueprint"] == "quickstart.twin" and row["target"] == "local"
    ]
    assert quick and quick[0]["compiled"]
    for row in rows:
        check_summary(row["ms"], 1)
    assert all("median" in s for s in r["phases"].values())
    assert r["processes"]["failures"] == {}
    assert "python -c pass" in r["processes"]["seconds"]
    assert r["check"]["failure"] is None
    check_summary(r["check"]["seconds"], 1)


def test_lint_throughput(results: dict) -> None:
    r = results["lint"]
    check_targets(r)
    assert r["blueprints"] == 12 and r["files_with_errors"] == 0
    assert r["process_exit_codes"] == [0]
    check_summary(r["in_process_seconds"], 1)
    check_summary(r["process_seconds"], 1)
    check_summary(r["process_one_job_seconds"], 1)


def test_growth(results: dict) -> None:
    r = results["growth"]
    check_targets(r)
    assert set(r["series"]) == set(SERIES)
    for s in r["series"].values():
        assert [row["n"] for row in s["rows"]] == [1, 4, 16]
        assert number(s["exponent_marginal"]) and number(s["exponent_last_decade"])
        assert number(s["fmt_exponent_marginal"]) and number(s["fmt_exponent_last_decade"])
        for row in s["rows"]:
            check_summary(row["fmt_ms"], 1)


def test_profiles(results: dict) -> None:
    r = results["profile"]
    assert r["imports"]["modules"] > 0 and r["imports"]["top_level_cumulative"]
    assert any(m["module"].startswith("dtec") for m in r["imports"]["top_level_cumulative"])
    for key in ("lint", "compile"):
        assert r[key]["by_tottime"] and all(
            number(row["tottime_s"]) for row in r[key]["by_tottime"]
        )


def test_report(results: dict, tmp_path: Path) -> None:
    whole = {"machine": {"cpus": 2}, "benchmarks": results}
    text = report.markdown(whole)
    assert "## Targets" in text and "## Growth" in text and "## Lint throughput" in text
    pytest.importorskip("matplotlib")
    written = report.plots(whole, tmp_path)
    assert {p.name for p in written} == {"growth.png", "compile_latency.png"}
    assert all(p.stat().st_size > 1000 for p in written)


def check_training(r: dict, strategies: list[str]) -> None:
    check_targets(r)
    assert list(r["strategies"]) == strategies
    for e in r["strategies"].values():
        for how in ("value", "window", "cpu"):
            check_summary(e["ratio"][how], 1)
        for variant in e["variants"]:
            check_summary(e["samples_per_s"][variant], 1)
        check_summary(e["per_epoch_seconds"]["save_checkpoint"], 1)
        # The hand-written loop and the generated script trained the same model on the same data.
        assert e["max_weight_difference"] is not None


@pytest.mark.slow
def test_training_ddp(tmp_path: Path) -> None:
    r = training.run(tmp_path, strategies=["ddp"], rounds=1, warmup=2, steps=4, interleave=2)
    check_training(r, ["ddp"])
    e = r["strategies"]["ddp"]
    assert e["max_weight_difference"] == 0.0  # DDP in fp32: the same bits
    assert e["variants"] == ["hand", "dtec", "quiet", "bare", "hand-b", "hand-glibc"]
    for key in ("control", "dtec_vs_bare", "dtec_vs_quiet", "quiet_vs_bare", "malloc"):
        check_summary(e[key]["value"], 1)
    assert not (tmp_path / "runs").exists()
    text = report.markdown({"benchmarks": {"training": r}})
    assert "| ddp |" in text


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["fsdp", "zero3"])
def test_training_fsdp_deepspeed(tmp_path: Path, strategy: str) -> None:
    if strategy.startswith("zero"):
        pytest.importorskip("deepspeed")
    r = training.run(tmp_path, strategies=[strategy], rounds=1, warmup=2, steps=2, interleave=None)
    check_training(r, [strategy])
    assert r["strategies"][strategy]["max_weight_difference"] < 1e-4


@pytest.mark.slow
def test_gpu_script_dry_run(tmp_path: Path) -> None:
    """benchmarks/gpu.py's logic at toy sizes on the CPU (single process, fp32)."""
    from benchmarks import gpu

    r = gpu.run(tmp_path, size="dry-run", rounds=1, warmup=2, steps=2, ranks=1)
    check_training(r, ["single"])
    assert r["flops"]["flops_per_sample"] > 0 and r["flops"]["parameters"] > 0
    assert r["mfu_dtec"] is None or number(r["mfu_dtec"])


@pytest.mark.slow
def test_stop_flag(tmp_path: Path) -> None:
    from benchmarks import stop_flag

    r = stop_flag.run(tmp_path, rounds=1, iterations=20, step_ms=40.0)
    check_targets(r)
    check_summary(r["wall_us_per_call"], 1)
    assert r["check_every"] == 10
    assert number(r["cpu_share_of_step"])
    assert "pre-emption check" in report.markdown({"benchmarks": {"stopflag": r}})


@pytest.mark.slow
def test_metrics_tracking(tmp_path: Path) -> None:
    from benchmarks import metrics

    r = metrics.run(tmp_path, rounds=1, steps=2)
    check_targets(r)
    assert r["steps_per_epoch"] > 0 and number(r["share"]) and number(r["best_save_ms"]["median"])


@pytest.mark.slow
def test_data_loader(tmp_path: Path) -> None:
    from benchmarks import data_loader

    r = data_loader.run(tmp_path, steps=8192, cells=8, rounds=1, batches=2, workers=(0,), lint_rounds=1)
    check_targets(r)
    assert [(x["stride"], x["samples"]) for x in r["loaders"]] == [(1, 128), (64, 128)]
    assert all(number(x["ratio"]["median"]) for x in r["loaders"]) and number(r["lint"]["extra_s"]["median"])
    assert "Array data" in report.markdown({"benchmarks": {"data": r}})


def test_sweep_overhead(tmp_path: Path) -> None:
    r = sweep_overhead.run(tmp_path, trials=5, window=2)
    check_targets(r)
    for end in ("first", "last"):
        for part in ("dtec", "next_trial", "compile_trial", "ask", "tell", "dtec run"):
            check_summary(r["ms"][end][part], 2)
        assert r["ratio"][end] == r["ms"][end]["dtec"]["median"] / r["ms"][end]["dtec run"]["median"]
    assert r["growth"] == r["ratio"]["last"] / r["ratio"]["first"]
    # The trials went through the worker's own path: each compiled into its run folder and recorded.
    [study] = tmp_path.glob("dtec-bench-sweep-*/study")
    assert len(list(study.glob("trial-*/train.py"))) == 5 and len(list(study.glob("trial-*/run/run.json"))) == 5


def test_lsp_completion(tmp_path: Path) -> None:
    from benchmarks import lsp_completion

    r = lsp_completion.run(tmp_path, blocks=3, rounds=1)
    check_targets(r)
    assert set(r["ms"]) == set(lsp_completion.POSITIONS)
    for values in r["ms"].values():
        check_summary(values, 1)


def test_lsp_latency(tmp_path: Path) -> None:
    from benchmarks import lsp_latency

    r = lsp_latency.run(tmp_path, lines=100, edits=2, starts=1)
    check_targets(r)
    assert 90 <= r["lines"] <= 100 and r["diagnostics"] > 0  # the extra data blocks are unused (DT115)
    check_summary(r["change_ms"], 2)
    check_summary(r["start_seconds"], 1)
    check_summary(r["analysis_cpu_ms"], 3)


def test_sweep_efficiency(tmp_path: Path) -> None:
    from benchmarks import sweep_efficiency

    r = sweep_efficiency.run(tmp_path, trials=2, samples=64, epochs=1, plain=1)
    check_targets(r)
    # Every trial of the real sweep completed and was read from its own run records.
    assert [row["trial"] for row in r["rows"]] == [0, 1] and {row["state"] for row in r["rows"]} == {"COMPLETE"}
    for row in r["rows"] + r["alone"]:
        assert number(row["training_s"]) and row["training_s"] > 0 and number(row["start_to_first_step_s"])
    assert len(r["alone"]) == 1 and number(r["alone"][0]["wall_s"])
    assert r["efficiency"] == sum(row["training_s"] for row in r["rows"]) / (r["wall_s"] * 2)
    for part in ("sweep trial", "dtec run"):
        check_summary(r["startup_s"][part], 2 if part == "sweep trial" else 1)
        check_summary(r["training_s"][part], 2 if part == "sweep trial" else 1)
    [study] = tmp_path.glob("dtec-bench-efficiency-*/runs/flood/local/sweep-*")
    assert len(list(study.glob("trial-*/run/summary.json"))) == 2


def test_report_time(tmp_path: Path) -> None:
    from benchmarks import report_time

    r = report_time.run(tmp_path, points=2, steps=20, rounds=1, processes=1)
    check_targets(r)
    assert (r["points"], r["steps"]) == (2, 20) and r["process_failures"] == []
    assert {"report.html", "report.json", "points.csv", "scaling.png"} <= set(r["report_files"])
    check_summary(r["in_process_seconds"], 1)
    check_summary(r["in_process_cpu_seconds"], 1)
    check_summary(r["process_seconds"], 1)
    # The synthetic study reads as a real one: both points, every step's loss.
    data = json.loads((tmp_path / "report" / "report.json").read_text())
    assert [p["ranks"] for p in data["points"]] == [1, 2] and data["mode"] == "strong"
    assert data["points"][1]["comm_share"] > 0 and data["points"][0]["comm_share"] == 0


@pytest.mark.slow
def test_phase_overhead(tmp_path: Path) -> None:
    from benchmarks import phase_overhead

    r = phase_overhead.run(tmp_path, rounds=2, steps=3, warmup=4)
    check_targets(r)
    assert r["comm_method"] == "ddp-hook" and r["measured_steps"] == 2 * 3
    for key in ("plain_step_ms", "phased_step_ms", "extra_ms", "ratio", "cpu_ratio"):
        check_summary(r[key], 2)
    assert number(r["share"]) and number(r["fastest_ratio"]) and number(r["calls_alone_us"]) and r["calls_alone_us"] > 0
    # The phases tile the measured steps: their sum is a step's time, not a fraction of it.
    assert 0.5 * r["phased_step_ms"]["min"] < r["phase_sum_ms"] < 2 * r["phased_step_ms"]["max"]
