"""Locate the data files (grammar, templates, machine profiles) in a wheel or a source checkout."""

from functools import cache
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


@cache
def data_root() -> Path:
    """Return the folder holding `grammars/` and `backends/`."""
    installed = _PACKAGE / "_data"
    return installed if installed.is_dir() else _PACKAGE.parent


def data_path(*parts: str) -> Path:
    """Return the path of a shipped data file, e.g. `data_path("grammars", "twin.lark")`."""
    return data_root().joinpath(*parts)
