"""`dtec lsp` through a real LSP client on stdio: didChange to published diagnostics, and start to first diagnostics."""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from pathlib import Path

from benchmarks.blueprint_gen import quickstart, with_blocks
from benchmarks.common import ROOT, log, python_executable, summary, target

# Seconds between two timed edits: longer than the server's interval between two analyses of a
# document (dtec.lsp.diagnostics.INTERVAL), so that each edit is analysed at once.
_PAUSE = 0.25


def _server_env() -> dict[str, str]:
    """The environment of the server: this checkout first on the path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return env


async def _client(folder: Path):
    """Start `dtec lsp` and a client that records when each file's diagnostics arrive."""
    from lsprotocol import types
    from pygls.lsp.client import LanguageClient

    client = LanguageClient("dtec-bench", "1")
    client.arrived = {}  # uri -> future of the next publication

    @client.feature(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
    def published(params: types.PublishDiagnosticsParams) -> None:
        future = client.arrived.pop(params.uri, None)
        if future is not None and not future.done():
            future.set_result(params.diagnostics)

    await client.start_io(python_executable(), "-P", "-m", "dtec", "lsp", env=_server_env())
    await client.initialize_async(types.InitializeParams(capabilities=types.ClientCapabilities(), root_uri=folder.as_uri()))
    client.initialized(types.InitializedParams())
    return client


def _expect(client, uri: str) -> asyncio.Future:
    future = asyncio.get_running_loop().create_future()
    client.arrived[uri] = future
    return future


async def _stop(client) -> None:
    await client.shutdown_async(None)
    client.exit(None)
    await client.stop()


async def _measure(folder: Path, lines: int, edits: int, starts: int) -> dict:
    from lsprotocol import types

    text = with_blocks(max(0, (lines - len(quickstart().splitlines())) // 6))
    path = folder / "big.twin"
    path.write_text(text)
    uri = path.as_uri()
    start_times: list[float] = []
    start_cpu: list[float | None] = []
    for _ in range(starts):
        began = time.perf_counter()
        client = await _client(folder)
        first = _expect(client, uri)
        client.text_document_did_open(types.DidOpenTextDocumentParams(types.TextDocumentItem(uri, "twin", 1, quickstart())))
        await asyncio.wait_for(first, 60)
        start_times.append(time.perf_counter() - began)
        start_cpu.append(_cpu_seconds(client._server.pid))
        await _stop(client)
    client = await _client(folder)
    opened = _expect(client, uri)
    client.text_document_did_open(types.DidOpenTextDocumentParams(types.TextDocumentItem(uri, "twin", 1, text)))
    diagnostics = len(await asyncio.wait_for(opened, 60))
    latencies = []
    for version in range(2, edits + 2):
        await asyncio.sleep(_PAUSE)
        edited = text.replace("seed = 0)", f"seed = {version})", 1)  # one character or two, like a keystroke
        done = _expect(client, uri)
        began = time.perf_counter()
        client.text_document_did_change(
            types.DidChangeTextDocumentParams(
                types.VersionedTextDocumentIdentifier(version=version, uri=uri),
                [types.TextDocumentContentChangeWholeDocument(edited)],
            )
        )
        await asyncio.wait_for(done, 60)
        latencies.append(time.perf_counter() - began)
    await _stop(client)
    from dtec.analysis import analyse

    cpu = []
    for _ in range(max(3, edits // 3)):  # the same analysis in this process, on CPU time: the load-independent part
        began = time.process_time()
        analyse(path, text)
        cpu.append(time.process_time() - began)
    return {
        "lines": len(text.splitlines()),
        "diagnostics": diagnostics,
        "change_seconds": latencies,
        "analysis_cpu_seconds": cpu,
        "start_seconds": start_times,
        "start_cpu_seconds": start_cpu,
    }


def _cpu_seconds(pid: int) -> float | None:
    """CPU seconds a process has used so far (None without psutil)."""
    try:
        import psutil
    except ImportError:
        return None
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def run(out: Path, *, lines: int = 500, edits: int = 30, starts: int = 5) -> dict:
    """Time `edits` didChange -> publishDiagnostics round trips on a `lines`-line blueprint, and `starts` server starts."""
    log(f"lsp: {edits} edits of a {lines}-line blueprint, {starts} starts")
    with tempfile.TemporaryDirectory(prefix="dtec-bench-lsp-") as folder:
        measured = asyncio.run(_measure(Path(folder), lines, edits, starts))
    change = summary([1000 * t for t in measured["change_seconds"]])
    start = summary(measured["start_seconds"])
    result = {
        "lines": measured["lines"],
        "diagnostics": measured["diagnostics"],
        "change_ms": change,
        "analysis_cpu_ms": summary([1000 * t for t in measured["analysis_cpu_seconds"]]),
        "start_seconds": start,
        "start_cpu_seconds": summary(measured["start_cpu_seconds"]),
    }
    result["targets"] = [
        target(
            f"didChange to published diagnostics, {result['lines']}-line blueprint (through an LSP client on stdio)",
            change["median"],
            50.0,
            "ms",
            note=f"max {change['max']:.1f} ms over {change['n']} edits; the analysis alone {result['analysis_cpu_ms']['median']:.1f} ms CPU",
        ),
        target(
            "`dtec lsp` start to the first diagnostics (quickstart)",
            start["median"],
            0.5,
            "s",
            note=f"{start['min']:.2f}-{start['max']:.2f} s over {start['n']} starts; server CPU {result['start_cpu_seconds']['median'] or 0:.2f} s",
        ),
    ]
    return result
