"""The `sweep` block's checks: keys that exist, distributions that fit them, a space whose every
value and corner passes the checks the base blueprint passes (docs/sweeps.md).

Values are tried by checking the blueprint again with them applied as `--set` overrides (the
`probe` the caller passes), so that every type, range, cross-block and machine check applies to
them as to the base blueprint, with no second copy of those checks here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
import re
from itertools import product
from math import prod
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from dtec.diagnostics import Diagnostic, diag
from dtec.lang import types as t
from dtec.lang.blueprint import Blueprint
from dtec.lang.schema import BLOCKS, METRICS, SWEEP_GOALS
from dtec.lang.semantics import check_monitored
from dtec.suggest import did_you_mean

if TYPE_CHECKING:
    from dtec.plan import Plan

Probe = Callable[[Sequence[str]], Sequence[Diagnostic]]
# Storage URL schemes Optuna's RDB storage takes through SQLAlchemy.
DATABASES = ("postgresql", "mysql", "sqlite")
# Schedulers whose workers share no file system with each other: a journal file cannot be the study's.
NO_SHARED_FILES = ("kubernetes", "kubeflow", "interlink")
# A Secret's name and data key (Kubernetes' IsDNS1123Subdomain and IsConfigMapKey).
SECRET_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
SECRET_KEY = re.compile(r"[-._a-zA-Z0-9]+")
# The space's corners are all checked up to this many (each is one more check of the blueprint).
MAX_CORNERS = 64


@dataclass(frozen=True)
class Dimension:
    """One key of the space: its distribution and the values as `--set` writes them."""

    index: int
    key: str
    fn: str
    low: Any = None
    high: Any = None
    step: int = 1
    log: bool = False
    values: tuple[str, ...] = ()

    @property
    def corners(self) -> tuple[str, str]:
        """Return the lowest and highest values the distribution gives, as text."""
        if self.fn == "choice":
            return self.values[0], self.values[-1]
        high = self.low + (self.high - self.low) // self.step * self.step if self.fn == "int" else self.high
        return value_text(self.low), value_text(high)

    def texts(self) -> list[tuple[str, tuple]]:
        """Return each value worth checking alone, with the path of where it is written."""
        if self.fn == "choice":
            return [(v, ("values", j)) for j, v in enumerate(self.values)]
        return [(self.corners[0], ("low",)), (self.corners[1], ("high",))]


def has_sweep(bp: Blueprint) -> bool:
    """Whether the blueprint has a `sweep` block (an absent block holds only defaults)."""
    return bool(bp.get("sweep", "space"))


def value_text(value: Any) -> str:
    """Return a number as the blueprint would write it (`repr` of a float parses back exactly)."""
    return repr(value) if isinstance(value, float) else str(value)


def dimensions(sweep: Mapping[str, Any]) -> list[Dimension]:
    """Return the space's dimensions from the checked `sweep` block."""
    found = []
    for i, d in enumerate(sweep.get("space") or []):
        if not isinstance(d, dict):
            continue
        if d["fn"] == "choice":
            found.append(Dimension(i, d["key"], "choice", values=tuple(d["values"])))
        else:
            found.append(Dimension(i, d["key"], d["fn"], d["low"], d["high"], d.get("step", 1), d.get("log", False)))
    return found


def goal(sweep: Mapping[str, Any]) -> str:
    """Return `minimize` or `maximize`: the block's goal, else the metric's better direction."""
    if sweep.get("goal"):
        return sweep["goal"]
    return "minimize" if METRICS[sweep.get("metric", "val_loss")] == "min" else "maximize"


def check_sweep(bp: Blueprint, plans: Mapping[str, Plan], probe: Probe) -> list[Diagnostic]:
    """Check the sweep block of a blueprint that has passed every other check."""
    sweep = bp.get("sweep")
    found = _check_metric(bp, sweep) + _check_storage(bp, sweep, plans) + _check_pods(bp, sweep, plans)
    dims = dimensions(sweep)
    seen: dict[str, Dimension] = {}
    for dim in dims:
        at = bp.span("sweep", "space", dim.index, "key")
        if dim.key in seen:
            found.append(diag("DT346", f"`{dim.key}` is in the space twice", at, "give each key one distribution"))
            continue
        seen[dim.key] = dim
        type_, problem = key_type(bp, dim.key)
        if problem is not None:
            found.append(diag("DT340", problem[0], at, problem[1]))
            continue
        found += _check_fit(bp, dim, type_)
    if sweep.get("sampler") == "grid":
        found += [
            diag("DT346", f"the `grid` sampler takes only `choice(…)`, not `{d.fn}(…)`", bp.span("sweep", "space", d.index), "list the values with `choice(…)`, or use the `tpe` or `random` sampler")
            for d in dims if d.fn != "choice"
        ]
    if found:
        return found
    base = probe([])  # the blueprint as one trial, with nothing drawn
    return _check_share(bp, sweep, plans, base) or _check_values(bp, dims, probe, base)


def _check_share(bp: Blueprint, sweep: Mapping[str, Any], plans: Mapping[str, Plan], base: Sequence[Diagnostic]) -> list[Diagnostic]:
    """The blueprint as written still passes as one of the `parallel` trials sharing a local computer."""
    parallel = sweep.get("parallel", 1)
    if parallel < 2 or not any(p.machine.scheduler == "local" for p in plans.values()):
        return []
    at = bp.span("sweep", "parallel") or bp.span("sweep")
    return [
        diag("DT379", f"each of the {parallel} trials that run at once has its part of this computer, and fails: {d.message}", at,
             f"{d.help}; or lower `parallel`" if d.help else "lower `parallel`")
        for d in _errors(base)
    ]


def _check_metric(bp: Blueprint, sweep: Mapping[str, Any]) -> list[Diagnostic]:
    metric = sweep.get("metric", "val_loss")
    found = check_monitored(bp, {"fn": METRICS[metric], "metric": metric}, ("sweep", "metric"))
    if not found and sweep.get("goal") and SWEEP_GOALS[sweep["goal"]] != METRICS[metric]:
        better = "lower" if METRICS[metric] == "min" else "higher"
        found.append(diag("DT341", f"`{sweep['goal']}` looks for the worst trials: {metric} is better when {better}", bp.span("sweep", "goal"), f"write `goal = {goal({'metric': metric})}` or leave it out"))
    return found


def _check_storage(bp: Blueprint, sweep: Mapping[str, Any], plans: Mapping[str, Plan]) -> list[Diagnostic]:
    storage = sweep.get("storage", "journal")
    at = bp.span("sweep", "storage") or bp.span("sweep")
    scheme = storage.split(":", 1)[0].split("+", 1)[0]
    if storage != "journal" and scheme not in DATABASES:
        return [diag("DT347", f"`{storage}` is neither `journal` nor a database URL", at, "write `journal`, or `postgresql://user@host/db` (also `mysql://`, `sqlite:///file.db`)")]
    if storage == "journal" or scheme == "sqlite":
        what = "a journal file" if storage == "journal" else "an SQLite file"
        return [
            diag("DT347", f"target `{name}` runs workers without a shared file system: {what} cannot hold the study", at, "give `storage` a database URL the pods reach, e.g. `postgresql://user@host/db`")
            for name, p in plans.items() if p.machine.scheduler in NO_SHARED_FILES
        ]
    return []


def _check_pods(bp: Blueprint, sweep: Mapping[str, Any], plans: Mapping[str, Plan]) -> list[Diagnostic]:
    """Kubernetes workers: each trial in one pod, and the storage URL reaching it from a Secret or without a password."""
    found: list[Diagnostic] = []
    secret = sweep.get("storage_secret")
    if secret is not None and not is_secret_ref(secret):
        found.append(diag("DT374", f"`{secret}` does not name a Secret and its key", bp.span("sweep", "storage_secret"), 'write `"<secret>/<key>"`, e.g. `"optuna-db/url"`, as `kubectl get secret <secret>` lists it'))
    for name, p in plans.items():
        if p.machine.scheduler not in NO_SHARED_FILES:
            continue
        if p.nodes > 1:
            found.append(diag("DT348", f"target `{name}` runs each trial in one worker pod; this trial needs {p.nodes} nodes", bp.span("strategy", "nodes") or bp.span("sweep"), "use `nodes = 1` (more `procs_per_node` if the node holds them), or run the sweep on Slurm"))
        at = bp.span("sweep", "storage")
        # The workers' ConfigMap carries the blueprint's text, and without a Secret the URL itself.
        written = at is not None and not at.source.text[at.start:at.end].startswith("env")
        if has_password(sweep.get("storage", "journal")) and (secret is None or written):
            where = "in the blueprint's text" if written else "as the storage URL"
            found.append(diag("DT349", f"target `{name}`'s worker pods would get the storage password in plain text, {where}, in their manifest", at, 'write `storage = env("DTEC_SWEEP_DB")` and put the URL in a Secret the pods read: `storage_secret = "optuna-db/url"` (docs/sweeps.md)'))
    return found


def is_secret_ref(text: str) -> bool:
    """Whether `text` is `<secret>/<key>`: a Secret's name (DNS-1123 subdomain) and a data key."""
    name, _, key = text.partition("/")
    return len(name) <= 253 and bool(SECRET_NAME.fullmatch(name)) and len(key) <= 253 and bool(SECRET_KEY.fullmatch(key))


def has_password(url: str) -> bool:
    """Whether a database URL carries a password (`user:password@host` or `?password=`)."""
    try:
        parts = urlsplit(url)
        return parts.password is not None or "password" in parse_qs(parts.query)
    except ValueError:
        return True  # a URL urllib cannot read: not written out where it might hold one


def key_type(bp: Blueprint, key: str) -> tuple[t.Type | None, tuple[str, str | None] | None]:
    """Return the vocabulary's type of a key the blueprint has, or a message and a hint why not."""
    parts = key.split(".")
    kinds = [k for k in BLOCKS if k != "sweep"]
    spec = BLOCKS.get(parts[0]) if parts[0] != "sweep" else None
    if spec is None:
        return None, (f"`{key}` names no block of the blueprint", did_you_mean(parts[0], kinds) or "keys start with a block: " + ", ".join(f"`{k}`" for k in kinds))
    value: Any = bp.values.get(parts[0]) or {}
    keys = parts[1:]
    if spec.label is not None and spec.multiple:
        labels = list(value)
        if not keys or keys[0] not in value:
            label = keys[0] if keys else ""
            return None, (f"the blueprint has no `{parts[0]} \"{label}\"`", did_you_mean(label, labels) or f"write `{parts[0]}.<name>.<key>`")
        value, keys = value[keys[0]], keys[1:]
    node: Any = spec
    for depth, k in enumerate(keys):
        where = ".".join(parts[: len(parts) - len(keys) + depth])
        if isinstance(node, t.BlockSpec):
            names = [*node.fields, *node.blocks]
            node = node.blocks.get(k) or (node.fields[k].type if k in node.fields else None)
        elif isinstance(node, t.Record):
            names, node = list(node.fields), node.fields[k].type if k in node.fields else None
        elif isinstance(node, t.Call) and isinstance(value, dict) and value.get("fn") in node.functions:
            params = node.functions[value["fn"]].params
            names, node = list(params), params[k].type if k in params else None
            if node is None:
                return None, (f"`{value['fn']}(…)` at `{where}` takes no `{k}`", did_you_mean(k, names) or _takes(names))
        else:
            return None, (f"`{where}` holds a single value: nothing is inside it", f"sweep `{where}` itself")
        if node is None:
            return None, (f"`{where}` has no key `{k}`", did_you_mean(k, names) or _takes(names))
        value = value.get(k) if isinstance(value, dict) else None
    if node is None or isinstance(node, t.BlockSpec):
        return None, (f"`{key}` names a block, not a value", "name one of its keys, e.g. `train.epochs`")
    return node, None


def _takes(names: list[str]) -> str:
    return "it takes " + ", ".join(f"`{n}`" for n in names) if names else "it takes nothing"


def _numeric(type_: t.Type, kind: type) -> bool:
    if isinstance(type_, t.OneOf):
        return any(_numeric(o, kind) for o in type_.options)
    return isinstance(type_, kind)


def _check_fit(bp: Blueprint, dim: Dimension, type_: t.Type) -> list[Diagnostic]:
    """A distribution draws what its key takes; its bounds are ordered and its step fits."""
    at = bp.span("sweep", "space", dim.index)
    if dim.fn in ("uniform", "loguniform") and not _numeric(type_, t.Float):
        hint = f"`{dim.key}` takes whole numbers: use `int(…)`" if _numeric(type_, t.Int) else f"`{dim.key}` takes {type_.describe()}: use `choice(…)`"
        return [diag("DT342", f"`{dim.fn}(…)` draws numbers, but `{dim.key}` takes {type_.describe()}", at, hint)]
    if dim.fn == "int" and not (_numeric(type_, t.Int) or _numeric(type_, t.Float)):
        return [diag("DT342", f"`int(…)` draws whole numbers, but `{dim.key}` takes {type_.describe()}", at, "use `choice(…)` with the values as written")]
    if dim.fn == "choice":
        return []
    if not dim.low < dim.high:
        return [diag("DT343", f"the bounds of `{dim.key}` are not in order: `{dim.low}` is not below `{dim.high}`", bp.span("sweep", "space", dim.index, "low"), "write the lower bound first")]
    if dim.fn == "int" and dim.log and (dim.step != 1 or dim.low < 1):
        return [diag("DT343", "`int(…, log = true)` needs `step = 1` and `low` of at least 1", at, "drop `step`, or `log`")]
    if dim.fn == "int" and dim.step > dim.high - dim.low:
        return [diag("DT343", f"`step = {dim.step}` leaves only `{dim.low}` between the bounds", bp.span("sweep", "space", dim.index, "step"), f"use a step of at most {dim.high - dim.low}")]
    return []


def _check_values(bp: Blueprint, dims: list[Dimension], probe: Probe, base: Sequence[Diagnostic]) -> list[Diagnostic]:
    """Every value alone, then the space's corners together, pass the base blueprint's checks;
    a value that draws a warning the base blueprint does not is said too (its trials would run, and
    `best.twin` would not lint clean)."""
    found: list[Diagnostic] = []
    warned = {_where(d) for d in base if d.severity == "warning"}
    for dim in dims:
        for text, where in dim.texts():
            at = bp.span("sweep", "space", dim.index, *where)
            drawn = probe([f"{dim.key}={text}"])
            for d in _errors(drawn):
                found.append(diag("DT344", f"`{dim.key} = {text}` fails: {d.message}", at, d.help))
            for d in drawn:
                if d.severity == "warning" and _where(d) not in warned:
                    found.append(diag("DT380", f"`{dim.key} = {text}` draws {d.code}: {d.message}", at, d.help))
    if _errors(found) or len(dims) < 2:
        return found
    extremes = [[(d, v) for v in (d.values if d.fn == "choice" else d.corners)] for d in dims]
    if prod(len(e) for e in extremes) <= MAX_CORNERS:
        corners = [list(c) for c in product(*extremes)]
    else:  # too many to try them all: the lowest, the highest, and each choice with the highest
        corners = [[(d, d.corners[side]) for d in dims] for side in (0, 1)]
        corners += [[(c, v) if c is d else (c, c.corners[1]) for c in dims] for d in dims if d.fn == "choice" for v in d.values[:-1]]
    reported: set[str] = set()
    for corner in corners:
        for d in _errors(probe([f"{dim.key}={text}" for dim, text in corner])):
            if d.message in reported:
                continue
            reported.add(d.message)
            values = ", ".join(f"`{dim.key} = {text}`" for dim, text in corner)
            found.append(diag("DT345", f"the space's corner {values} fails: {d.message}", bp.span("sweep", "space", corner[0][0].index), d.help))
    return found


def _where(d: Diagnostic) -> tuple:
    """A warning's rule and place: the base blueprint's, said again with other numbers, is not new."""
    return d.code, (d.span.path, d.span.start) if d.span else None


def _errors(diagnostics: Sequence[Diagnostic]) -> list[Diagnostic]:
    return [d for d in diagnostics if d.severity == "error"]
