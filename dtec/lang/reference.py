"""The language reference in Markdown, generated from the vocabulary so it never drifts."""

from __future__ import annotations

from dtec.lang import types as t
from dtec.lang.schema import BLOCKS

INTRO = """\
# The `.twin` language

A blueprint describes one training job: the data, the model, how it is trained and distributed,
what is measured, and the machines it may run on. `blueprints/quickstart.twin` is the tour.

## Lexical and syntactic rules

- Files are UTF-8. Lines end with LF, CR LF or a lone CR (old Mac files), as in any editor;
  `dtec fmt` writes LF.
- `#` starts a comment that runs to the end of the line. `# dtec: ignore[DT115]` suppresses the
  named warnings on its own line (trailing comment) or on the next line (comment on a line of its
  own); errors cannot be suppressed, and a suppression that suppresses nothing is a warning (DT120).
- A file is a sequence of blocks and `import "relative/path.twin"` lines. A block is
  `kind "label" { ... }` or `kind { ... }`; blocks may nest (`target "slurm" { machine { ... } }`).
- Inside a block, attributes `key = value` are separated by new lines or commas.
- Values:
  - strings in double quotes, with the escapes `\\"`, `\\\\`, `\\n` and `\\t`;
  - integers (`64`) and numbers (`0.9`, `1e-3`, `-2.5`), in ASCII digits; a number must be finite
    (`1e309` is not) and an integer attribute takes at most 2147483647 (less where noted);
  - durations: `90s`, `30min`, `2h`, `1d` (also `ms`; not `m`, which could be minutes or
    months), whole seconds from `1s` to `365d`;
  - sizes: `512MB`, `16GB`, `64GiB` (`B`, `KB`, `MB`, `GB`, `TB`, `PB`, `KiB` … `PiB`, and
    `Ki` … `Pi` as Kubernetes writes them; not `M` or `G` alone, which Slurm counts in powers of
    1024 and Kubernetes in powers of 1000), from `1B` to `1000PB` (1 EB), rounded to whole bytes;
  - `true` and `false`;
  - bare names as symbols: `mse`, `ddp`, `auto`, `all`;
  - lists `[a, b]` and inline maps `{ k = v, ... }`;
  - calls `name(positional, key = value)`; positional arguments bind to the parameters in the
    order listed below;
  - references to labelled blocks: `data.gauges`, `model.surrogate`;
  - `env("NAME")` and `env("NAME", "default")` wherever a string is expected, resolved when the
    blueprint is linted or compiled (an unset variable without a default is an error, DT113).
- `import` paths are relative to the importing file. Imported blocks join the blueprint; a block
  defined twice (in any files) is an error that points at both places (DT110), and so is an import
  cycle (DT011).
- Imports stay inside the project, since a blueprint may come from someone else (a pull request
  linted in CI): an import names a `.twin` file, and that file, symlinks resolved, lies in the
  project root. The root is the folder named by the environment variable `DTEC_PROJECT_ROOT` when
  it is set; else the repository of the blueprint being linted or compiled (the nearest folder
  above it holding `.git`); else that blueprint's own folder. Any other import, and an import of a
  file that does not parse, is an error at the `import` line (DT010) that shows none of the file.
- Unknown blocks, attributes, arguments and values are errors with a "did you mean" (DT100–DT104).
"""


def language_reference() -> str:
    """Return docs/language.md."""
    out = [INTRO, "## Blocks\n"]
    for kind, spec in BLOCKS.items():
        out += _block(kind, spec, level=3)
    return "\n".join(out).rstrip() + "\n"


def _block(kind: str, spec: t.BlockSpec, level: int) -> list[str]:
    head = f'{kind} "{spec.label.split()[-1]}"' if spec.label else kind
    notes = []
    if spec.required:
        notes.append("required")
    if spec.multiple:
        notes.append("one per label")
    elif spec.label is None:
        notes.append("at most one")
    out = [f"{'#' * level} `{head} {{ ... }}`\n", f"{spec.doc} ({', '.join(notes)}; the label is {spec.label})\n" if spec.label else f"{spec.doc} ({', '.join(notes)})\n"]
    out += _fields(spec.fields)
    # A call, or a list of calls (`metrics = [f1, rmse]`): its functions are listed below.
    items = {key: f.type.item if isinstance(f.type, t.ListOf) else f.type for key, f in spec.fields.items()}
    calls = [(key, type_) for key, type_ in items.items() if isinstance(type_, t.Call)]
    for key, call in calls:
        out.append(f"Functions for `{key}`:\n")
        for name, function in call.functions.items():
            out += function_lines(name, function)
        out.append("")
    for sub_kind, sub in spec.blocks.items():
        out += _block(sub_kind, sub, level + 1)
    return out


def signature(name: str, function: t.Function) -> str:
    """Return a function's signature as the reference writes it: `mlp(input, hidden, output)`."""
    return f"{name}({', '.join(function.params)}{', ...' if function.variadic_kwargs else ''})"


def function_lines(name: str, function: t.Function) -> list[str]:
    """Return a function's Markdown list item: its signature and doc, then one line per argument."""
    out = [f"- `{signature(name, function)}`: {function.doc}"]
    for pname, field in function.params.items():
        out.append(f"  - `{pname}`: {_type(field)} — {field.doc}")
    return out


def _fields(fields: dict[str, t.Field]) -> list[str]:
    if not fields:
        return []
    rows = ["| attribute | type | default | meaning |", "|---|---|---|---|"]
    for key, field in fields.items():
        rows.append(f"| `{key}` | {_type(field)} | {default_text(field)} | {field.doc} |")
    return [*rows, ""]


def _type(field: t.Field) -> str:
    return field.type.describe().replace("|", "\\|")


def default_text(field: t.Field) -> str:
    """Return a field's default as the reference shows it: `required`, `—` or the value in code."""
    if field.required:
        return "required"
    value = field.default
    if value is None:
        return "—"
    if isinstance(value, dict) and "fn" in value:
        return f"`{value['fn']}`"
    if isinstance(value, bool):
        return f"`{'true' if value else 'false'}`"
    if isinstance(value, dict):
        return "`{ " + ", ".join(f"{k} = {v}" for k, v in value.items()) + " }`"
    if isinstance(value, str) and field.type.describe().startswith("a string"):
        return f'`"{value}"`'
    return f"`{value}`"
