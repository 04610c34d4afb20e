"""Diagnostics as a JSON list: 1-based positions in code points, end exclusive (like lark)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from dtec.diagnostics import Diagnostic
from dtec.render.location import display_path, position


def to_dict(d: Diagnostic) -> dict[str, Any]:
    """Return one diagnostic as a dict with a fixed key order."""
    return {
        "code": d.code,
        "name": d.rule.name,
        "severity": d.severity.value,
        "message": d.message,
        "file": display_path(d.span.path) if d.span is not None else None,
        **position(d.span),
        "help": d.help,
        "related": [
            {"file": display_path(r.span.path), **position(r.span), "message": r.message}
            for r in d.related
        ],
    }


def render_json(diagnostics: Sequence[Diagnostic]) -> str:
    """Render diagnostics as a JSON list, indented 2, with a trailing newline."""
    return json.dumps([to_dict(d) for d in diagnostics], indent=2, ensure_ascii=False) + "\n"
