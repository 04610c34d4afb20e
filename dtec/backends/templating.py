"""One jinja2 environment for every dtec template, with site overrides and strict filters."""

from __future__ import annotations

import json
import math
import os
import shlex
from collections.abc import Iterable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2

from dtec.resources import data_path

TEMPLATES_ENV_VAR = "DTEC_TEMPLATES"
# Leaves room for the `NAME = ` in front of a literal within a 100-column line.
_WIDTH = 92


def py_literal(value: Any, indent: int = 0, width: int = _WIDTH) -> str:
    """Return `value` as Python source that evaluates back to it, deterministic and wrapped.

    `indent` is the indentation of the line holding the literal (its closing bracket goes there).
    Dicts keep their insertion order (the caller's order is the reader's order); sets are sorted;
    strings use double quotes. Containers that do not fit are broken one item per line, indented
    four spaces deeper.
    """
    return _wrapped(value, indent, indent, width)


def _wrapped(value: Any, indent: int, column: int, width: int) -> str:
    """Lay out `value` starting at `column` on a line whose block is indented by `indent`."""
    flat = _flat(value)
    if column + len(flat) <= width or not isinstance(value, (Mapping, list, tuple)) or not value:
        return flat
    inner = indent + 4
    if isinstance(value, Mapping):
        items = []
        for key, item in value.items():
            head = f"{_flat(key)}: "
            items.append(head + _wrapped(item, inner, inner + len(head), width))
        opening, closing = "{", "}"
    else:
        items = [_wrapped(item, inner, inner, width) for item in value]
        opening, closing = ("(", ")") if isinstance(value, tuple) else ("[", "]")
    body = "".join(f"{' ' * inner}{item},\n" for item in items)
    return f"{opening}\n{body}{' ' * indent}{closing}"


def _flat(value: Any) -> str:
    """Return the one-line Python literal of `value`."""
    if isinstance(value, str):
        # JSON string escapes are all valid in Python, and give the usual double quotes.
        return json.dumps(value, ensure_ascii=False)
    if value is None or isinstance(value, (bool, int)):
        return repr(value)
    if isinstance(value, float):
        if math.isnan(value):
            return 'float("nan")'
        if math.isinf(value):
            return 'float("inf")' if value > 0 else 'float("-inf")'
        return repr(value)
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{_flat(k)}: {_flat(v)}" for k, v in value.items()) + "}"
    if isinstance(value, tuple):
        inner = ", ".join(_flat(v) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    if isinstance(value, (set, frozenset)):
        return "{" + ", ".join(sorted(_flat(v) for v in value)) + "}" if value else "set()"
    if isinstance(value, os.PathLike):
        return _flat(os.fspath(value))
    if isinstance(value, Iterable) and not isinstance(value, (bytes, bytearray)):
        return "[" + ", ".join(_flat(v) for v in value) + "]"
    raise TypeError(f"cannot write a {type(value).__name__} as a Python literal: {value!r}")


def to_json(value: Any, indent: int | None = None) -> str:
    """Return deterministic JSON (keys in the caller's order, no NaN)."""
    return json.dumps(value, indent=indent, ensure_ascii=False, allow_nan=False)


FILTERS = {
    "py": py_literal,
    "json": to_json,
    "shquote": lambda value: shlex.quote(str(value)),
}


def template_dirs_from_env() -> tuple[str, ...]:
    """Return the override folders named in `$DTEC_TEMPLATES` (os.pathsep-separated)."""
    raw = os.environ.get(TEMPLATES_ENV_VAR, "")
    return tuple(part for part in raw.split(os.pathsep) if part)


def environment(template_dirs: Iterable[str | os.PathLike] = ()) -> jinja2.Environment:
    """Return the shared environment; `template_dirs`, then `$DTEC_TEMPLATES`, come first."""
    dirs = tuple(str(Path(d)) for d in template_dirs) + template_dirs_from_env()
    return _environment(dirs)


@lru_cache(maxsize=16)
def _environment(user_dirs: tuple[str, ...]) -> jinja2.Environment:
    """Build (once per set of override folders) the strict environment."""
    loaders = [jinja2.FileSystemLoader(d) for d in user_dirs]
    loaders.append(jinja2.FileSystemLoader(str(data_path("backends", "templates"))))
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters.update(FILTERS)
    return env


def render(name: str, /, template_dirs: Iterable[str | os.PathLike] = (), **ctx: Any) -> str:
    """Render the template `name` with `ctx`; `template_dirs` are searched first."""
    return environment(template_dirs).get_template(name).render(**ctx)
