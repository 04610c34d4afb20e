"""Growth: in-process compile and `fmt` time against blueprint size, with the fitted exponents.

Two series, each the quickstart plus N elements: `blocks` (N extra `data` blocks of three
attributes; each is unused, so each also gets its DT115 warning) and `attributes` (N entries in
the `env` map of a `target "local"` block, which reach `run.sh`; for `fmt`, one aligned run of
one-line attributes). Time is t(N) = t0 + c * N**k; the exponent k is fitted to the marginal time
t(N) - t(0) over the sizes (log-log least squares), and the local slope between the two largest
sizes is reported next to it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks.blueprint_gen import SERIES
from benchmarks.common import fit_exponent, log, summary, target


def _repeat(
    step: Callable[[], object], budget: float, min_repeat: int, max_repeat: int
) -> list[float]:
    """Time `step` at least `min_repeat` times, and on until `budget` seconds or `max_repeat`."""
    times: list[float] = []
    spent = 0.0
    while len(times) < min_repeat or (spent < budget and len(times) < max_repeat):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
        spent += times[-1]
    return times


def _time(text: str, budget: float, min_repeat: int, max_repeat: int) -> tuple[list[float], int]:
    from dtec.compiler import compile_blueprint

    path = Path("growth.twin")
    bundle, diagnostics = compile_blueprint(path, "local", text=text, environ={})  # warm-up
    if bundle is None:
        codes = sorted({d.code for d in diagnostics})
        raise RuntimeError(f"a growth blueprint does not compile: {codes}")
    times = _repeat(
        lambda: compile_blueprint(path, "local", text=text, environ={}),
        budget,
        min_repeat,
        max_repeat,
    )
    return times, len(diagnostics)


def _time_fmt(text: str, budget: float, min_repeat: int, max_repeat: int) -> list[float]:
    from dtec.format import format_source
    from dtec.source import Source

    source = Source("growth.twin", text)
    if format_source(source)[0] is None:  # warm-up
        raise RuntimeError("a growth blueprint does not format")
    return _repeat(lambda: format_source(source), budget, min_repeat, max_repeat)


def run(
    out: Path,
    *,
    sizes: tuple[int, ...] = (10, 100, 1000, 10000),
    budget: float = 3.0,
    min_repeat: int = 3,
    max_repeat: int = 50,
) -> dict:
    log(f"growth: sizes {sizes}")
    result: dict = {"sizes": list(sizes), "series": {}}
    base_times, _ = _time(SERIES["blocks"](0), budget, min_repeat, max_repeat)
    base = summary(base_times)["median"]
    result["base_ms"] = 1000 * base
    fmt_base = summary(_time_fmt(SERIES["blocks"](0), budget, min_repeat, max_repeat))["median"]
    result["fmt_base_ms"] = 1000 * fmt_base
    for name, make in SERIES.items():
        rows = []
        for n in sizes:
            text = make(n)
            times, diagnostics = _time(text, budget, min_repeat, max_repeat)
            fmt_times = _time_fmt(text, budget, min_repeat, max_repeat)
            s = summary(times)
            rows.append(
                {
                    "n": n,
                    "lines": text.count("\n"),
                    "bytes": len(text),
                    "ms": summary([1000 * t for t in times]),
                    "diagnostics": diagnostics,
                    "us_per_element": 1e6 * (s["median"] - base) / n,
                    "fmt_ms": summary([1000 * t for t in fmt_times]),
                }
            )
        result["series"][name] = {"rows": rows}
        for prefix, key, t0 in (("", "ms", base), ("fmt_", "fmt_ms", fmt_base)):
            medians = [r[key]["median"] / 1000 for r in rows]
            result["series"][name].update(_exponents(prefix, sizes, medians, t0))
    result["targets"] = [
        target(
            f"growth exponent{what}, {name} (marginal fit; last decade)",
            s[f"{prefix}exponent_marginal"],
            1.1,
            "",
            note=f"last decade {s[f'{prefix}exponent_last_decade']:.2f}"
            if s[f"{prefix}exponent_last_decade"] is not None
            else "",
        )
        for prefix, what in (("", ""), ("fmt_", " of fmt"))
        for name, s in result["series"].items()
    ]
    return result


def _exponents(prefix: str, sizes: tuple[int, ...], medians: list[float], base: float) -> dict:
    """Fit t(N) - t(0) and t(N) over the sizes, and the slope between the two largest sizes."""
    marginal = [max(m - base, 1e-9) for m in medians]
    local = None
    if len(sizes) >= 2 and medians[-2] > 0:
        local = math.log(medians[-1] / medians[-2]) / math.log(sizes[-1] / sizes[-2])
    return {
        f"{prefix}exponent_marginal": fit_exponent(sizes, marginal),
        f"{prefix}exponent_raw": fit_exponent(sizes, medians),
        f"{prefix}exponent_last_decade": local,
    }
