"""`dtec data inspect`: what a blueprint's data blocks resolve to, from the files' metadata."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from dtec.analysis import FileResult, analyse
from dtec.lang.loader import project_root
from dtec.lang.schema import NORMALIZED_SOURCES


def inspect_data(path: Path, run: Path | None = None) -> tuple[FileResult, list[dict[str, Any]]]:
    """Analyse the blueprint; describe each data block (none when the blueprint has errors)."""
    from dtec.lang.arraychecks import check_array_source
    from dtec.lang.files import _FileChecker

    result = analyse(path, targets=[])
    if not result.ok or result.blueprint is None:
        return result, []
    bp = result.blueprint
    checker = _FileChecker(bp, project_root(path, os.environ))
    found = []
    for name, block in (bp.get("data") or {}).items():
        source = block["source"]
        entry: dict[str, Any] = {"name": name, "source": source["fn"], "path": source.get("path"),
                                 "split": block["split"], "normalize": block.get("normalize", "none")}
        if source["fn"] in NORMALIZED_SOURCES:
            _, resolved = check_array_source(checker, name, block)
            if resolved is not None:
                entry |= {
                    "files": [str(f) for f in resolved.files],
                    "variables": {v: {"dims": list(var.dims), "shape": list(var.shape)} for v, var in resolved.variables.items()},
                    "sample_shape": resolved.sample, "target_shape": resolved.target,
                    "steps": resolved.steps, "parts": dict(zip(("train", "val", "test"), resolved.parts)),
                    "samples": dict(zip(("train", "val", "test"), resolved.samples)),
                }
        elif isinstance(source.get("shape"), list):
            entry["sample_shape"] = source["shape"]
        # A run folder of `dtec runs` holds train.py's run dir as run/.
        stats = next((p for p in (run / "stats.json", run / "run" / "stats.json") if p.is_file()), None) if run else None
        if stats is not None:
            entry["statistics"] = json.loads(stats.read_text()).get("variables")
        found.append(entry)
    return FileResult(result.path, bp, tuple(checker.found)), found


def render_text(entries: list[dict[str, Any]]) -> str:
    lines = []
    for e in entries:
        lines.append(f"data `{e['name']}`: {e['source']}" + (f" {e['path']}" if e.get("path") else ""))
        for f in e.get("files", []):
            lines.append(f"  file        {f}")
        for name, v in e.get("variables", {}).items():
            dims = ", ".join(f"{d}={n}" for d, n in zip(v["dims"], v["shape"])) if v["dims"] else "x".join(map(str, v["shape"]))
            lines.append(f"  variable    {name} ({dims})")
        if "sample_shape" in e:
            target = f", its target {e['target_shape']}" if "target_shape" in e else ""
            lines.append(f"  sample      {e['sample_shape']}{target}")
        if e.get("steps") is not None:
            parts = ", ".join(f"{k} {n}" for k, n in e["parts"].items())
            lines.append(f"  steps       {e['steps']} ({parts}), cut before windowing")
        if "samples" in e:
            lines.append("  samples     " + ", ".join(f"{k} {n:,}" for k, n in e["samples"].items()))
        lines.append(f"  split       {e['split']}, normalize {e['normalize']}")
        for name, s in (e.get("statistics") or {}).items():
            lines.append(f"  statistics  {name}: mean {s['mean']:.4g}, std {s['std']:.4g}, min {s['min']:.4g}, max {s['max']:.4g} ({s['count']:,} values)")
    return "\n".join(lines) + "\n"
