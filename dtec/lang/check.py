"""Check a program against the vocabulary and convert it into a typed `Blueprint`."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from math import ceil, inf, isfinite
from typing import Any

from dtec.diagnostics import Diagnostic, Related, diag
from dtec.lang import types as t
from dtec.lang.blueprint import Blueprint, Path
from dtec.lang.loader import Program
from dtec.lang.objectives import resolve_objective
from dtec.lang.schema import BLOCK_NOT_ATTRIBUTE, BLOCKS, REQUIRED_KINDS
from dtec.source import Span
from dtec.suggest import closest, did_you_mean
from dtec.syntax import ast
from dtec.units import DURATIONS, SIZES, UNITS

_INVALID = object()  # a value already reported; checks that depend on it are skipped

_FORM = {
    ast.Str: "a string",
    ast.Bool: "a boolean",
    ast.Symbol: "a name",
    ast.Ref: "a reference",
    ast.ListExpr: "a list",
    ast.MapExpr: "a map",
    ast.Call: "a call",
}


def check(
    program: Program, environ: Mapping[str, str], targets: Collection[str] | None = None
) -> tuple[Blueprint, list[Diagnostic]]:
    """Check every block of `program`; return the blueprint and the diagnostics.

    With `targets`, an unset `env("X")` in another target's block is no error: a target's
    values matter only when it is linted, compiled or run.
    """
    checker = _Checker(Blueprint(program.main), environ, targets)
    checker.blocks(program.items())
    if program.main is not None:
        first = next((d.items[0] for d in program.documents[:1] if d.items), None)
        at = first.span if isinstance(first, ast.Block) and first.span.source is program.main else Span(program.main, 0, 0)
        checker.required_blocks(Span(program.main, at.start, at.start))
    checker.references()
    checker.diagnostics += resolve_objective(checker.blueprint)
    return checker.blueprint, checker.diagnostics


class _Checker:
    def __init__(
        self, blueprint: Blueprint, environ: Mapping[str, str], targets: Collection[str] | None
    ) -> None:
        self.blueprint = blueprint
        self.environ = environ
        self.targets = targets
        self.diagnostics: list[Diagnostic] = []
        self.refs: list[tuple[str, str, Path, ast.Ref]] = []
        self.heads: dict[tuple[str, str | None], ast.Block] = {}

    def report(self, code: str, message: str, span: Span | None, help: str | None = None, related=()) -> None:
        self.diagnostics.append(diag(code, message, span, help, related))

    # ---- blocks ------------------------------------------------------------------------
    def blocks(self, items: list[ast.Block | ast.Attribute]) -> None:
        values = self.blueprint.values
        for item in items:
            if isinstance(item, ast.Attribute):
                self.report(
                    "DT101",
                    f"attribute `{item.key}` outside a block",
                    item.key_span,
                    "put it inside the block it belongs to, e.g. `train { ... }`",
                )
                continue
            spec = BLOCKS.get(item.kind)
            if spec is None:
                self.report(
                    "DT100",
                    f"unknown block `{item.kind}`",
                    item.kind_span,
                    did_you_mean(item.kind, BLOCKS) or "blocks are " + ", ".join(f"`{k}`" for k in BLOCKS),
                )
                continue
            if not self.label_ok(item, spec):
                continue
            key = (item.kind, item.label if spec.multiple else None)
            if key in self.heads:
                first = self.heads[key]
                self.report(
                    "DT110",
                    f"`{item.title}` is defined twice",
                    item.head_span,
                    "merge the two blocks or give one another label"
                    if spec.multiple
                    else "keep one of them",
                    [Related(first.head_span, "first defined here")],
                )
                continue
            self.heads[key] = item
            path: Path = (item.kind, item.label) if spec.multiple else (item.kind,)
            body = self.body(item, spec, path)
            if spec.label is not None and not spec.multiple:
                body = {"name": item.label, **body}
            if spec.multiple:
                values.setdefault(item.kind, {})[item.label] = body
            else:
                values[item.kind] = body
            self.blueprint.spans[path] = item.head_span
        for kind, spec in BLOCKS.items():
            if not spec.required and not spec.multiple and kind not in values:
                values[kind] = self.defaults(spec.fields)

    def label_ok(self, block: ast.Block, spec: t.BlockSpec) -> bool:
        if spec.label is not None and block.label is None:
            self.report(
                "DT111",
                f"`{block.kind}` block needs a label: {spec.label}",
                block.kind_span,
                f'write `{block.kind} "name" {{ ... }}`',
            )
            return False
        if spec.label is None and block.label is not None:
            self.report(
                "DT111",
                f"`{block.kind}` block takes no label",
                block.label_span,
                f"write `{block.kind} {{ ... }}`",
            )
            return False
        if block.label is not None and not block.label.strip():
            self.report("DT111", f"`{block.kind}` block has an empty label", block.label_span, "name it")
            return False
        return True

    def body(self, block: ast.Block, spec: t.BlockSpec, path: Path) -> dict[str, Any]:
        attributes = []
        for member in block.body:
            if not isinstance(member, ast.Attribute):
                continue
            if member.key in spec.blocks and member.key not in spec.fields:
                # `machine = "x"` in a target: the name of a nested block, written as an attribute.
                self.report(
                    "DT101",
                    f"`{member.key}` is a block in `{block.kind}`, not an attribute",
                    member.key_span,
                    BLOCK_NOT_ATTRIBUTE.get((block.kind, member.key), f"write `{member.key} {{ ... }}`"),
                )
                continue
            attributes.append(member)
        result = self.record(attributes, spec.fields, path, block.head_span, f"`{block.title}`")
        nested: dict[str, ast.Block] = {}
        for member in block.body:
            if isinstance(member, ast.Attribute):
                continue
            sub = spec.blocks.get(member.kind)
            if sub is None:
                choices = [*spec.blocks, *spec.fields]
                self.report(
                    "DT100",
                    f"block `{member.kind}` is not allowed in `{block.kind}`",
                    member.kind_span,
                    did_you_mean(member.kind, choices)
                    or (f"`{block.kind}` takes " + ", ".join(f"`{b}`" for b in spec.blocks) if spec.blocks else f"`{block.kind}` takes no nested blocks"),
                )
                continue
            if member.kind in nested:
                self.report(
                    "DT110",
                    f"`{member.kind}` is defined twice in `{block.title}`",
                    member.head_span,
                    "keep one of them",
                    [Related(nested[member.kind].head_span, "first defined here")],
                )
                continue
            if self.label_ok(member, sub):
                nested[member.kind] = member
                sub_path = (*path, member.kind)
                result[member.kind] = self.body(member, sub, sub_path)
                self.blueprint.spans[sub_path] = member.head_span
        return result

    def record(
        self,
        attributes: list[ast.Attribute] | tuple[ast.Attribute, ...],
        fields: dict[str, t.Field],
        path: Path,
        owner: Span,
        owner_name: str,
    ) -> dict[str, Any]:
        result: dict[str, Any] = {}
        seen: dict[str, ast.Attribute] = {}
        for attr in attributes:
            field = fields.get(attr.key)
            if field is None:
                self.report(
                    "DT101",
                    f"unknown attribute `{attr.key}` in {owner_name}",
                    attr.key_span,
                    did_you_mean(attr.key, fields) or _takes(fields),
                )
                continue
            if attr.key in seen:
                self.report(
                    "DT109",
                    f"`{attr.key}` is given twice",
                    attr.key_span,
                    "remove one of them",
                    [Related(seen[attr.key].key_span, "first given here")],
                )
                continue
            seen[attr.key] = attr
            result[attr.key] = self.value(attr.value, field.type, (*path, attr.key))
        for key, field in fields.items():
            if key in result:
                continue
            if field.required:
                self.report(
                    "DT107",
                    f"{owner_name} needs `{key}`: {field.doc}",
                    owner,
                    f"add `{key} = …` ({field.type.describe()})",
                )
                result[key] = _INVALID
            else:
                result[key] = _default(field)
        return result

    def defaults(self, fields: dict[str, t.Field]) -> dict[str, Any]:
        return {key: _default(f) for key, f in fields.items()}

    def required_blocks(self, at: Span) -> None:
        values = self.blueprint.values
        for kind, spec in BLOCKS.items():
            if spec.required and kind not in values:
                example = f'{kind} "name" {{ ... }}' if spec.label else f"{kind} {{ ... }}"
                self.report("DT108", f"the blueprint has no `{kind}` block", at, f"add `{example}`: {spec.doc.lower().rstrip('.')}")
        for kind in REQUIRED_KINDS:
            if not values.get(kind):
                self.report("DT108", f"the blueprint has no `{kind}` block", at, f'add `{kind} "name" {{ ... }}`')

    # ---- values ------------------------------------------------------------------------
    def value(self, expr: ast.Expr, type_: t.Type, path: Path) -> Any:
        self.blueprint.spans[path] = expr.span
        if self.bad_number(expr):
            return _INVALID
        if isinstance(expr, ast.Call) and expr.name == "env" and _takes_string(type_):
            return self.env(expr, type_, path)
        method = getattr(self, "v_" + type(type_).__name__)
        return method(expr, type_, path)

    def bad_number(self, expr: ast.Expr) -> bool:
        """Whether `expr` is a number the parser reported (too long, unknown unit) or that is not finite, reported here."""
        if not isinstance(expr, ast.Number):
            return False
        if expr.value is None or (expr.unit is not None and expr.unit not in UNITS):
            return True
        if isfinite(expr.value):
            return False
        # float("1e309") is infinity, which neither JSON nor a job takes.
        self.report("DT106", f"`{expr.text}` is not a finite number", expr.span, "a number is at most about 1.8e308 in size")
        return True

    def mismatch(self, expr: ast.Expr, type_: t.Type, help: str | None = None) -> Any:
        self.report("DT105", f"expected {type_.describe()}, found {_form(expr)}", expr.span, help or _coerce_hint(expr, type_))
        return _INVALID

    def v_Int(self, expr: ast.Expr, type_: t.Int, path: Path) -> Any:
        if not isinstance(expr, ast.Number) or expr.unit or not isinstance(expr.value, int):
            return self.mismatch(expr, type_)
        return self.bounded(expr, expr.value, type_.min, type_.max)

    def v_Float(self, expr: ast.Expr, type_: t.Float, path: Path) -> Any:
        if not isinstance(expr, ast.Number) or expr.unit:
            return self.mismatch(expr, type_)
        value = float(expr.value) if isinstance(expr.value, int) else expr.value
        if type_.open_min and type_.min is not None and value <= type_.min:
            self.report("DT106", f"`{expr.text}` must be greater than {_num(type_.min)}", expr.span, "use a positive value")
            return _INVALID
        if type_.open_max and type_.max is not None and value >= type_.max:
            self.report("DT106", f"`{expr.text}` must be less than {_num(type_.max)}", expr.span, f"use a value below {_num(type_.max)}")
            return _INVALID
        return self.bounded(expr, value, type_.min, type_.max)

    def bounded(self, expr: ast.Number, value: int | float, low, high) -> Any:
        if low is not None and value < low:
            rule = f"at least {_num(low)}"
        elif high is not None and value > high:
            rule = f"at most {_num(high)}"
        else:
            return value
        self.report("DT106", f"`{expr.text}` is out of range", expr.span, f"the value must be {rule}")
        return _INVALID

    def v_Str(self, expr: ast.Expr, type_: t.Str, path: Path) -> Any:
        return expr.value if isinstance(expr, ast.Str) else self.mismatch(expr, type_)

    def v_Source(self, expr: ast.Expr, type_: t.Source, path: Path) -> Any:
        return expr.span.source.text[expr.span.start : expr.span.end]

    def v_Bool(self, expr: ast.Expr, type_: t.Bool, path: Path) -> Any:
        return expr.value if isinstance(expr, ast.Bool) else self.mismatch(expr, type_)

    def v_Duration(self, expr: ast.Expr, type_: t.Duration, path: Path) -> Any:
        if not isinstance(expr, ast.Number) or expr.unit not in DURATIONS:
            return self.mismatch(expr, type_)
        seconds = _in_units(expr)
        whole = round(seconds) if seconds <= t.MAX_SECONDS else 0
        if expr.value <= 0:  # type: ignore[operator]
            problem, help = "must be positive", "use e.g. `30min`"
        elif seconds > t.MAX_SECONDS:
            problem, help = "is longer than a year", "durations are at most `365d`"
        elif seconds < 1:
            problem, help = "is shorter than a second", "durations are whole seconds: at least `1s`"
        elif abs(seconds - whole) > 1e-6:  # float products such as 0.1h are a hair off 360 s
            problem, help = f"is {seconds:g} seconds", f"durations are whole seconds: write `{ceil(seconds)}s`"
        else:
            return whole
        self.report("DT106", f"duration `{expr.text}` {problem}", expr.span, help)
        return _INVALID

    def v_Size(self, expr: ast.Expr, type_: t.Size, path: Path) -> Any:
        if not isinstance(expr, ast.Number) or expr.unit not in SIZES:
            return self.mismatch(expr, type_)
        size = _in_units(expr)
        if expr.value <= 0:  # type: ignore[operator]
            problem, help = "must be positive", "use e.g. `16GB`"
        elif size > t.MAX_BYTES:
            problem, help = "is larger than 1 EB", "sizes are at most `1000PB`"
        elif size < 1:
            problem, help = "is less than a byte", "use at least `1B`"
        else:
            return round(size)
        self.report("DT106", f"size `{expr.text}` {problem}", expr.span, help)
        return _INVALID

    def v_Sym(self, expr: ast.Expr, type_: t.Sym, path: Path) -> Any:
        if isinstance(expr, ast.Symbol):
            if expr.name in type_.choices:
                return expr.name
            self.report(
                "DT102",
                f"unknown value `{expr.name}`",
                expr.span,
                did_you_mean(expr.name, type_.choices) or f"expected {type_.describe()}",
            )
            return _INVALID
        return self.mismatch(expr, type_)

    def v_Name(self, expr: ast.Expr, type_: t.Name, path: Path) -> Any:
        if isinstance(expr, ast.Symbol):
            return expr.name
        return self.mismatch(expr, type_)

    def v_OneOf(self, expr: ast.Expr, type_: t.OneOf, path: Path) -> Any:
        for option in type_.options:
            if _fits(expr, option):
                return self.value(expr, option, path)
        return self.mismatch(expr, type_)

    def v_ListOf(self, expr: ast.Expr, type_: t.ListOf, path: Path) -> Any:
        if not isinstance(expr, ast.ListExpr):
            return self.mismatch(expr, type_)
        count, low, high = len(expr.items), type_.min_len, type_.max_len
        if count < low or (high is not None and count > high):
            found = "the list is empty" if count == 0 else f"the list has {count} item{'s' if count != 1 else ''}"
            wanted = f"at least {low}" if high is None else (f"{low}" if low == high else f"{low} to {high}")
            plural = "s" if (low if high is None else high) != 1 else ""
            self.report("DT106", found, expr.span, f"give {wanted} item{plural}")
            return _INVALID
        items = [self.value(item, type_.item, (*path, i)) for i, item in enumerate(expr.items)]
        return _INVALID if any(i is _INVALID for i in items) else items

    def v_Record(self, expr: ast.Expr, type_: t.Record, path: Path) -> Any:
        if not isinstance(expr, ast.MapExpr):
            return self.mismatch(expr, type_)
        return self.record(expr.entries, type_.fields, path, expr.span, "the map")

    def v_Dict(self, expr: ast.Expr, type_: t.Dict, path: Path) -> Any:
        if not isinstance(expr, ast.MapExpr):
            return self.mismatch(expr, type_)
        result: dict[str, Any] = {}
        for entry in expr.entries:
            if entry.key in result:
                self.report("DT109", f"`{entry.key}` is given twice", entry.key_span, "remove one of them")
                continue
            result[entry.key] = self.value(entry.value, type_.value, (*path, entry.key))
        return result

    def v_Ref(self, expr: ast.Expr, type_: t.Ref, path: Path) -> Any:
        if not isinstance(expr, ast.Ref) or len(expr.parts) != 2 or expr.parts[0] != type_.kind:
            example = f"`{type_.kind}.<name>`"
            if isinstance(expr, ast.Symbol):
                return self.mismatch(expr, type_, f"write {example}, e.g. `{type_.kind}.{expr.name}`")
            return self.mismatch(expr, type_, f"write {example}")
        if type_.local:
            self.refs.append((type_.kind, expr.parts[1], path, expr))
        return expr.parts[1]

    def v_Call(self, expr: ast.Expr, type_: t.Call, path: Path) -> Any:
        if isinstance(expr, ast.Symbol):
            function = type_.functions.get(expr.name)
            if function is not None:
                return self.arguments(ast.Call(expr.name, (), (), expr.span, expr.span), function, path, type_)
            self.report(
                "DT103",
                f"unknown function `{expr.name}`",
                expr.span,
                did_you_mean(expr.name, type_.functions) or f"expected {type_.describe()}",
            )
            return _INVALID
        if not isinstance(expr, ast.Call):
            return self.mismatch(expr, type_)
        function = type_.functions.get(expr.name)
        if function is None:
            self.report(
                "DT103",
                f"unknown function `{expr.name}`",
                expr.name_span,
                did_you_mean(expr.name, type_.functions) or f"expected {type_.describe()}",
            )
            return _INVALID
        return self.arguments(expr, function, path, type_)

    def arguments(self, call: ast.Call, function: t.Function, path: Path, choices: t.Call) -> Any:
        names = list(function.params)
        bound: list[ast.Attribute] = []
        for i, arg in enumerate(call.args):
            if i >= len(names):
                self.report(
                    "DT104",
                    f"`{call.name}` takes at most {len(names)} positional argument{'s' if len(names) != 1 else ''}",
                    arg.span,
                    "name the argument: `key = value`",
                )
                continue
            bound.append(ast.Attribute(names[i], arg, arg.span, arg.span))
        extra = [kw for kw in call.kwargs if kw.key not in function.params]
        known = [kw for kw in call.kwargs if kw.key in function.params]
        result = self.record([*bound, *known], function.params, path, call.span, f"`{call.name}(…)`")
        if extra and function.variadic_kwargs:
            result["kwargs"] = {kw.key: self.literal(kw.value, (*path, "kwargs", kw.key)) for kw in extra}
        else:
            for kw in extra:
                self.report(
                    "DT104",
                    f"`{call.name}` takes no argument `{kw.key}`",
                    kw.key_span,
                    did_you_mean(kw.key, function.params) or _owners(kw.key, choices) or _takes(function.params, call.name),
                )
        return {"fn": call.name, **result}

    def literal(self, expr: ast.Expr, path: Path) -> Any:
        """Convert an untyped value (keyword arguments of `python(...)`) as written."""
        self.blueprint.spans[path] = expr.span
        if self.bad_number(expr):
            return _INVALID
        if isinstance(expr, ast.Number):
            if expr.unit is None:
                return expr.value
            # Seconds may be fractions here (`0.5s`): only the bounds of durations and sizes apply.
            value, limit = _in_units(expr), t.MAX_SECONDS if expr.unit in DURATIONS else t.MAX_BYTES
            if abs(value) > limit:
                self.report("DT106", f"`{expr.text}` is out of range", expr.span, "durations are at most `365d`, sizes `1000PB`")
                return _INVALID
            return round(value) if expr.unit in SIZES else value
        if isinstance(expr, (ast.Str, ast.Bool)):
            return expr.value
        if isinstance(expr, ast.Symbol):
            return expr.name
        if isinstance(expr, ast.ListExpr):
            return [self.literal(item, (*path, i)) for i, item in enumerate(expr.items)]
        if isinstance(expr, ast.MapExpr):
            return {e.key: self.literal(e.value, (*path, e.key)) for e in expr.entries}
        if isinstance(expr, ast.Call) and expr.name == "env":
            return self.env(expr, t.Str(), path)
        self.report("DT105", f"{_form(expr)} cannot be passed on to Python", expr.span, "use a string, number, list or map")
        return _INVALID

    def env(self, call: ast.Call, type_: t.Type, path: Path) -> Any:
        if call.kwargs or not 1 <= len(call.args) <= 2 or not isinstance(call.args[0], ast.Str):
            self.report("DT105", "`env` takes a variable name and an optional default", call.span, 'write `env("NAME")` or `env("NAME", "default")`')
            return _INVALID
        name = call.args[0].value
        value = self.environ.get(name)
        if value is None:
            if len(call.args) == 1:
                if self._elsewhere(path):
                    return _INVALID  # another target's: not resolved for this one
                self.report(
                    "DT113",
                    f"environment variable `{name}` is not set",
                    call.span,
                    f'set `{name}` or give a default: `env("{name}", "…")`',
                )
                return _INVALID
            default = call.args[1]
            if isinstance(default, ast.Call) and default.name == "env":
                return self.env(default, type_, path)
            return self.value(default, _string_of(type_), path)
        return value

    def _elsewhere(self, path: Path) -> bool:
        """Whether `path` lies in a target that is not being linted, compiled or run."""
        if self.targets is None or path[:1] != ("target",) or len(path) < 2:
            return False
        return path[1] not in self.targets

    # ---- references --------------------------------------------------------------------
    def references(self) -> None:
        values = self.blueprint.values
        for kind, label, path, ref in self.refs:
            labels = values.get(kind) or {}
            if label not in labels:
                match = closest(label, labels)
                self.report(
                    "DT112",
                    f"`{ref.dotted}` does not exist",
                    ref.span,
                    f"did you mean `{kind}.{match}`?" if match else f'define `{kind} "{label}" {{ ... }}`',
                )
                _set(values, path, _INVALID)
        train = values.get("train")
        models = values.get("model") or {}
        objective = train.get("objective") if isinstance(train, dict) else None
        if isinstance(objective, dict) and objective.get("fn") == "gan" and train.get("model") is None:
            train["model"] = objective.get("generator")  # the model a gan makes samples with
        if isinstance(train, dict) and train.get("model") is None and models:
            if len(models) == 1:
                train["model"] = next(iter(models))
            else:
                self.report(
                    "DT107",
                    "`train` needs `model`: the blueprint defines several models",
                    self.blueprint.span("train"),
                    "add `model = model.<name>`: " + ", ".join(f"`model.{m}`" for m in models),
                )


def _in_units(expr: ast.Number) -> int | float:
    """Return a duration in seconds, a size in bytes (infinite when too large for a float)."""
    factor = DURATIONS.get(expr.unit) or SIZES[expr.unit]  # type: ignore[arg-type]
    try:
        return expr.value * factor  # type: ignore[operator]
    except OverflowError:  # a huge integer times a float unit (`ms`)
        return inf


def _set(values: dict, path: Path, value: Any) -> None:
    node: Any = values
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value


def _default(field: t.Field) -> Any:
    """Return a field's default; a default call carries its own arguments' defaults."""
    value = field.default
    if isinstance(field.type, t.Call) and isinstance(value, dict):
        params = field.type.functions[value["fn"]].params
        return {"fn": value["fn"], **{k: _copy(p.default) for k, p in params.items()}, **_copy(value)}
    return _copy(value)


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def _owners(key: str, choices: t.Call) -> str | None:
    """Say which other functions take the argument `key` (`pos_weight` is an argument of `bce`)."""
    owners = [f"`{name}`" for name, function in choices.functions.items() if key in function.params]
    return f"`{key}` is an argument of {', '.join(owners)}" if owners else None


def _takes(fields: dict[str, t.Field], owner: str | None = None) -> str:
    if not fields:
        return f"`{owner}` takes no arguments" if owner else "nothing is allowed here"
    return "allowed: " + ", ".join(f"`{k}`" for k in fields)


def _form(expr: ast.Expr) -> str:
    if isinstance(expr, ast.Number):
        if expr.unit in DURATIONS:
            return f"the duration `{expr.text}`"
        if expr.unit in SIZES:
            return f"the size `{expr.text}`"
        return f"the number `{expr.text}`"
    if isinstance(expr, ast.Symbol):
        return f"the name `{expr.name}`"
    if isinstance(expr, ast.Str):
        return f'the string "{expr.value}"'
    if isinstance(expr, ast.Bool):
        return f"`{'true' if expr.value else 'false'}`"
    if isinstance(expr, ast.Call):
        return f"a call to `{expr.name}`"
    if isinstance(expr, ast.Ref):
        return f"the reference `{expr.dotted}`"
    return _FORM[type(expr)]


def _coerce_hint(expr: ast.Expr, type_: t.Type) -> str:
    options = type_.options if isinstance(type_, t.OneOf) else (type_,)
    symbols = [c for o in options if isinstance(o, t.Sym) for c in o.choices]
    if isinstance(expr, ast.Str) and expr.value in symbols:
        return f"write it without quotes: `{expr.value}`"
    if isinstance(expr, ast.Symbol) and isinstance(type_, t.Str):
        return f'quote it: "{expr.name}"'
    if isinstance(expr, ast.Number) and not expr.unit and isinstance(type_, t.Duration):
        return f"add a unit: `{expr.text}min`, `{expr.text}h` or `{expr.text}s`"
    if isinstance(expr, ast.Number) and not expr.unit and isinstance(type_, t.Size):
        return f"add a unit: `{expr.text}GB`"
    if isinstance(expr, ast.Number) and isinstance(type_, t.Int) and not expr.unit:
        return "use a whole number"
    if isinstance(expr, ast.Str) and isinstance(type_, (t.Int, t.Float)):
        return f"remove the quotes: `{expr.value}`"
    return f"use {type_.describe()}"


def _fits(expr: ast.Expr, type_: t.Type) -> bool:
    """Whether an expression has the form of a type (for choosing among `OneOf` options)."""
    if isinstance(type_, (t.Int, t.Float)):
        return isinstance(expr, ast.Number) and not expr.unit
    if isinstance(type_, (t.Sym, t.Name)):
        return isinstance(expr, ast.Symbol)
    if isinstance(type_, t.Str):
        return isinstance(expr, ast.Str) or (isinstance(expr, ast.Call) and expr.name == "env")
    if isinstance(type_, t.ListOf):
        return isinstance(expr, ast.ListExpr)
    return True


def _takes_string(type_: t.Type) -> bool:
    if isinstance(type_, t.OneOf):
        return any(_takes_string(o) for o in type_.options)
    return isinstance(type_, t.Str)


def _string_of(type_: t.Type) -> t.Type:
    if isinstance(type_, t.OneOf):
        return next(o for o in type_.options if isinstance(o, t.Str))
    return type_


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)
