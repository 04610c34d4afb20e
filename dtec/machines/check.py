"""A small JSON Schema interpreter (the subset machine.schema.json uses), with plain messages."""

from __future__ import annotations

import json
import re
from functools import cache
from typing import Any

from dtec.resources import data_path
from dtec.suggest import did_you_mean

_TYPES = {
    "object": ("a table", lambda v: isinstance(v, dict)),
    "array": ("a list", lambda v: isinstance(v, list)),
    "string": ("a string", lambda v: isinstance(v, str)),
    "integer": ("an integer", lambda v: isinstance(v, int) and not isinstance(v, bool)),
    "number": ("a number", lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)),
    "boolean": ("true or false", lambda v: isinstance(v, bool)),
}


@cache
def machine_schema() -> dict:
    """Return the published profile schema, backends/machine.schema.json."""
    with data_path("backends", "machine.schema.json").open(encoding="utf-8") as f:
        return json.load(f)


def problems(instance: Any, schema: dict | None = None) -> list[tuple[str, str]]:
    """Return (dotted key, message) for every way `instance` breaks the schema; [] when valid."""
    root = machine_schema() if schema is None else schema
    out: list[tuple[str, str]] = []
    _check(instance, root, "", root, out)
    return out


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, bool):
        return f"`{_show(value)}`"
    kind = {str: "string", int: "integer", float: "number"}.get(type(value), type(value).__name__)
    return f"{kind} `{_show(value)}`"


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return json.dumps(value) if isinstance(value, str) else str(value)


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    if not key or key.startswith("["):
        return path + key
    return f"{path}.{key}" if path else key


def _resolve(root: dict, ref: str) -> Any:
    node: Any = root
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def _check(value: Any, schema: Any, path: str, root: dict, out: list) -> None:
    if schema is True:
        return
    if schema is False:
        out.append((path, "not allowed here"))
        return
    if "$ref" in schema:
        _check(value, _resolve(root, schema["$ref"]), path, root, out)
    for sub in schema.get("allOf", ()):
        _check(value, sub, path, root, out)
    if "anyOf" in schema:
        _any_of(value, schema["anyOf"], path, root, out)
    if "not" in schema and not _sub(value, schema["not"], root):
        out.append((path, f"not allowed: {schema['description']}" if "description" in schema
                    else "not allowed here"))
    if "if" in schema:
        branch = "else" if _sub(value, schema["if"], root) else "then"
        if branch in schema:
            _check(value, schema[branch], path, root, out)
    if "const" in schema and value != schema["const"]:
        out.append((path, f"must be {_show(schema['const'])}, got {_show(value)}"))
    if "enum" in schema and value not in schema["enum"]:
        choices = ", ".join(f"`{c}`" for c in schema["enum"])
        hint = _near(value, schema["enum"])
        out.append((path, f"expected one of {choices}, got {_kind(value)}{hint}"))
    if "type" in schema:
        label, test = _TYPES[schema["type"]]
        if not test(value):
            out.append((path, f"expected {label}, got {_kind(value)}"))
            return
    if isinstance(value, str):
        _string(value, schema, path, out)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        _number(value, schema, path, out)
    elif isinstance(value, list):
        _array(value, schema, path, root, out)
    elif isinstance(value, dict):
        _object(value, schema, path, root, out)


def _sub(value: Any, schema: Any, root: dict) -> list:
    out: list = []
    _check(value, schema, "", root, out)
    return out


def _any_of(value: Any, options: list, path: str, root: dict, out: list) -> None:
    results = [_sub(value, option, root) for option in options]
    if any(not r for r in results):
        return
    # Report the branch whose type fits: its message is the precise one.
    for option, result in zip(options, results):
        if not any(msg.startswith("expected ") and key == "" for key, msg in result):
            out.extend((_join(path, key), msg) for key, msg in result)
            return
    labels = " or ".join(_TYPES[o["type"]][0] for o in options if "type" in o)
    out.append((path, f"expected {labels}, got {_kind(value)}"))


def _string(value: str, schema: dict, path: str, out: list) -> None:
    if len(value) < schema.get("minLength", 0):
        out.append((path, "must not be empty"))
    if "pattern" in schema and not re.search(schema["pattern"], value):
        out.append((path, _mismatch(value, schema)))


def _number(value: float, schema: dict, path: str, out: list) -> None:
    if "minimum" in schema and value < schema["minimum"]:
        out.append((path, f"must be at least {schema['minimum']}, got {value}"))
    if "maximum" in schema and value > schema["maximum"]:
        out.append((path, f"must be at most {schema['maximum']}, got {value}"))
    if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
        out.append((path, f"must be more than {schema['exclusiveMinimum']}, got {value}"))


def _array(value: list, schema: dict, path: str, root: dict, out: list) -> None:
    if len(value) < schema.get("minItems", 0):
        n = schema["minItems"]
        out.append((path, f"needs at least {n} {'entry' if n == 1 else 'entries'}"))
    unique = {json.dumps(v, sort_keys=True) for v in value}
    if schema.get("uniqueItems") and len(unique) < len(value):
        out.append((path, "has duplicate entries"))
    if "items" in schema:
        for i, item in enumerate(value):
            _check(item, schema["items"], _join(path, i), root, out)


def _object(value: dict, schema: dict, path: str, root: dict, out: list) -> None:
    for key in schema.get("required", ()):
        if key not in value:
            out.append((_join(path, key), "missing required key"))
    props = schema.get("properties", {})
    extra = schema.get("additionalProperties", True)
    names = schema.get("propertyNames")
    for key, item in value.items():
        if names is not None and "pattern" in names and not re.search(names["pattern"], key):
            out.append((_join(path, key), "key " + _mismatch(key, names)))
        if key in props:
            _check(item, props[key], _join(path, key), root, out)
        elif extra is False:
            out.append((_join(path, key), f"unknown key `{key}`{_near(key, props)}"))
        elif extra is not True:
            _check(item, extra, _join(path, key), root, out)


def _mismatch(value: str, schema: dict) -> str:
    if "description" in schema:
        return f"`{value}` is not {schema['description']}"
    return f"`{value}` does not match `{schema['pattern']}`"


def _near(word: Any, choices: Any) -> str:
    if not isinstance(word, str):
        return ""
    hint = did_you_mean(word, [str(c) for c in choices])
    return f"; {hint}" if hint else ""


def field_problems(value: Any, definition: str, field: str) -> list[str]:
    """Return why `value` cannot be the field `field` of the schema's `$defs/definition`."""
    root = machine_schema()
    out: list[tuple[str, str]] = []
    value = list(value) if isinstance(value, tuple) else value  # overrides hold lists as tuples
    _check(value, root["$defs"][definition]["properties"][field], "", root, out)
    return [message for _, message in out]
