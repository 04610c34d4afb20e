"""The server: pygls on stdio, each feature registered by the module that holds it."""

from __future__ import annotations

import logging
import traceback

from lsprotocol import types
from pygls.lsp.server import LanguageServer

from dtec import __version__

# Each module holds one feature and a `register(server)` that adds its handlers.
FEATURES: tuple[str, ...] = (
    "diagnostics", "navigation", "symbols", "formatting", "completion", "hover", "actions",
)

logger = logging.getLogger(__name__)


class _Server(LanguageServer):
    """pygls' server, except that an unexpected exception is logged and the server keeps serving.

    pygls answers a failed request with an LSP error itself; for anything else (a notification's
    handler) its default shows the error and stops the server.
    """

    def report_server_error(self, error: Exception, source) -> None:
        detail = "".join(traceback.format_exception(error))
        logger.error("%s: %s", source.__name__, detail)
        try:
            self.window_log_message(types.LogMessageParams(types.MessageType.Error, f"dtec lsp: {source.__name__}: {detail}"))
        except Exception:  # noqa: BLE001 - the client may be gone; the log above has it
            pass


def build() -> LanguageServer:
    """Return a server with every feature registered."""
    import importlib

    server = _Server("dtec", __version__)
    for name in FEATURES:
        importlib.import_module(f"dtec.lsp.{name}").register(server)
    return server


def serve() -> None:
    """Serve on stdin/stdout until the client exits."""
    build().start_io()
