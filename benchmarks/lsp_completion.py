"""Completion latency of `dtec lsp`, measured through a real LSP client over stdio (request to answer)."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from benchmarks.blueprint_gen import SERIES
from benchmarks.common import ROOT, log, summary, target

# Where an editor asks, each a text to find in the blueprint and to place the cursor after.
_TYPING = 'strategy {\n  kind =\n}\n\ntarget "juwels-booster" {\n  partition = "\n  walltime = 2\n}\n'
POSITIONS = {
    "block start": "\n\n",
    "key in a block": 'data "gauges" {\n',
    "after =": "kind =",
    "inside a call": "synthetic(",
    "after data.": "input = data.",
    "target label": '\ntarget "',
    'partition = "': 'partition = "',
    "unit": "walltime = 2",
}


def blueprint(blocks: int) -> str:
    """The quickstart with `blocks` more data blocks (benchmarks.blueprint_gen) and blocks being typed."""
    return SERIES["blocks"](blocks) + "\n" + _TYPING


def run(out: Path, *, blocks: int = 100, rounds: int = 20) -> dict:
    """Median milliseconds from a completion request to its answer, per kind of position."""
    text = blueprint(blocks)
    log(f"lsp completion: {len(text.splitlines())}-line blueprint, {len(POSITIONS)} positions × {rounds} rounds")
    out.mkdir(parents=True, exist_ok=True)
    times = asyncio.run(_measure(out / "bench.twin", text, rounds))
    per = {name: summary(values) for name, values in times.items()}
    every = summary([v for values in times.values() for v in values])
    return {
        "lines": len(text.splitlines()),
        "rounds": rounds,
        "ms": per,
        "all_ms": every,
        "targets": [
            target(
                "completion latency (request to answer, real client)",
                every["median"],
                30.0,
                "ms",
                note=f"median of {every['n']} requests at {len(POSITIONS)} kinds of position in a "
                f"{len(text.splitlines())}-line blueprint; slowest kind "
                + max(per, key=lambda k: per[k]["median"] or 0)
                + f" {max(s['median'] or 0 for s in per.values()):.1f} ms",
            )
        ],
    }


async def _measure(path: Path, text: str, rounds: int) -> dict[str, list[float]]:
    from lsprotocol import types
    from pygls.lsp.client import LanguageClient

    path.write_text(text, encoding="utf-8")
    client = LanguageClient("dtec-benchmark", "1")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    await client.start_io(sys.executable, "-P", "-m", "dtec", "lsp", env=env)
    await client.initialize_async(types.InitializeParams(capabilities=types.ClientCapabilities()))
    client.initialized(types.InitializedParams())
    uri = path.as_uri()
    client.text_document_did_open(types.DidOpenTextDocumentParams(types.TextDocumentItem(uri, "twin", 1, text)))
    doc = types.TextDocumentIdentifier(uri)
    times: dict[str, list[float]] = {name: [] for name in POSITIONS}
    loop = asyncio.get_running_loop()
    try:
        for round_ in range(rounds + 1):  # the first round warms up (imports, the machine catalogue)
            for name, after in POSITIONS.items():
                end = text.index(after) + len(after)
                at = types.Position(text.count("\n", 0, end), end - (text.rfind("\n", 0, end) + 1))
                start = loop.time()
                answer = await client.text_document_completion_async(types.CompletionParams(doc, at))
                elapsed = 1000 * (loop.time() - start)
                assert answer is not None and answer.items, f"no completion at {name}"
                if round_:
                    times[name].append(elapsed)
    finally:
        await client.shutdown_async(None)
        client.exit(None)
        await client.stop()
    return times
