"""SARIF 2.1.0 for code-scanning services: every rule of the code table, columns in code points."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import dtec
from dtec.diagnostics import Diagnostic
from dtec.rules import RULES, Rule
from dtec.source import Span

SCHEMA = (
    "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
)
INFORMATION_URI = "https://dtec.dev"
_LEVEL = {"error": "error", "warning": "warning", "info": "note"}


def render_sarif(
    diagnostics: Sequence[Diagnostic], *, files: Sequence[Path | str] = (), root: Path | None = None
) -> str:
    """Render one SARIF log with one run; no timestamps, so equal input gives equal bytes."""
    base = (root or Path.cwd()).resolve()
    uris: dict[str, dict[str, str]] = {}  # the same file may be named relatively and absolutely
    index: dict[str, int] = {}
    for path in _artifacts(diagnostics, files):
        uri = _uri(path, base)
        key = uri["uri"]
        uris.setdefault(key, uri)
        index[path] = list(uris).index(key)
    codes = list(RULES)

    def location(span: Span) -> dict[str, Any]:
        artifact = {**_uri(span.path, base), "index": index[span.path]}
        return {"physicalLocation": {"artifactLocation": artifact, "region": _region(span)}}

    results = []
    for d in diagnostics:
        text = d.message + (f"\nhelp: {d.help}" if d.help else "")
        result: dict[str, Any] = {"ruleId": d.code}
        if d.code in codes:
            result["ruleIndex"] = codes.index(d.code)
        result |= {"level": _LEVEL[d.severity.value], "message": {"text": text}}
        if d.span is not None:
            result["locations"] = [location(d.span)]
        if d.related:
            result["relatedLocations"] = [
                {"id": i, **location(r.span), "message": {"text": r.message}}
                for i, r in enumerate(d.related)
            ]
        results.append(result)
    log = {
        "$schema": SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "dtec",
                        "version": dtec.__version__,
                        "informationUri": INFORMATION_URI,
                        "rules": [_rule(r) for r in RULES.values()],
                    }
                },
                "columnKind": "unicodeCodePoints",
                "artifacts": [{"location": uri} for uri in uris.values()],
                "results": results,
            }
        ],
    }
    return json.dumps(log, indent=2, ensure_ascii=False) + "\n"


def _rule(r: Rule) -> dict[str, Any]:
    doc = r.doc or f"# {r.code} {r.name}\n\n{r.summary}.\n"
    return {
        "id": r.code,
        "name": r.name,
        "shortDescription": {"text": r.summary},
        "fullDescription": {"text": doc},
        "help": {"text": doc, "markdown": doc},
        "defaultConfiguration": {"level": _LEVEL[r.severity]},
    }


def _artifacts(diagnostics: Sequence[Diagnostic], files: Sequence[Path | str]) -> list[str]:
    """Return the files checked, in order, then other files that findings point into, sorted."""
    listed = list(dict.fromkeys(str(f) for f in files))
    spans = [s for d in diagnostics for s in (d.span, *(r.span for r in d.related)) if s]
    extra = sorted({s.path for s in spans} - set(listed))
    return listed + extra


def _uri(path: str, base: Path) -> dict[str, str]:
    """Return a URI relative to `base` (`%SRCROOT%`) when the file is below it, else absolute."""
    resolved = Path(path).resolve()
    try:
        relative = resolved.relative_to(base)
    except ValueError:
        return {"uri": resolved.as_uri()}
    return {"uri": quote(relative.as_posix()), "uriBaseId": "%SRCROOT%"}


def _region(span: Span) -> dict[str, int]:
    line, column = span.start_pos
    end_line, end_column = span.end_pos
    return {"startLine": line, "startColumn": column, "endLine": end_line, "endColumn": end_column}
