"""results.json to a markdown summary and PNG plots (matplotlib, optional)."""

from __future__ import annotations

from pathlib import Path

from benchmarks.common import log


def _f(value, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _range(s: dict | None, digits: int = 3, scale: float = 1.0) -> str:
    if not s or s.get("median") is None:
        return "–"
    return f"{s['median'] * scale:.{digits}f} ({s['min'] * scale:.{digits}f}–{s['max'] * scale:.{digits}f})"


def targets_table(results: dict) -> list[str]:
    lines = ["| target | measured | limit | met | spread / note |", "|---|---|---|---|---|"]
    for bench in results.get("benchmarks", {}).values():
        for t in bench.get("targets", []):
            sign = "≤" if t["better"] == "lower" else "≥"
            unit = f" {t['unit']}" if t["unit"] and t["unit"] not in ("ratio", "fraction") else ""
            met = {True: "**met**", False: "**missed**", None: "–"}[t["met"]]
            lines.append(
                f"| {t['name']} | {_f(t['value'])}{unit} | {sign} {t['limit']}{unit} | {met} | {t['note']} |"
            )
    return lines


def markdown(results: dict) -> str:
    out = ["# dtec benchmark results", ""]
    m = results.get("machine", {})
    out += [
        f"Machine: {m.get('processor')}, {m.get('cpus')} CPUs, {m.get('memory_gib')} GiB; Python {m.get('python')}, "
        f"torch {m.get('torch')}, deepspeed {m.get('deepspeed')}; commit {str(m.get('git_commit'))[:10]}"
        f"{' (dtec/backends/grammars modified)' if m.get('git_dirty') else ''}; load average at start "
        f"{', '.join(f'{x:.1f}' for x in m.get('load_average') or [])}.",
        "",
        "## Targets",
        "",
        *targets_table(results),
        "",
    ]
    b = results.get("benchmarks", {})
    if "training" in b:
        t = b["training"]
        w = t["workload"]
        out += [
            "## Generated training against hand-written loops",
            "",
            f"Workload: `{w['blueprint']}` with {', '.join(f'`--set {s}`' for s in w['sets'])}; {w['ranks']} ranks, "
            f"{w['measured_steps']} steps measured after {w['warmup_steps']} warm-up steps, {w['rounds']} alternated rounds. "
            "Each figure: median over rounds (min–max). *Paired*: per round, the median over chunks of "
            "the time ratio of two variants' K-step chunks run back to back; *window*: ratio of the "
            "whole windows' throughputs; *CPU*: ratio of CPU seconds per step (all ranks).",
            "",
            "| strategy | hand-written samples/s | generated samples/s | generated / hand-written, paired "
            "| window | CPU | max \\|Δw\\| |",
            "|---|---|---|---|---|---|---|",
        ]
        for name, e in t["strategies"].items():
            dw = e["max_weight_difference"]
            out.append(
                f"| {name} | {_range(e['samples_per_s']['hand'], 0)} | "
                f"{_range(e['samples_per_s']['dtec'], 0)} | **{_range(e['ratio']['value'])}** | "
                f"{_range(e['ratio']['window'])} | {_range(e['ratio']['cpu'])} | "
                f"{'–' if dw is None else f'{dw:.2g}'} |"
            )
        rows = [(n, e) for n, e in t["strategies"].items() if "dtec_vs_bare" in e or "control" in e]
        if rows:
            out += [
                "",
                "Controls and instrumentation (throughput ratios; paired / window / CPU, each the "
                "median over rounds):",
                "",
                "| strategy | comparison | paired | window | CPU |",
                "|---|---|---|---|---|",
            ]
            labels = {
                "control": "A/A: hand-written / the same hand-written (noise, bias)",
                "dtec_vs_bare": "generated / generated without instrumentation (bare)",
                "dtec_vs_quiet": "generated / generated with timing, energy, log steps off (quiet)",
                "quiet_vs_bare": "quiet / bare: the per-step stop-flag all-reduce",
                "bare_vs_hand": "bare generated / hand-written",
                "malloc": "hand-written, fixed malloc thresholds / glibc default",
            }
            for n, e in rows:
                for key, label in labels.items():
                    if key in e:
                        out.append(
                            f"| {n} | {label} | {_range(e[key]['value'])} | "
                            f"{_range(e[key]['window'])} | {_range(e[key]['cpu'])} |"
                        )
        out += [
            "",
            "Per-epoch work of the generated script (seconds per call; share of an epoch at the measured step time):",
            "",
            "| strategy | checkpoint s | validation s | checkpoint share, 28-step epochs | checkpoint share, 1000-step epochs |",
            "|---|---|---|---|---|",
        ]
        for n, e in t["strategies"].items():
            share = e.get("checkpoint_share", {})
            out.append(
                f"| {n} | {_range(e['per_epoch_seconds']['save_checkpoint'])} | {_range(e['per_epoch_seconds']['evaluate'])} | "
                f"{_f(100 * share['28_steps_per_epoch'], 1) if share else '–'} % | {_f(100 * share['1000_steps_per_epoch'], 2) if share else '–'} % |"
            )
        out.append("")
    if "compile" in b:
        c = b["compile"]
        out += [
            "## Compile latency (in-process, ms: median (min–max))",
            "",
            "| blueprint | target | compiled | ms |",
            "|---|---|---|---|",
        ]
        for r in c["in_process"]["rows"]:
            ok = "yes" if r["compiled"] else f"no ({', '.join(r.get('errors', []))})"
            out.append(f"| {r['blueprint']} | {r['target']} | {ok} | {_range(r['ms'], 1)} |")
        out += ["", "Quickstart for `local`, by phase (ms):", "", "| phase | ms |", "|---|---|"]
        for name, s in c["phases"].items():
            out.append(f"| {name} | {_range(s, 2) if 'median' in s else s.get('error')} |")
        p = c["processes"]
        out += [
            "",
            f"Whole processes, {p['rounds']} alternated rounds (s):",
            "",
            "| command | wall s | minus `python -c pass` |",
            "|---|---|---|",
        ]
        for name, s in p["seconds"].items():
            out.append(
                f"| `{name}` | {_range(s)} | {_range(p['minus_python_seconds'].get(name))} |"
            )
        out.append("")
    if "lint" in b:
        lt = b["lint"]
        out += [
            "## Lint throughput",
            "",
            f"{lt['blueprints']} generated blueprints ({lt['mean_lines']:.0f} lines on average; {lt['diagnostics']} diagnostics, "
            f"{lt['files_with_errors']} files with errors):",
            "",
            f"- in one process, in-process `analyse()` loop: {_range(lt['in_process_seconds'])} s "
            f"({_range(lt['in_process_ms_per_file'], 2)} ms per file)",
            f"- whole process `{lt['process_command']} --jobs 1`: {_range(lt['process_one_job_seconds'])} s",
            f"- whole process `{lt['process_command']}` (the default, {lt['cpus']} processes): "
            f"{_range(lt['process_seconds'])} s",
            f"- `python -c pass`: {_range(lt['python_pass_seconds'])} s",
            "",
        ]
    if "growth" in b:
        g = b["growth"]
        fmt = any("fmt_ms" in r for s in g["series"].values() for r in s["rows"])  # results from before fmt was timed have none
        out += [
            "## Growth",
            "",
            f"Base (quickstart): {g['base_ms']:.1f} ms.",
            "",
            "| series | N | lines | compile ms | µs per element | diagnostics |" + (" fmt ms |" if fmt else ""),
            "|---|---|---|---|---|---|" + ("---|" if fmt else ""),
        ]
        for name, s in g["series"].items():
            for r in s["rows"]:
                out.append(
                    f"| {name} | {r['n']} | {r['lines']} | {_range(r['ms'], 1)} | {r['us_per_element']:.0f} | {r['diagnostics']} |"
                    + (f" {_range(r.get('fmt_ms'), 1)} |" if fmt else "")
                )
        out += [
            "",
            "| series | exponent (marginal fit) | exponent (raw fit) | last decade |",
            "|---|---|---|---|",
        ]
        for prefix, what in (("", ""), ("fmt_", ", fmt"))[:2 if fmt else 1]:
            for name, s in g["series"].items():
                out.append(
                    f"| {name}{what} | {_f(s.get(prefix + 'exponent_marginal'), 2)} | {_f(s.get(prefix + 'exponent_raw'), 2)} | {_f(s.get(prefix + 'exponent_last_decade'), 2)} |"
                )
        out.append("")
    if "profile" in b:
        pr = b["profile"]
        imp = pr["imports"]
        out += [
            "## Profiles",
            "",
            f"`-X importtime` of `dtec lint` (total {imp['total_ms']:.0f} ms over {imp['modules']} modules); "
            "top-level imports by cumulative time:",
            "",
            "| module | cumulative ms |",
            "|---|---|",
        ]
        for r in imp["top_level_cumulative"][:12]:
            out.append(f"| `{r['module']}` | {r['cumulative_ms']:.1f} |")
        for key, title in (
            ("lint", f"cProfile, lint of {pr['lint']['files']} blueprints"),
            ("compile", f"cProfile, compile of the quickstart x{pr['compile']['repeat']}"),
        ):
            out += [
                "",
                f"{title} (total {pr[key]['total_s']:.2f} s), top functions by own time:",
                "",
                "| function | calls | own s | share | cumulative s |",
                "|---|---|---|---|---|",
            ]
            for r in pr[key]["by_tottime"][:12]:
                out.append(
                    f"| `{r['function']}` | {r['calls']} | {r['tottime_s']:.3f} | {100 * r['tottime_share']:.1f} % | {r['cumtime_s']:.3f} |"
                )
        out.append("")
    if "stopflag" in b:
        sf = b["stopflag"]
        share = sf.get("cpu_share_of_step")
        out += [
            "## The pre-emption check alone",
            "",
            f"`StopFlag.agreed` of the generated DDP script, {sf['iterations']} calls back to back on 2 ranks, "
            f"{len(sf['rounds'])} rounds: {_range(sf['wall_us_per_call'], 0)} µs wall per call, "
            f"{_range(sf['cpu_us_per_call_all_ranks'], 0)} µs CPU per call summed over both ranks; "
            f"the script calls it every {sf['check_every']} steps"
            + (f", {100 * share:.2f} % of the generated DDP step's CPU time." if share else "."),
            "",
        ]
    if "data" in b:
        d = b["data"]
        st = d["store"]
        out += [
            "## Array data: the generated loader and lint",
            "",
            f"Zarr store of 3 variables × {st['steps']} steps × {st['cells']} cells ({st['bytes'] / 2**20:.0f} MiB on disk, "
            f"chunks of {st['chunk_steps']} steps), windows of 30 + 1 steps, batches of 64 in one shuffled order:",
            "",
            "| stride | workers | samples | generated samples/s | hand-written samples/s | generated / hand-written |",
            "|---|---|---|---|---|---|",
            *[f"| {r['stride']} | {r['workers']} | {r['samples']} | {_range(r['samples_per_s']['dtec'], 0)} | "
              f"{_range(r['samples_per_s']['handwritten'], 0)} | **{_range(r['ratio'], 2)}** |" for r in d["loaders"]],
            "",
            f"`dtec lint`, whole process: Zarr blueprint {_range(d['lint']['seconds']['zarr'])} s, synthetic "
            f"{_range(d['lint']['seconds']['synthetic'])} s, difference paired {_range(d['lint']['extra_s'])} s; in-process "
            f"{_range(d['lint']['in_process_s']['zarr'], 4)} s against {_range(d['lint']['in_process_s']['synthetic'], 4)} s.",
            "",
        ]
    if "gpu" in b:
        gp = b["gpu"]
        out += [
            "## GPU",
            "",
            f"Device: {gp.get('device')}; "
            + (
                f"ratio {_range(gp.get('ratio'))}, MFU generated {_f(gp.get('mfu_dtec'))}, "
                f"hand-written {_f(gp.get('mfu_hand'))}"
                if gp.get("ratio")
                else "not run"
            ),
            "",
        ]
    return "\n".join(out) + "\n"


def plots(results: dict, folder: Path) -> list[Path]:
    """Write the PNG plots; none (with a message) when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib is not installed: no plots (pip install matplotlib)")
        return []
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    b = results.get("benchmarks", {})
    if "training" in b:
        t = b["training"]["strategies"]
        series = [(n, "ratio", n) for n in t]
        series += [(n, "control", f"A/A {n}") for n in t if "control" in t[n]]
        names = [label for _, _, label in series]
        fig, ax = plt.subplots(figsize=(7.2, 3.6))
        for i, (n, key, _label) in enumerate(series):
            rs = [row[key]["value"] for row in t[n]["rounds"]]
            ax.scatter(
                [i] * len(rs), rs, color="0.6", s=14, zorder=2, label="rounds" if i == 0 else None
            )
            s = t[n][key]["value"]
            ax.errorbar(
                [i],
                [s["median"]],
                yerr=[[s["median"] - s["min"]], [s["max"] - s["median"]]],
                fmt="o",
                color="C0" if key == "ratio" else "0.4",
                capsize=4,
                zorder=3,
                label="median, min–max" if i == 0 else None,
            )
        ax.axhline(1.0, color="0.3", lw=0.8)
        ax.axhline(0.98, color="C3", lw=0.8, ls="--", label="target 0.98")
        ax.set_xticks(range(len(names)), names, fontsize=7, rotation=30)
        ax.set_ylabel("throughput ratio (paired)")
        ax.set_title(
            "Generated / hand-written (A/A: hand-written / itself), 2 CPU ranks, gloo", fontsize=9
        )
        ax.legend(fontsize=7, loc="lower right")
        fig.tight_layout()
        path = folder / "training_ratio.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)
    if "growth" in b:
        g = b["growth"]
        fig, ax = plt.subplots(figsize=(6.4, 3.6))
        for i, (name, s) in enumerate(g["series"].items()):
            ns = [r["n"] for r in s["rows"]]
            ms = [r["ms"]["median"] for r in s["rows"]]
            ax.loglog(
                ns,
                ms,
                "o-",
                color=f"C{i}",
                label=f"{name}: k = {s['exponent_marginal']:.2f} (marginal fit)",
            )
        ax.axhline(
            g["base_ms"],
            color="0.5",
            lw=0.8,
            ls=":",
            label=f"quickstart alone, {g['base_ms']:.1f} ms",
        )
        ax.set_xlabel("elements added (N)")
        ax.set_ylabel("in-process compile, ms (median)")
        ax.set_title("Compile time against blueprint size", fontsize=9)
        ax.legend(fontsize=7)
        fig.tight_layout()
        path = folder / "growth.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)
    if "compile" in b:
        c = b["compile"]
        fig, (ax1, ax2) = plt.subplots(
            1, 2, figsize=(9.6, 3.8), gridspec_kw={"width_ratios": [3, 2]}
        )
        rows = [r for r in c["in_process"]["rows"] if r["compiled"]]
        labels = [f"{r['blueprint'].removesuffix('.twin')} / {r['target']}" for r in rows]
        med = [r["ms"]["median"] for r in rows]
        ax1.barh(range(len(rows)), med, color="C0")
        ax1.set_yticks(range(len(rows)), labels, fontsize=6)
        ax1.axvline(10, color="C3", ls="--", lw=0.8, label="quickstart target 10 ms")
        ax1.set_xlabel("in-process compile, ms (median)")
        ax1.invert_yaxis()
        ax1.legend(fontsize=7)
        p = c["processes"]["seconds"]
        names = list(p)
        ax2.barh(
            range(len(names)),
            [p[n]["median"] for n in names],
            xerr=[
                [p[n]["median"] - p[n]["min"] for n in names],
                [p[n]["max"] - p[n]["median"] for n in names],
            ],
            color="C1",
            capsize=3,
        )
        ax2.set_yticks(range(len(names)), names, fontsize=7)
        ax2.axvline(0.25, color="C3", ls="--", lw=0.8, label="lint target 0.25 s")
        ax2.set_xlabel("whole process, s (median, min–max)")
        ax2.invert_yaxis()
        ax2.legend(fontsize=7)
        fig.tight_layout()
        path = folder / "compile_latency.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)
    return written
