"""Growth: in-process compile time against blueprint size, with the fitted exponent.

Two series, each the quickstart plus N elements: `blocks` (N extra `data` blocks of three
attributes; each is unused, so each also gets its DT115 warning) and `attributes` (N entries in
the `env` map of a `target "local"` block, which reach `run.sh`). Time is t(N) = t0 + c * N**k;
the exponent k is fitted to the marginal time t(N) - t(0) over the sizes (log-log least squares),
and the local slope between the two largest sizes is reported next to it.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

from benchmarks.blueprint_gen import SERIES
from benchmarks.common import fit_exponent, log, summary, target


def _time(text: str, budget: float, min_repeat: int, max_repeat: int) -> tuple[list[float], int]:
    from dtec.compiler import compile_blueprint

    path = Path("growth.twin")
    bundle, diagnostics = compile_blueprint(path, "local", text=text, environ={})  # warm-up
    if bundle is None:
        codes = sorted({d.code for d in diagnostics})
        raise RuntimeError(f"a growth blueprint does not compile: {codes}")
    times: list[float] = []
    spent = 0.0
    while len(times) < min_repeat or (spent < budget and len(times) < max_repeat):
        start = time.perf_counter()
        compile_blueprint(path, "local", text=text, environ={})
        times.append(time.perf_counter() - start)
        spent += times[-1]
    return times, len(diagnostics)


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
    for name, make in SERIES.items():
        rows = []
        for n in sizes:
            text = make(n)
            times, diagnostics = _time(text, budget, min_repeat, max_repeat)
            s = summary(times)
            rows.append(
                {
                    "n": n,
                    "lines": text.count("\n"),
                    "bytes": len(text),
                    "ms": summary([1000 * t for t in times]),
                    "diagnostics": diagnostics,
                    "us_per_element": 1e6 * (s["median"] - base) / n,
                }
            )
        medians = [r["ms"]["median"] / 1000 for r in rows]
        marginal = [max(m - base, 1e-9) for m in medians]
        local = None
        if len(sizes) >= 2 and medians[-2] > 0:
            local = math.log(medians[-1] / medians[-2]) / math.log(sizes[-1] / sizes[-2])
        result["series"][name] = {
            "rows": rows,
            "exponent_marginal": fit_exponent(sizes, marginal),
            "exponent_raw": fit_exponent(sizes, medians),
            "exponent_last_decade": local,
        }
    result["targets"] = [
        target(
            f"growth exponent, {name} (marginal fit; last decade)",
            s["exponent_marginal"],
            1.1,
            "",
            note=f"last decade {s['exponent_last_decade']:.2f}"
            if s["exponent_last_decade"] is not None
            else "",
        )
        for name, s in result["series"].items()
    ]
    return result
