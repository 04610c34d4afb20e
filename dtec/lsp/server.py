"""The server: pygls on stdio, each feature registered by the module that holds it."""

from __future__ import annotations

from pygls.lsp.server import LanguageServer

from dtec import __version__

# Each module holds one feature and a `register(server)` that adds its handlers.
FEATURES: tuple[str, ...] = ("completion", "hover", "actions")


def build() -> LanguageServer:
    """Return a server with every feature registered."""
    import importlib

    server = LanguageServer("dtec", __version__)
    for name in FEATURES:
        importlib.import_module(f"dtec.lsp.{name}").register(server)
    return server


def serve() -> None:
    """Serve on stdin/stdout until the client exits."""
    build().start_io()
