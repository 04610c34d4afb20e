"""Read profiles from the shipped folder, DTEC_MACHINES and --machines folders into a Catalog."""

from __future__ import annotations

import os
import re
import tomllib
import unicodedata
from dataclasses import replace
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable, Iterator, Sequence

from dtec.machines.check import problems
from dtec.machines.conflicts import cross_problems
from dtec.machines.model import (
    Comm, GpuRequest, Kube, Launch, Machine, MachineError, Node, Partition, Rules, Software,
    node_replace,
)
from dtec.resources import data_path
from dtec.suggest import closest
from dtec.units import parse_duration

ENV_VAR = "DTEC_MACHINES"


def shipped_dir() -> Path:
    """Return the folder of the profiles that ship with dtec."""
    return data_path("backends", "machines")


Bases = Callable[[str], "Machine | None"]


def load_file(path: Path, bases: Bases | None = None) -> Machine:
    """Read, check and resolve one profile; raise MachineError naming the file and lines.

    `bases` finds the profile an `extends = "name"` starts from (one read before this file).
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise MachineError(f"cannot read the profile: {reason}", path) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line = re.search(r"at line (\d+)", str(exc))
        raise MachineError(f"not valid TOML: {exc}", path, lines=(int(line.group(1)),) if line else ()) from None
    lines = _key_lines(text)
    try:
        if not isinstance(data.get("name", path.stem), str) or data.get("name", path.stem) != path.stem:
            raise MachineError(f"name `{data['name']}` must match the file name `{path.name}`", path, keys=("name",))
        if "extends" in data:
            data = _extended(data, path, bases)
        return from_dict(data, path)
    except MachineError as exc:
        keys = exc.keys or ("",) * len(exc.problems)
        found = tuple(_line_of(key, lines) for key in keys)
        raise MachineError(exc.message, path, exc.problems, keys, found) from None


def _extended(data: dict[str, Any], path: Path, bases: Bases | None) -> dict[str, Any]:
    """Return the profile `data` extends with `data`'s values on top (tables merged, lists replaced)."""
    name = data["extends"]
    base = bases(name) if bases is not None and isinstance(name, str) else None
    if base is None:
        problem = f"extends: no profile `{name}` was read before this one (shipped, or in an earlier folder)"
        raise MachineError(problem, path, keys=("extends",))
    document = base.to_dict()
    if base.name != data.get("name", path.stem):
        document.pop("aliases", None)  # the base keeps its own short names
    merged = _merge(document, {k: v for k, v in data.items() if k != "extends"})
    merged["name"] = path.stem
    return merged


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


_HEADER = re.compile(r"\s*(\[\[?)\s*([A-Za-z0-9_.\" -]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"\s*\"?([A-Za-z0-9_-]+)\"?\s*=")


def _key_lines(text: str) -> dict[str, int]:
    """Return the line of every table and key of a TOML profile, by dotted key (`partitions[1].name`)."""
    out: dict[str, int] = {}
    table, counts = "", {}
    for number, line in enumerate(text.splitlines(), 1):
        header = _HEADER.match(line)
        if header is not None:
            name = header.group(2).replace('"', "").replace(" ", "")
            if header.group(1) == "[[":
                out.setdefault(name, number)
                counts[name] = counts.get(name, -1) + 1
                name = f"{name}[{counts[name]}]"
            elif name.split(".")[0] in counts:  # [partitions.node] belongs to the last entry
                first, _, rest = name.partition(".")
                name = f"{first}[{counts[first]}].{rest}"
            table = name
            out.setdefault(table, number)
            continue
        key = _KEY.match(line)
        if key is not None:
            out.setdefault(f"{table}.{key.group(1)}" if table else key.group(1), number)
    return out


def _line_of(key: str, lines: dict[str, int]) -> int:
    """Return the line of `key`, or of the nearest enclosing key or table the file has; else 0.

    A conflict's key names its fields as `a|b`: the first one the file sets is the line.
    """
    options = key.split("|")
    found = [lines[k] for k in options if k in lines]
    if found:
        return found[0]
    key = options[0]
    while key:
        if key in lines:
            return lines[key]
        shorter = re.sub(r"(\[\d+\]|\.[^.\[]*)$", "", key)
        key = "" if shorter == key else shorter
    return lines.get("extends", 0)


def from_dict(data: dict[str, Any], source: Path | None = None) -> Machine:
    """Check a profile document against the schema and the cross-field rules; build the Machine."""
    checked = problems(data)
    found = [f"{key}: {msg}" if key else msg for key, msg in checked]
    if found:
        more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
        raise MachineError(found[0] + more, source, tuple(found), tuple(key for key, _ in checked))
    node = _node(data["node"])
    try:
        parts = tuple(_partition(p, node) for p in data["partitions"])
    except ValueError as exc:  # `1500ms`: the schema's pattern cannot ask for whole seconds
        raise MachineError(f"partitions: max_walltime: {exc}", source, keys=("partitions",)) from None
    if not any(p.default for p in parts):
        parts = (_with_default(parts[0]),) + parts[1:]
    kube = data.get("kube")
    machine = Machine(
        name=data["name"],
        title=data["title"],
        scheduler=data["scheduler"],
        node=node,
        partitions=parts,
        gpu_request=GpuRequest(**data.get("gpu_request", {})),
        launch=_build(Launch, data.get("launch", {}), master_port=str),
        comm=_build(Comm, data.get("comm", {})),
        software=_build(Software, data.get("software", {})),
        rules=_build(Rules, data.get("rules", {})),
        kube=_build(Kube, kube) if kube is not None else None,
        source=source,
        site=data.get("site"),
        docs=data.get("docs"),
        aliases=tuple(data.get("aliases", ())),
    )
    conflicts = cross_problems(machine)
    if conflicts:
        keys = tuple("|".join(f.replace("partition.", "partitions.") for f in c.fields) for c in conflicts)
        raise MachineError(conflicts[0].message, source, tuple(c.message for c in conflicts), keys)
    return machine


def _freeze(value: Any) -> Any:
    if isinstance(value, dict):
        return MappingProxyType({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value


def _build(cls: type, data: dict[str, Any], **convert: Any) -> Any:
    return cls(**{k: convert.get(k, _freeze)(v) for k, v in data.items()})


def _node(data: dict[str, Any]) -> Node:
    return _build(Node, data)


def _partition(data: dict[str, Any], base: Node) -> Partition:
    node = node_replace(base, **{k: _freeze(v) for k, v in data.get("node", {}).items()})
    values = {k: v for k, v in data.items() if k not in ("node", "max_walltime", "slurm_partition")}
    values.setdefault("gpu", node.gpus > 0)
    slurm = data.get("slurm_partition", data["name"])
    walltime = data.get("max_walltime")
    return Partition(
        node=node,
        slurm_partition=slurm or None,
        max_walltime_s=parse_duration(walltime) if walltime is not None else None,
        **values,
    )


def _with_default(p: Partition) -> Partition:
    return replace(p, default=True)


def _fold(name: str) -> str:
    text = unicodedata.normalize("NFKD", name.strip().lower())
    return "".join(c for c in text if not unicodedata.combining(c))


class Catalog:
    """The machines dtec knows, by name; profiles that failed to load are kept in `errors`.

    Shipped profiles are read when first asked for (a lint names one or two of fifteen; the
    saving is in docs/benchmarks.md); the user's are read at once, so that their errors are known.
    """

    def __init__(self, shipped: dict[str, Path], machines: dict[str, Machine],
                 errors: list[MachineError], replaced: dict[str, tuple[Path, ...]] | None = None):
        self._shipped = shipped  # name -> file, not read yet
        self._machines = machines  # read: the user's, and the shipped ones asked for
        self.errors = errors
        self._replaced = replaced or {}
        self._names = sorted({*shipped, *machines})
        self._aliases: dict[str, str] | None = None

    def names(self) -> list[str]:
        """Return the machine names, sorted."""
        return list(self._names)

    def get(self, name: str) -> Machine | None:
        """Return the machine with this name or alias, or None."""
        if name in self._machines:
            return self._machines[name]
        if name in self._shipped:
            return self._read(name)
        canonical = self.aliases().get(name)
        return self._machines.get(canonical) if canonical else None

    def aliases(self) -> dict[str, str]:
        """Return every alias with the name it stands for (reads every profile)."""
        if self._aliases is None:
            self._aliases = {a: m.name for m in self for a in m.aliases}
        return self._aliases

    def suggest(self, name: str) -> str | None:
        """Return the known name closest to `name` (for "did you mean"), or None."""
        folded = _fold(name)
        if self.get(folded) is not None:
            return self.get(folded).name
        candidates = {_fold(n): n for n in [*self._names, *self.aliases()]}
        match = closest(folded, candidates)
        return self.get(candidates[match]).name if match else None

    def replaced(self, name: str) -> tuple[Path, ...]:
        """Return the earlier profiles that the one in use replaced (shipped first)."""
        return self._replaced.get(name, ())

    def _read(self, name: str) -> Machine | None:
        path = self._shipped.pop(name)
        try:
            self._machines[name] = load_file(path)
        except MachineError as exc:
            self.errors.append(exc)
            self._names.remove(name)
            return None
        return self._machines[name]

    def __iter__(self) -> Iterator[Machine]:
        for name in list(self._shipped):
            self._read(name)
        return iter([self._machines[name] for name in self._names])

    def __len__(self) -> int:
        return len(self._names)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None


def search_dirs(extra_dirs: Sequence[Path | str] = ()) -> list[Path]:
    """Return the profile folders in load order: shipped, DTEC_MACHINES, then extra_dirs."""
    env = [Path(p) for p in os.environ.get(ENV_VAR, "").split(os.pathsep) if p]
    return [shipped_dir(), *env, *(Path(p) for p in extra_dirs)]


def load_machines(extra_dirs: Sequence[Path | str] = ()) -> Catalog:
    """Return the catalog; a later file with a known name replaces the earlier one."""
    key = tuple(str(p) for p in extra_dirs)
    return _load(key, os.environ.get(ENV_VAR, ""))


@lru_cache(maxsize=16)
def _load(extra: tuple[str, ...], _env: str) -> Catalog:
    shipped = {path.stem: path for path in sorted(shipped_dir().glob("*.toml"))}
    machines: dict[str, Machine] = {}
    replaced: dict[str, tuple[Path, ...]] = {}
    errors: list[MachineError] = []
    for folder in search_dirs(extra)[1:]:
        if not folder.is_dir():
            errors.append(MachineError("machine folder not found", folder))
            continue
        for path in sorted(folder.glob("*.toml")):
            try:
                machine = load_file(path, lambda name: _base(name, machines, shipped))
            except MachineError as exc:
                errors.append(exc)
                continue
            if machine.name in machines:
                earlier: Path | None = machines[machine.name].source
            else:
                earlier = shipped.pop(machine.name, None)
            if earlier is not None:
                replaced[machine.name] = replaced.get(machine.name, ()) + (earlier,)
            machines[machine.name] = machine
    return Catalog(shipped, machines, errors, replaced)


def _base(name: str, machines: dict[str, Machine], shipped: dict[str, Path]) -> Machine | None:
    """Return the profile named `name` read so far: the user's, else the shipped one."""
    if name in machines:
        return machines[name]
    path = shipped.get(name)
    return load_file(path) if path is not None else None


load_machines.cache_clear = _load.cache_clear  # type: ignore[attr-defined]


def summary_rows(catalog: Catalog, detect: Callable[[Machine], Machine] | None = None) -> list[dict[str, Any]]:
    """Return one plain row per machine for `dtec targets` (any renderer: table, JSON).

    `detect` (dtec.machines.detect_local) fills the `local` profile in with this computer.
    """
    rows = []
    for m in catalog:
        m = detect(m) if detect is not None and m.scheduler == "local" else m
        rows.append({
            "name": m.name,
            "title": m.title,
            "scheduler": m.scheduler,
            "gpus_per_node": m.node.gpus,
            "gpu_model": m.node.gpu_model or "",
            "cpus_per_node": m.node.usable_cpus,
            "memory_gb": m.node.memory_gb,
            "partitions": [p.name for p in m.partitions],
            "default_partition": m.partition().name if m.partition() else None,
            "source": str(m.source) if m.source else "",
            "user": m.source is not None and m.source.parent != shipped_dir(),
            "replaces": [str(p) for p in catalog.replaced(m.name)],
        })
    return rows
