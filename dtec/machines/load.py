"""Read profiles from the shipped folder, DTEC_MACHINES and --machines folders into a Catalog."""

from __future__ import annotations

import os
import tomllib
import unicodedata
from dataclasses import replace
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import Any, Iterator, Sequence

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


def load_file(path: Path) -> Machine:
    """Read, check and resolve one profile; raise MachineError naming the file."""
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise MachineError(f"cannot read the profile: {exc.strerror}", path) from None
    except tomllib.TOMLDecodeError as exc:
        raise MachineError(f"not valid TOML: {exc}", path) from None
    if data.get("name") not in (None, path.stem):
        raise MachineError(f"name `{data['name']}` must match the file name `{path.name}`", path)
    return from_dict(data, path)


def from_dict(data: dict[str, Any], source: Path | None = None) -> Machine:
    """Check a profile document against the schema and the cross-field rules; build the Machine."""
    found = [f"{key}: {msg}" if key else msg for key, msg in problems(data)]
    if found:
        more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
        raise MachineError(found[0] + more, source, tuple(found))
    node = _node(data["node"])
    try:
        parts = tuple(_partition(p, node) for p in data["partitions"])
    except ValueError as exc:  # `1500ms`: the schema's pattern cannot ask for whole seconds
        raise MachineError(f"partitions: max_walltime: {exc}", source) from None
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
    found = [c.message for c in cross_problems(machine)]
    if found:
        raise MachineError(found[0], source, tuple(found))
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
                machine = load_file(path)
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


load_machines.cache_clear = _load.cache_clear  # type: ignore[attr-defined]


def summary_rows(catalog: Catalog) -> list[dict[str, Any]]:
    """Return one plain row per machine for `dtec targets` (any renderer: table, JSON)."""
    rows = []
    for m in catalog:
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
            "replaces": [str(p) for p in catalog.replaced(m.name)],
        })
    return rows
