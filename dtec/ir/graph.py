"""The IR as a networkx graph: the blueprint's parts as nodes, references and data flow as edges."""

from __future__ import annotations

import json

import networkx as nx

from dtec.ir.model import IR


def build_graph(ir: IR) -> nx.DiGraph:
    """Return the IR's graph; node ids are `kind:name`, edges carry a `relation`."""
    g = nx.DiGraph(name=ir.twin.name)
    train = ir.train
    for name, data in ir.data.items():
        g.add_node(f"data:{name}", kind="data", label=f"{name} ({data.source})")
    for name, model in ir.models.items():
        g.add_node(f"model:{name}", kind="model", label=f"{name} ({model.arch})")
        g.add_edge(f"data:{model.input}", f"model:{name}", relation="feeds")
    g.add_node("loss", kind="loss", label=train.loss_label)
    g.add_node("optimizer", kind="optimizer", label=train.optimizer.name)
    g.add_node("scheduler", kind="scheduler", label=train.scheduler.name)
    g.add_node("train", kind="train", label=f"train ({train.epochs} epochs, {train.precision})")
    strategy = ir.strategy
    g.add_node("strategy", kind="strategy", label=f"{strategy.kind} × {strategy.world_size} ranks")
    g.add_node(f"machine:{ir.target.name}", kind="machine", label=f"{ir.target.name} ({ir.target.scheduler})")
    g.add_node("monitor", kind="monitor", label="monitor")
    g.add_edge(f"model:{train.model}", "train", relation="trained by")
    g.add_edge("loss", "train", relation="scores")
    g.add_edge("scheduler", "optimizer", relation="schedules")
    g.add_edge("optimizer", "train", relation="updates")
    g.add_edge("monitor", "train", relation="observes")
    g.add_edge("train", "strategy", relation="distributed by")
    g.add_edge("strategy", f"machine:{ir.target.name}", relation="runs on")
    return g


def ordered_nodes(g: nx.DiGraph) -> list[str]:
    """Return the nodes in a deterministic topological order (ties broken by name)."""
    return list(nx.lexicographical_topological_sort(g))


def to_dot(g: nx.DiGraph) -> str:
    """Render the graph in Graphviz DOT."""
    lines = [f"digraph {json.dumps(g.graph['name'])} {{", "  rankdir=LR;", "  node [shape=box];"]
    for node in ordered_nodes(g):
        lines.append(f"  {json.dumps(node)} [label={json.dumps(g.nodes[node]['label'])}];")
    for u, v in sorted(g.edges):
        lines.append(f"  {json.dumps(u)} -> {json.dumps(v)} [label={json.dumps(g.edges[u, v]['relation'])}];")
    return "\n".join([*lines, "}"]) + "\n"


def to_mermaid(g: nx.DiGraph) -> str:
    """Render the graph as a Mermaid flowchart."""
    ids = {node: f"n{i}" for i, node in enumerate(ordered_nodes(g))}
    lines = ["flowchart LR"]
    for node, nid in ids.items():
        label = g.nodes[node]["label"].replace('"', "'")
        lines.append(f'  {nid}["{label}"]')
    for u, v in sorted(g.edges):
        lines.append(f"  {ids[u]} -->|{g.edges[u, v]['relation']}| {ids[v]}")
    return "\n".join(lines) + "\n"


def to_json(g: nx.DiGraph) -> str:
    """Render the graph as node-link JSON."""
    nodes = [{"id": n, **g.nodes[n]} for n in ordered_nodes(g)]
    edges = [{"source": u, "target": v, **g.edges[u, v]} for u, v in sorted(g.edges)]
    return json.dumps({"name": g.graph["name"], "nodes": nodes, "edges": edges}, indent=2) + "\n"


RENDERERS = {"dot": to_dot, "mermaid": to_mermaid, "json": to_json}
