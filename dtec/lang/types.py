"""Value types of the vocabulary; each converts an AST expression into a plain Python value."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


# Bounds on every value, so that what reads it takes it: counts reach Slurm and Kubernetes as 32-bit
# integers (and seeds NumPy, which takes them below 2**32); a year is far above any partition's
# walltime limit; 1 EB (10**18 bytes) keeps every byte count in a signed 64-bit integer.
MAX_INT = 2**31 - 1
MAX_SECONDS = 365 * 86400
MAX_BYTES = 10**18


@dataclass(frozen=True)
class Type:
    """Base of all value types; `describe` names the type in messages and docs."""

    def describe(self) -> str:
        raise NotImplementedError


@dataclass(frozen=True)
class Int(Type):
    """A whole number, at most MAX_INT unless bounded lower."""

    min: int | None = None
    max: int = MAX_INT

    def describe(self) -> str:
        if self.max == MAX_INT:
            return "an integer"
        return f"an integer from {self.min} to {self.max:,}" if self.min is not None else f"an integer up to {self.max:,}"


@dataclass(frozen=True)
class Float(Type):
    """A number (integers accepted), optionally bounded; `open_min`/`open_max` exclude a bound."""

    min: float | None = None
    max: float | None = None
    open_min: bool = False
    open_max: bool = False

    def describe(self) -> str:
        return "a number"


@dataclass(frozen=True)
class Str(Type):
    """A string; `env("NAME", "default")` is accepted wherever a string is."""

    def describe(self) -> str:
        return "a string"


@dataclass(frozen=True)
class Bool(Type):
    """`true` or `false`."""

    def describe(self) -> str:
        return "`true` or `false`"


@dataclass(frozen=True)
class Duration(Type):
    """A duration such as `30min`; converted to whole seconds, 1 to MAX_SECONDS."""

    def describe(self) -> str:
        return "a duration such as `30min`"


@dataclass(frozen=True)
class Size(Type):
    """A size such as `16GB`; converted to bytes, 1 to MAX_BYTES."""

    def describe(self) -> str:
        return "a size such as `16GB`"


@dataclass(frozen=True)
class Sym(Type):
    """One of a fixed set of bare names."""

    choices: tuple[str, ...]

    def describe(self) -> str:
        return "one of " + ", ".join(f"`{c}`" for c in self.choices)


@dataclass(frozen=True)
class Name(Type):
    """A bare name the blueprint chooses (a model's output, `recon`): an identifier, not a string."""

    def describe(self) -> str:
        return "a bare name such as `recon`"


@dataclass(frozen=True)
class OneOf(Type):
    """The first of several types that matches the expression's form."""

    options: tuple[Type, ...]

    def describe(self) -> str:
        return " or ".join(o.describe() for o in self.options)


@dataclass(frozen=True)
class ListOf(Type):
    """A list of one element type, of `min_len` items or more (and at most `max_len`)."""

    item: Type
    min_len: int = 0
    max_len: int | None = None

    def describe(self) -> str:
        return f"a list of {_plural(self.item.describe())}"


@dataclass(frozen=True)
class Source(Type):
    """Any value, kept as its source text: checked where it is used (a sweep's `choice` values)."""

    def describe(self) -> str:
        return "a value"


@dataclass(frozen=True)
class Field:
    """A named attribute or argument: its type, whether it is required, its default and doc."""

    type: Type
    doc: str
    required: bool = False
    default: Any = None


@dataclass(frozen=True)
class Record(Type):
    """An inline map `{ k = v }` with known keys."""

    fields: dict[str, Field]

    def describe(self) -> str:
        return "a map `{ " + ", ".join(f"{k} = …" for k in self.fields) + " }`"


@dataclass(frozen=True)
class Dict(Type):
    """An inline map with free keys and one value type (e.g. environment variables)."""

    value: Type

    def describe(self) -> str:
        return f"a map of {_plural(self.value.describe())}"


@dataclass(frozen=True)
class Function:
    """A function a call may name; positional arguments bind to `params` in order."""

    params: dict[str, Field]
    doc: str
    variadic_kwargs: bool = False  # python("mod:fn", ...) passes any keyword on


@dataclass(frozen=True)
class Call(Type):
    """A call to one of several functions, or a bare name for a function without arguments."""

    functions: dict[str, Function]

    def describe(self) -> str:
        return "one of " + ", ".join(f"`{name}(…)`" for name in self.functions)


@dataclass(frozen=True)
class Ref(Type):
    """A reference to a labelled block of one kind, e.g. `data.gauges`."""

    kind: str
    local: bool = True  # False: a block of another blueprint, resolved where that one is read

    def describe(self) -> str:
        return f"a reference `{self.kind}.<name>`"


@dataclass(frozen=True)
class BlockSpec:
    """A block kind: its label rule, whether it may repeat, its attributes and nested blocks."""

    doc: str
    fields: dict[str, Field]
    label: str | None = None  # what the label names, or None when the block takes none
    required: bool = False
    multiple: bool = False  # labelled blocks that may repeat, one per label
    blocks: dict[str, BlockSpec] = field(default_factory=dict)


def _plural(text: str) -> str:
    for article in ("an ", "a "):
        if text.startswith(article):
            return text[len(article) :] + "s"
    return text
