"""CLI command for editors: `dtec lsp`."""

from __future__ import annotations

import sys


def lsp() -> None:
    """Start the language server on stdin/stdout (for editors; needs the `lsp` extra)."""
    try:
        from dtec.lsp.server import serve
    except ImportError as exc:
        sys.stderr.write(f"dtec lsp: {exc.name or 'pygls'} is not installed; run `pip install 'dtec[lsp]'`\n")
        raise SystemExit(2) from None
    serve()
