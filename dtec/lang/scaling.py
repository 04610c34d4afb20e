"""The `scaling` block: its points (world size, nodes, per-rank batch) and their checks (DT366-DT369).

A point is the blueprint compiled with `--set` overrides of the strategy's size and the batch
(`point_sets`), so that every other check applies to it as to the blueprint (docs/scaling.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dtec.diagnostics import Diagnostic, diag
from dtec.lang.blueprint import Blueprint

# Strategies whose gradient communication a DDP communication hook sees: the others' is not split out.
TIMED_STRATEGIES = ("auto", "single", "ddp")


@dataclass(frozen=True)
class Point:
    """One point of the study: its world size, how it is laid out, and its per-rank batch."""

    index: int  # in the block's list
    ranks: int
    nodes: int
    per_node: int
    batch: int

    @property
    def name(self) -> str:
        return f"r{self.ranks}"


def has_scaling(bp: Blueprint) -> bool:
    """Whether the blueprint has a `scaling` block that names points."""
    return bool(bp.get("scaling", "ranks") or bp.get("scaling", "nodes"))


def points(block: Mapping[str, Any], per_node: int, batch: int) -> list[Point]:
    """The study's points, with `per_node` ranks on a whole node and the blueprint's per-rank batch."""
    key = "ranks" if block.get("ranks") else "nodes"
    found = []
    first = None
    for i, count in enumerate(block.get(key) or []):
        if key == "ranks":
            nodes = 1 if count <= per_node else -(-count // per_node)
            ranks = count
        else:
            nodes, ranks = count, count * per_node
        first = first or ranks
        share = batch * first // ranks if block.get("mode") == "strong" else batch
        found.append(Point(i, ranks, nodes, ranks // nodes, max(share, 1)))
    return found


def _batch(bp: Blueprint) -> int | None:
    data = bp.get("model", bp.get("train", "model"), "input")
    batch = bp.get("data", data, "batch") if data else None
    return batch if isinstance(batch, int) else None


def check_points(bp: Blueprint) -> list[Diagnostic]:
    """DT366-DT367, on the blueprint alone: points named once, and world sizes that split the batch."""
    block = bp.get("scaling") or {}
    if bp.span("scaling") is None:
        return []
    if not (block.get("ranks") or block.get("nodes")):
        return [diag("DT366", "the scaling study names no points", bp.span("scaling"), "add `ranks = [1, 2, 4]` (world sizes) or `nodes = [1, 2]`")]
    if block.get("ranks") and block.get("nodes"):
        return [diag("DT366", "the scaling study names both `ranks` and `nodes`", bp.span("scaling", "nodes"), "keep one: `ranks` (world sizes) or `nodes` (whole nodes)")]
    found = []
    if bp.get("sweep", "space"):
        found.append(diag("DT366", "a blueprint runs either a scaling study or a sweep, not both", bp.span("scaling"), "move the sweep to a blueprint of its own"))
    key = "ranks" if block.get("ranks") else "nodes"
    if not isinstance(block[key], list):  # an invalid list: already reported where it is
        return found
    seen: set[int] = set()
    for i, count in enumerate(block[key]):
        if count in seen:
            found.append(diag("DT366", f"{count} is in `{key}` twice", bp.span("scaling", key, i), "name each point once"))
        seen.add(count)
    if key == "ranks":
        found += _check_batch(bp, 1)
    return found


def _check_batch(bp: Blueprint, per_node: int) -> list[Diagnostic]:
    """DT367: in strong mode every point's world size divides the first point's global batch."""
    block, batch = bp.get("scaling"), _batch(bp)
    if block.get("mode") != "strong" or batch is None:
        return []
    key = "ranks" if block.get("ranks") else "nodes"
    found, first = [], None
    for point in points(block, per_node, batch):
        first = first or point.ranks
        if (batch * first) % point.ranks:
            found.append(diag(
                "DT367", f"the global batch of {batch * first} does not divide over {point.ranks} ranks",
                bp.span("scaling", key, point.index),
                f"strong mode splits the first point's global batch ({batch} × {first} ranks) at every point; "
                "choose counts that divide it, or `mode = weak`",
            ))
    return found


def check_fit(bp: Blueprint, per_node: int, max_nodes: int | None, where: str, strategy: str) -> list[Diagnostic]:
    """DT367-DT369 on a machine of `per_node` ranks a node: points that fit it, and what is measured."""
    block, batch = bp.get("scaling") or {}, _batch(bp)
    if not (block.get("ranks") or block.get("nodes")) or batch is None:
        return []
    found = _check_batch(bp, per_node) if block.get("nodes") else []
    for point in points(block, per_node, batch) if block.get("ranks") else []:
        at = bp.span("scaling", "ranks", point.index)
        if point.ranks > per_node and point.ranks % per_node:
            found.append(diag("DT368", f"{point.ranks} ranks do not fill whole nodes of {per_node} ranks on {where}", at, f"above one node, use a multiple of {per_node}"))
        elif max_nodes is not None and point.nodes > max_nodes:
            found.append(diag("DT368", f"{point.ranks} ranks need {point.nodes} nodes of {per_node} ranks; {where} allows at most {max_nodes}", at, f"use at most {per_node * max_nodes} ranks"))
    if strategy not in TIMED_STRATEGIES:
        found.append(diag("DT369", f"the communication of `{strategy}` is not split out of the step: the study counts it as compute", bp.span("strategy", "kind"), "use `kind = ddp` to measure exposed communication"))
    return found


def point_sets(bp: Blueprint, point: Point, gpus: bool) -> list[str]:
    """The `--set` overrides that make the blueprint one point of its study."""
    block = bp.get("scaling")
    data = bp.get("model", bp.get("train", "model"), "input")
    steps = block["warmup"] + block["steps"]
    kind = bp.get("strategy", "kind") or "auto"
    key = "ranks" if block.get("ranks") else "nodes"
    sets = [
        # The point is a study of itself: its checks (DT367) split its own batch, not the first point's.
        f"scaling.{key}=[{point.ranks if key == 'ranks' else point.nodes}]",
        f"strategy.nodes={point.nodes}",
        f"strategy.{'gpus_per_node' if gpus else 'procs_per_node'}={point.per_node}",
        f"data.{data}.batch={point.batch}",
        f"train.max_steps={steps}",
        f"train.epochs={steps}",  # every epoch has a step at least: max_steps ends the run
    ]
    if kind == "single" and point.ranks > 1:
        sets.append("strategy.kind=auto")
    return sets
