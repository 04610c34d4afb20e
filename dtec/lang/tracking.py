"""Experiment trackers (`monitor { track = ... }`): where an MLflow URI logs to, and its checks."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from dtec.diagnostics import Diagnostic, diag
from dtec.lang.blueprint import Blueprint

# The URI schemes MLflow's tracking client takes, by what they reach (`+driver` stripped).
SERVERS = ("http", "https")
DATABASES = ("sqlite", "postgresql", "mysql", "mssql")
_LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1", "")


def uri_kind(uri: str) -> str | None:
    """`server`, `database`, `files` (a `file:` URI or a folder) or None: a scheme MLflow does not take."""
    scheme = uri.split(":", 1)[0].split("+", 1)[0].lower() if "://" in uri or uri.startswith("file:") else ""
    if scheme in SERVERS:
        return "server"
    if scheme in DATABASES:
        return "database"
    if scheme in ("", "file"):
        return "files"
    return None


def is_remote(uri: str) -> bool:
    """Whether logging to `uri` needs the network: a server or database on another host."""
    kind = uri_kind(uri)
    if kind not in ("server", "database") or uri.lower().startswith("sqlite"):
        return False
    return (urlsplit(uri).hostname or "") not in _LOCAL_HOSTS


def trackers(bp: Blueprint) -> list[tuple[tuple[str | int, ...], dict[str, Any]]]:
    """The blueprint's trackers, each with its path in the blueprint (`track` is one or a list)."""
    track = bp.get("monitor", "track")
    if isinstance(track, dict):
        return [(("monitor", "track"), track)]
    if isinstance(track, list):
        return [(("monitor", "track", i), t) for i, t in enumerate(track) if isinstance(t, dict)]
    return []


def check_tracking(bp: Blueprint) -> list[Diagnostic]:
    """DT370: an MLflow URI of a scheme MLflow does not take; DT372: a tracker given twice."""
    found, seen = [], set()
    for path, tracker in trackers(bp):
        uri = tracker.get("uri")
        if isinstance(uri, str) and uri_kind(uri) is None:
            found.append(diag(
                "DT370", f"`{uri}` is no tracking URI MLflow takes", bp.span(*path, "uri"),
                "write `http(s)://host:5000` (a server), `sqlite:///mlflow.db`, `postgresql://…`, or a folder; leave `uri` out to log offline in the run folder",
            ))
        if tracker.get("fn") in seen:
            found.append(diag(
                "DT372", f"`{tracker['fn']}` is in `track` twice: the run would be logged twice", bp.span(*path),
                "keep one; a run logs to one MLflow store (push it to others with `dtec export mlflow`)",
            ))
        seen.add(tracker.get("fn"))
    return found
