"""Check where a model's initial weights come from, and which of its parameters are frozen.

`weights = from(run = "...")` names a run folder; `from(blueprint = "...", model = model.x)` another
blueprint of the project, whose newest finished run for the same target `dtec run` uses (running
it first when it has none). Both stay inside the project, like every file a blueprint names. The
source model's architecture must be this model's, so that its state dict loads as it is; what is
learned (the source's twin and model) is filled into the `weights` value for the IR.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dtec.diagnostics import Diagnostic, diag, has_errors
from dtec.lang.blueprint import Blueprint
from dtec.lang.check import check
from dtec.lang.loader import load
from dtec.lang.parameters import matches, parameter_names
from dtec.suggest import did_you_mean

FINAL_MODEL = Path("run") / "final_model.pt"  # in a run folder: what a finished run leaves


def check_weights(bp: Blueprint, root: Path, environ: Mapping[str, str]) -> list[Diagnostic]:
    """Check every model's `weights` and `freeze`; fill in the source's twin and model."""
    found: list[Diagnostic] = []
    for name, block in (bp.get("model") or {}).items():
        if not isinstance(block, dict):
            continue
        weights = block.get("weights")
        if isinstance(weights, dict):
            found += _Source(bp, root, environ, name, weights).check(block.get("arch"))
        found += _check_freeze(bp, name, block)
    return found


class _Source:
    def __init__(self, bp: Blueprint, root: Path, environ: Mapping[str, str], name: str, weights: dict) -> None:
        self.bp, self.root, self.environ, self.weights = bp, root, environ, weights
        self.at = ("model", name, "weights")
        self.found: list[Diagnostic] = []

    def report(self, code: str, message: str, key: str | None = None, help: str | None = None) -> None:
        path = (*self.at, key) if key else self.at
        self.found.append(diag(code, message, self.bp.span(*path), help))

    def check(self, arch: Any) -> list[Diagnostic]:
        run, blueprint = self.weights.get("run"), self.weights.get("blueprint")
        if (run is None) == (blueprint is None):
            self.report("DT327", "`from` needs `run` or `blueprint`, one of them", None,
                        'write `from(run = "runs/<twin>/<target>/<id>")` or `from(blueprint = "stage1.twin")`')
            return self.found
        if isinstance(run, str):
            if self.weights.get("model") is not None:
                self.report("DT327", "`model` goes with `blueprint`: a run trained one model", "model", "remove `model`")
            source = self.from_run(run)
        elif isinstance(blueprint, str):
            source = self.from_blueprint(blueprint)
        else:
            return self.found
        if source is not None and isinstance(arch, dict):
            self.compare(arch, source)
        return self.found

    def inside(self, written: str, key: str, *, folder: bool) -> Path | None:
        """The file or folder `written` (relative to the blueprint), if it is in the project."""
        try:
            path = Path(os.path.realpath(self.bp.folder / written))
            exists = path.is_dir() if folder else path.is_file()
        except (OSError, ValueError):
            path, exists = Path(written), False
        if exists and not path.is_relative_to(self.root):
            self.report("DT327", f"`{written}` is outside the project", key,
                        f"weights are read from the project `{self.root}` only (or make it larger with $DTEC_PROJECT_ROOT)")
            return None
        if not exists:
            kind = "run folder" if folder else "blueprint"
            self.report("DT327", f"{kind} `{written}` not found", key,
                        f"the path is relative to the blueprint's folder: {self.bp.folder / written}")
            return None
        return path

    def from_run(self, written: str) -> dict | None:
        folder = self.inside(written, "run", folder=True)
        if folder is None:
            return None
        try:
            ir = json.loads((folder / "ir.json").read_text(encoding="utf-8"))
            model = ir["models"][ir["train"]["model"]]
            twin = ir["twin"]["name"]
        except (OSError, ValueError, KeyError, TypeError):
            self.report("DT327", f"`{written}` is not a run folder of dtec (no readable ir.json)", "run",
                        "name the folder `dtec run` made: `runs/<twin>/<target>/<id>`")
            return None
        if not (folder / FINAL_MODEL).is_file():
            self.report("DT330", f"run `{written}` has no `{FINAL_MODEL.as_posix()}`: it has not finished", "run",
                        f"`dtec status {folder.name}` says how it stands; name a completed run, or `from(blueprint = ...)` to run it")
        self.weights.update(twin=twin, model=ir["train"]["model"])
        return {"fn": model.get("arch"), **(model.get("params") or {})}

    def from_blueprint(self, written: str) -> dict | None:
        path = self.inside(written, "blueprint", folder=False)
        if path is None:
            return None
        if path == Path(os.path.realpath(self.bp.source.path if self.bp.source else "")):
            self.report("DT327", "a model cannot start from the runs of its own blueprint", "blueprint",
                        "name the blueprint of the earlier stage")
            return None
        program, found = load(path, environ=self.environ)
        if program.documents and not has_errors(found):
            other, more = check(program, self.environ, targets=())
            found += more
        if has_errors(found) or not program.documents:
            first = next(d for d in found if d.severity == "error")
            self.report("DT327", f"`{written}` has errors: {first.message}", "blueprint", f"`dtec lint {written}` shows them")
            return None
        models = other.get("model") or {}
        name = self.weights.get("model") or (other.get("train") or {}).get("model")
        if name not in models:
            self.report("DT327", f"`{written}` has no model `{name}`", "model",
                        did_you_mean(str(name), models) or "its models: " + ", ".join(f"`model.{m}`" for m in models))
            return None
        self.weights.update(twin=other.get("twin")["name"], model=name)
        return models[name].get("arch")

    def compare(self, arch: dict, source: dict) -> None:
        """The source's architecture and arguments must be this model's: its state dict loads whole."""
        if arch.get("fn") != source.get("fn"):
            self.report("DT328", f"the weights are of a `{source.get('fn')}` model, this one is `{arch.get('fn')}`", None,
                        f"give this model the source's `arch`: `{source.get('fn')}(...)`")
            return
        differ = [k for k in sorted(arch.keys() | source.keys()) if k != "fn" and arch.get(k) != source.get(k)]
        if differ:
            shown = ", ".join(f"`{k}` is {json.dumps(source.get(k))}, here {json.dumps(arch.get(k))}" for k in differ)
            self.report("DT328", "the weights are of a model of other dimensions: its " + shown, None,
                        "give this model the same `arch` arguments, so that every weight has its place")


def _check_freeze(bp: Blueprint, name: str, block: dict) -> list[Diagnostic]:
    """Each `freeze` prefix must name a parameter, where the architecture's names are known."""
    prefixes, arch = block.get("freeze"), block.get("arch")
    if not isinstance(prefixes, list) or not isinstance(arch, dict):
        return []
    names = parameter_names(arch)
    if names is None:
        return []  # the user's class: checked by `dtec check` and at the first step
    found = []
    for i, prefix in enumerate(prefixes):
        if isinstance(prefix, str) and not any(matches(prefix, n) for n in names):
            modules = sorted({n.split(".")[0] for n in names})
            found.append(diag("DT329", f"`{prefix}` names no parameter of the `{arch['fn']}` model", bp.span("model", name, "freeze", i),
                              did_you_mean(prefix, sorted({*modules, *names})) or "its modules: " + ", ".join(f"`{m}`" for m in modules)))
    return found
