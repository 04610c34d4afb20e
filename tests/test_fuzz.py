"""Fuzz suite: hostile blueprints (the base blueprint H plus mutations) must keep dtec's promises.

Every string, number, size and duration key of the vocabulary (dtec.lang.schema.BLOCKS, the target's
`machine { }` overrides and `env()` values included) gets hostile values; the oracles are the tool's
promises, not "no exception": lint and compile agree, no internal error, scripts pass `bash -n` and
shellcheck and run nothing but the launch, manifests validate, JSON is strict, train.py holds no
code from the blueprint, fmt keeps meaning and suppressions, spans point inside the file.

Set DTEC_FUZZ_EXAMPLES=2000 for a long bug hunt (random, every target per example: about a second
each); the default is derandomized and samples one or two targets per example, to stay well under
a minute on 2 cores. Each oracle is also run on the issue 9 findings, and on known-bad output.
"""

from __future__ import annotations

import ast
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dtec.compiler import compile_blueprint
from dtec.output import default_folder, write_bundle
from dtec.diagnostics import Diagnostic
from dtec.format import format_source
from dtec.format.comments import comment_text
from dtec.lang import types as t
from dtec.lang.schema import BLOCKS, OPTIMIZER
from dtec.analysis import analyse
from dtec.machines import load_machines
from dtec.render import render
from dtec.rules import RULES
from dtec.source import Source
from dtec.syntax.parser import parse
from dtec.units import DURATIONS, SIZES

ROOT = Path(__file__).resolve().parent.parent
MACHINES = {m.name: m for m in load_machines()}
_LONG = int(os.environ.get("DTEC_FUZZ_EXAMPLES", "0"))
FUZZ = settings(
    max_examples=_LONG or 120,
    deadline=None,
    derandomize=not _LONG,
    suppress_health_check=list(HealthCheck),
    print_blob=True,
)
K8S_VERSION = "1.30.0"
SECRET = "FUZZSECRET"  # in files outside the blueprint's project (or not blueprints): never echoed
MARKER = "PWNED"  # what payloads try to create or name; never a file, never code in train.py

# ---- hostile values --------------------------------------------------------------------------

PAYLOADS = [
    "$(touch PWNED)", "`touch PWNED`", "$(: > PWNED)", "'$(: > PWNED)'", '"; : > PWNED; "',
    "'; : > PWNED; '", "x\ntouch PWNED", "x\n: > PWNED", "--gres=gpu:{n}\ntouch PWNED",
    "${IFS}", "$IFS", "{n}", "{x}", "{gb}", "{GB}", "{total}", "{", "}", "{{n}}", "%j", "\\",
    "x\\", '"""', "'''", '"""\nimport os; os.system("touch PWNED")\n"""',
    "\\\"; __import__('os').system('touch PWNED') #", "C:\\users\\me", "torch'run", "é", "😀",
    "\u2028", "\x00", "\r", "\t", " ", "", "-", "--", "#", "*", "~", "!", "&", "|", ";", ">",
    "a=b", "=", "../..", "/etc/passwd", "tools\\", "$(hostname)", "x" * 300,
]
hostile_strings = st.one_of(
    st.sampled_from(PAYLOADS),
    st.lists(st.sampled_from([*PAYLOADS, "a", "x1"]), min_size=2, max_size=4).map("".join),
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=30),
    st.integers(200, 3000).map(lambda n: "a" * n),
)
# Literals the checker must refuse, or take only when in range: huge, tiny, non-finite, not ASCII.
EXTREME_NUMBERS = [
    "0", "-1", "1e309", "-1e309", "1e999", "1e-400", "5e-324", "2147483648", "4294967296",
    "9223372036854775808", "300000000", "1" + "0" * 21, "1e21", "9" * 400, "３２", "١٠٠",
    "1_000",
    "+3", "00", ".5", "5.", "-0.0",
]
extreme_numbers = st.sampled_from(EXTREME_NUMBERS)
numbers = st.one_of(
    extreme_numbers,
    st.integers(-10, 10**25).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
)


def numbers_for(type_: t.Int | t.Float) -> st.SearchStrategy[str]:
    """Mostly numbers the type takes (later stages see them), huge ones included; else extremes."""
    low = 0 if type_.min is None else type_.min
    if isinstance(type_, t.Int):
        high = 2**64 if type_.max is None else type_.max
        valid = st.one_of(st.integers(low, low + 9), st.integers(low, high)).map(str)
    else:
        valid = st.floats(low, 1e300 if type_.max is None else type_.max, allow_nan=False).map(repr)
    return st.one_of(valid, valid, extreme_numbers)


sizes = st.one_of(
    st.sampled_from(
        ["1B", "0B", "512MB", "1e400GB", "1e20TB", "1.5GB", "-1GB", "4GB", "３GB", "1ms"]
    ),
    st.builds(str.__add__, numbers, st.sampled_from(sorted(SIZES))),
)
durations = st.one_of(
    st.sampled_from(
        ["1ms", "0.5s", "1e309s", "1e20d", "0s", "-1min", "30min", "1min", "1GB", "１h"]
    ),
    st.builds(str.__add__, numbers, st.sampled_from(sorted(DURATIONS))),
)
ENV_NAMES = ("FUZZ_A", "FUZZ_B")


def twin_string(value: str) -> str:
    """Write `value` as a .twin string literal (the language's four escapes)."""
    out = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
    return f'"{out}"'


def string_values() -> st.SearchStrategy[str]:
    """A string literal, or `env()` of a hostile environment variable (set or with a default)."""
    return st.one_of(
        hostile_strings.map(twin_string),
        st.sampled_from(ENV_NAMES).map(lambda n: f'env("{n}")'),
        hostile_strings.map(lambda v: f'env("FUZZ_UNSET", {twin_string(v)})'),
    )


def values_for(type_: t.Type, path: tuple[str, ...]) -> st.SearchStrategy[str]:
    """Hostile .twin text for a value of `type_`, now and then of another kind."""
    wrong = st.sampled_from(
        ["1", '"x"', "true", "[]", "{}", "nope", "data.d", "f()", "1GB", "1min"]
    )
    right = _values(type_, path)
    return st.one_of(*[right] * 9, wrong)


def _values(type_: t.Type, path: tuple[str, ...]) -> st.SearchStrategy[str] | None:
    if isinstance(type_, t.Str):
        return string_values()
    if isinstance(type_, (t.Int, t.Float)):
        return numbers_for(type_)
    if isinstance(type_, t.Size):
        return sizes
    if isinstance(type_, t.Duration):
        return durations
    if isinstance(type_, t.Bool):
        return st.sampled_from(["true", "false"])
    if isinstance(type_, t.Sym):
        return st.sampled_from([*type_.choices, "é", "all", "none"])
    if isinstance(type_, t.Name):
        return st.sampled_from(["recon", "mu", "logvar", "é"])
    if isinstance(type_, t.Ref):
        return st.sampled_from([f"{type_.kind}.{LABELS[type_.kind]}", f"{type_.kind}.nope"])
    if isinstance(type_, t.OneOf):
        return st.one_of([_values(o, path) for o in type_.options])
    if isinstance(type_, t.ListOf):
        return st.lists(_values(type_.item, path), max_size=3).map(lambda v: f"[{', '.join(v)}]")
    if isinstance(type_, t.Dict):
        # Not PATH: replacing it is the user's call (and would hide the stub commands).
        keys = st.sampled_from(["X", "HOME", "LD_PRELOAD", "A_1", "é"])
        pairs = st.tuples(keys, _values(type_.value, path)).map(" = ".join)
        return st.lists(pairs, max_size=3).map(lambda v: "{" + ", ".join(v) + "}")
    if isinstance(type_, t.Record):
        keys = sorted(type_.fields)
        return st.lists(
            st.sampled_from(keys).flatmap(
                lambda k: _values(type_.fields[k].type, (*path, k)).map(lambda v: f"{k} = {v}")
            ),
            max_size=2,
        ).map(lambda v: "{" + ", ".join(v) + "}")
    if isinstance(type_, t.Call):
        return st.sampled_from(sorted(type_.functions)).map(lambda fn: call_text(path, fn, {}))
    return None


# ---- the base blueprint H, and the vocabulary's slots ------------------------------------------

LABELS = {"twin": "t", "data": "d", "model": "m"}
# Arguments that make each function fit H (the data's shape follows the architecture).
BENIGN_CALLS: dict[tuple[str, ...], dict[str, dict[str, str]]] = {
    ("data", "source"): {
        "synthetic": {"samples": "64", "shape": "[8]", "targets": "1"},
        "npz": {"path": '"d.npz"', "shape": "[8]", "targets": "1"},
        "csv": {"path": '"d.csv"', "target": '"y"', "features": "8"},
        "python": {"callable": '"mod:data"'},
        "zarr": {"path": '"d.zarr"', "inputs": '["a"]', "targets": '["a"]', "window": "4"},
        "netcdf": {"path": '"d.nc"', "inputs": '["a"]', "targets": '["a"]', "window": "4"},
        "hdf5": {"path": '"d.h5"', "x": '"x"', "y": '"y"', "targets": "1"},
        "sampler": {"shape": "[8]", "batches": "4"},
    },
    ("model", "arch"): {
        "mlp": {"input": "8", "output": "1"},
        "lstm": {"input": "8", "hidden": "8", "output": "1"},
        "cnn": {"channels": "3", "output": "1"},
        "unet": {"channels": "3", "output": "1"},
        "transformer": {"input": "8", "dim": "8", "heads": "2", "layers": "1", "output": "1"},
        "python": {"class": '"mod:Net"'},
    },
    ("train", "scheduler"): {"step": {"every": "1"}, "multistep": {"milestones": "[1]"},
                             "exponential": {"gamma": "0.9"}, "onecycle": {"max_lr": "0.01"},
                             "plateau": {"monitor": "min(val_loss)"}},
    ("train", "loss"): {"python": {"callable": '"mod:loss"'}, "sum": {"terms": "[mse, mae]"}},
    ("train", "objective"): {"python": {"callable": '"mod:step"'},
                             "gan": {"generator": "model.m", "discriminator": "model.m"},
                             "reverse_kl": {"action": 'python("mod:action")'}},
    ("model", "init"): {"normal": {"std": "0.02"}},
    ("data", "input"): {"field": {"name": '"x"'}},
    ("data", "target"): {"field": {"name": '"y"'}, "channels": {"index": "0"}},
}
ARCH_SHAPES = {"lstm": "[4, 8]", "transformer": "[4, 8]", "cnn": "[3, 8, 8]", "unet": "[3, 8, 8]"}


def call_text(path: tuple[str, ...], fn: str, args: dict[str, str]) -> str:
    """Text of a call to `fn` at `path`: H's arguments for it, with `args` replacing some."""
    merged = {**BENIGN_CALLS.get(path, {}).get(fn, {}), **args}
    return f"{fn}({', '.join(f'{k} = {v}' for k, v in merged.items())})"


@dataclass(frozen=True)
class Slot:
    """A place in the vocabulary that takes a value: block path, key (and function), its type."""

    block: tuple[str, ...]  # ("data",) or ("target", "machine")
    key: str  # attribute, or "<label>"
    inner: tuple[str, ...]  # (function, argument) inside a call, or (field,) inside a record
    type: t.Type


def slots() -> list[Slot]:
    """Every value slot of BLOCKS: labels, attributes, call arguments, record fields."""
    found: list[Slot] = []

    def walk(specs: dict[str, t.BlockSpec], prefix: tuple[str, ...]) -> None:
        for kind, spec in specs.items():
            block = (*prefix, kind)
            if spec.label and kind != "target":  # the target's label picks the machine
                found.append(Slot(block, "<label>", (), t.Str()))
            for key, f in spec.fields.items():
                found.append(Slot(block, key, (), f.type))
                if isinstance(f.type, t.Call):
                    for fn, function in f.type.functions.items():
                        params = function.params.items()
                        found.extend(Slot(block, key, (fn, a), p.type) for a, p in params)
                if isinstance(f.type, t.Record):
                    found.extend(Slot(block, key, (k,), p.type) for k, p in f.type.fields.items())
            walk(spec.blocks, block)

    walk(BLOCKS, ())
    return found


SLOTS = slots()


@dataclass
class Case:
    """A generated blueprint: text, environment, targets to compile, what it is known to be."""

    text: str
    environ: dict[str, str]
    targets: list[str]
    newline: str
    non_ascii_number: bool
    local_walltime: bool


def render_blueprint(
    blocks: dict[tuple[str, ...], dict[str, str]],
    labels: dict[str, str],
    draw: st.DrawFn,
) -> tuple[str, str]:
    """Print blocks with drawn layout: one-line or not, trailing comments and suppressions."""
    newline = draw(st.sampled_from(["\n"] * 18 + ["\r\n", "\r"]))
    codes = st.sampled_from(sorted(RULES))
    trailing = st.one_of(
        st.just(""), st.just(""), st.just("  # note"), codes.map(lambda c: f"  # dtec: ignore[{c}]")
    )
    lines: list[str] = []
    if draw(st.integers(0, 11)) == 0:
        lines.append(f"import {twin_string(draw(st.sampled_from(IMPORTS)))}")
    for block in [b for b in blocks if len(b) == 1]:
        kind = block[0]
        head = kind + (f" {labels[kind]}" if kind in labels else "")
        attrs = [f"{k} = {v}" for k, v in blocks[block].items()]
        nested = [(b[-1], blocks[b]) for b in blocks if len(b) == 2 and b[0] == kind]
        if not nested and draw(st.booleans()):
            lines.append(f"{head} {{ {', '.join(attrs)} }}{draw(trailing)}".replace("{  }", "{}"))
            continue
        lines.append(f"{head} {{{draw(trailing)}")
        lines += [f"  {a}{draw(trailing)}" for a in attrs]
        for name, inner in nested:
            lines.append(f"  {name} {{")
            lines += [f"    {k} = {v}{draw(trailing)}" for k, v in inner.items()]
            lines.append("  }")
        lines.append("}")
    return newline.join(lines) + newline, newline


IMPORTS = [
    "../secret.env", "notes.env", "loop.twin", "/dev/null", "missing.twin", "sub/../notes.env"
]


@st.composite
def blueprints(draw: st.DrawFn) -> Case:
    """H plus one to three mutations of any slot, with a target block for a sampled machine."""
    names = sorted(MACHINES)
    target = draw(st.sampled_from(names))
    machine = MACHINES[target]
    blocks: dict[tuple[str, ...], dict[str, str]] = {
        ("twin",): {},
        ("data",): {"source": call_text(("data", "source"), "synthetic", {}), "batch": "8"},
        ("model",): {"arch": call_text(("model", "arch"), "mlp", {}), "input": "data.d"},
        ("train",): {"loss": "mse"},
        ("target",): {"account": '"a"'} if machine.rules.account_required else {},
    }
    if machine.is_kube:
        blocks[("target",)]["image"] = '"python:3.12"'
    labels = {**{k: twin_string(v) for k, v in LABELS.items()}, "target": twin_string(target)}
    calls = {("data", "source"): "synthetic", ("model", "arch"): "mlp"}
    call_args: dict[tuple[str, ...], dict[str, str]] = {}
    non_ascii = False
    for slot in draw(st.lists(st.sampled_from(SLOTS), min_size=1, max_size=3)):
        value = draw(values_for(slot.type, (*slot.block, slot.key)))
        # A digit outside ASCII, outside a string: a number the language must refuse.
        bare = re.sub(r'"(\\.|[^"\\])*"', "", value)
        non_ascii |= any(c.isdigit() and not c.isascii() for c in bare)
        block = blocks.setdefault(slot.block, {})
        if slot.key == "<label>":
            labels[slot.block[0]] = value
        elif len(slot.inner) == 2:  # an argument of one function of a call
            where = (*slot.block, slot.key)
            calls[where] = slot.inner[0]
            call_args[where] = {**call_args.get(where, {}), slot.inner[1]: value}
        elif len(slot.inner) == 1:
            block[slot.key] = "{" + f"{slot.inner[0]} = {value}" + "}"
        else:
            block[slot.key] = value
            calls.pop((*slot.block, slot.key), None)
    for where, fn in calls.items():
        text = call_text(where, fn, call_args.get(where, {}))
        blocks.setdefault(where[:-1], {})[where[-1]] = text
    arch = calls.get(("model", "arch"))
    if arch in ARCH_SHAPES and calls.get(("data", "source")) == "synthetic":
        source = call_args.get(("data", "source"), {})
        source = {"shape": ARCH_SHAPES[arch], **source}
        blocks[("data",)]["source"] = call_text(("data", "source"), "synthetic", source)
    text, newline = render_blueprint(blocks, labels, draw)
    environ = {name: draw(hostile_strings.filter(lambda s: "\x00" not in s)) for name in ENV_NAMES}
    others = [n for n in names if n != target]
    targets = [target, *(others if _LONG else draw(st.lists(st.sampled_from(others), max_size=1)))]
    local_walltime = target == "local" and "walltime" in blocks[("target",)]
    return Case(text, environ, targets, newline, non_ascii, local_walltime)


# ---- the world: a project folder, a secret outside it, stub commands --------------------------

LAUNCH = {"srun", "torchrun", "python", "python3"}
STUBS = {"scontrol", "module", "singularity", "apptainer"} | LAUNCH
# Real utilities the generated scripts may use; everything else is "command not found".
UTILITIES = ("mkdir", "dirname", "sed", "cat", "head", "hostname", "date", "nproc", "basename", "timeout")
STUB = """#!/bin/bash
printf '%s\\n' "${{0##*/}}" >> "$FUZZ_CALLS"
{tail}
"""


@dataclass
class World:
    """Folders of one fuzz run: the blueprint's project, outputs, stub commands and their log."""

    root: Path
    project: Path = field(init=False)
    bin: Path = field(init=False)
    calls: Path = field(init=False)

    def __post_init__(self) -> None:
        self.project = self.root / "proj"
        self.bin = self.root / "bin"
        self.calls = self.root / "calls.log"
        (self.project / ".git").mkdir(parents=True)
        (self.project / "sub").mkdir()
        (self.root / "secret.env").write_text(f"API_TOKEN={SECRET}1\n")
        (self.project / "notes.env").write_text(f"NOTE={SECRET}2\n")
        (self.project / "loop.twin").symlink_to(self.project / "loop.twin")
        self.bin.mkdir()
        tails = {name: "exit 0" for name in STUBS}
        tails["scontrol"] = '[[ "$1 $2" == "show hostnames" ]] && echo node01\nexit 0'
        for name in UTILITIES:
            real = shutil.which(name)
            if real:
                tails[name] = f'exec {real} "$@"'
        for name, tail in tails.items():
            (self.bin / name).write_text(STUB.format(tail=tail))
            (self.bin / name).chmod(0o755)


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    root = Path(tempfile.mkdtemp(prefix="dtec-fuzz-"))
    yield World(root)
    shutil.rmtree(root, ignore_errors=True)


class Unbounded(Exception):
    """dtec ran past the guard's time or memory on one blueprint (a count is not bounded)."""


@contextmanager
def bounded(seconds: int = 20, extra_bytes: int = 2 << 30) -> Iterator[None]:
    """Run dtec with at most `extra_bytes` more address space and a hang guard, where possible."""
    usable = hasattr(signal, "setitimer") and os.path.exists("/proc/self/statm")
    if not usable:
        yield
        return

    def stop(*_: object) -> None:
        raise Unbounded(f"more than {seconds} s on one blueprint")

    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    used = int(Path("/proc/self/statm").read_text().split()[0]) * resource.getpagesize()
    limit = used + extra_bytes if hard == resource.RLIM_INFINITY else min(hard, used + extra_bytes)
    previous = signal.signal(signal.SIGALRM, stop)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
        signal.signal(signal.SIGALRM, previous)


# ---- the oracles -----------------------------------------------------------------------------


def codes(diagnostics: list[Diagnostic] | tuple[Diagnostic, ...]) -> list[str]:
    return sorted(d.code for d in diagnostics if d.severity.value == "error")


def assert_spans_inside(diagnostics: tuple[Diagnostic, ...], path: Path, text: str) -> None:
    """Every span lies inside its source; one in the linted file points into this very text."""
    for d in diagnostics:
        for span in [d.span, *(r.span for r in d.related)]:
            if span is None:
                continue
            assert 0 <= span.start <= span.end <= len(span.source.text), (d.code, span)
            assert min(*span.start_pos, *span.end_pos) >= 1, (d.code, span)
            if span.source.path == str(path):
                # A lone CR is a line break, read as LF: one character for one, offsets unchanged.
                read = re.sub(r"\r(?!\n)", "\n", text)
                assert span.source.text == read, (d.code, "span into another text of the file")


def assert_nothing_leaks(diagnostics: tuple[Diagnostic, ...]) -> None:
    """No report excerpts a file outside the project, or one that is not a blueprint."""
    for form in ("text", "json"):
        assert SECRET not in render(list(diagnostics), form), f"{form} report shows a secret file"


def strict_json(text: str, name: str) -> None:
    def refuse(constant: str) -> None:
        raise AssertionError(f"{name} is not strict JSON: {constant}")

    json.loads(text, parse_constant=refuse)


def _template_words() -> set[str]:
    """Identifiers the train.py template and its renderers write: all a benign blueprint adds."""
    templates = ROOT / "backends" / "templates"
    sources = [
        templates / "train.py.jinja",
        *sorted((templates / "train").rglob("*.jinja")),
        ROOT / "dtec" / "backends" / "train_script.py",
    ]
    words = {w for s in sources for w in re.findall(r"[A-Za-z_]\w*", s.read_text(encoding="utf-8"))}
    # The optimizer's settings are passed to torch.optim by their vocabulary names (betas=...).
    return words | {key for function in OPTIMIZER.functions.values() for key in function.params}


TEMPLATE_WORDS = _template_words()


def assert_train_py_is_inert(text: str) -> None:
    """train.py compiles; every name in it is one the template writes, none the blueprint's."""
    tree = compile(text, "train.py", "exec", flags=ast.PyCF_ONLY_AST)
    compile(tree, "train.py", "exec")
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            names.add(node.id)
        elif isinstance(node, ast.Attribute):
            names.add(node.attr)
        elif isinstance(node, ast.alias):
            names.update(node.name.split("."))
        elif isinstance(node, ast.keyword) and node.arg:
            names.add(node.arg)
    foreign = sorted(names - TEMPLATE_WORDS)
    assert not foreign, f"train.py names what no template writes: {foreign}"


def assert_sbatch_header(text: str) -> None:
    """sbatch reads #SBATCH lines up to the first command: all come before it, and ask sanely."""
    body = False
    for line in text.splitlines()[1:]:
        if line.startswith("#SBATCH"):
            assert not body, f"#SBATCH line after a command is ignored by sbatch: {line!r}"
            flag, _, value = line[len("#SBATCH "):].partition("=")
            if flag.startswith("--mem"):
                zero = re.fullmatch(r"0+(\.0*)?[KMGT]?B?", value)
                assert not zero, f"{line!r} asks for all the node's memory"
            if flag == "--time":
                days, _, clock = value.partition("-")
                h, m, _s = (int(x) for x in clock.split(":"))
                minutes = int(days) * 1440 + h * 60 + m
                assert minutes < 2**32 - 1, f"{line!r} is beyond Slurm's range"
        elif line.strip() and not line.startswith("#"):
            body = True


def assert_script_is_inert(world: World, folder: Path, launcher: str) -> None:
    """bash -n and shellcheck pass; run with stubs, the script runs the launch and nothing else."""
    script = (folder / launcher).read_text(encoding="utf-8")
    run = subprocess.run(["bash", "-n"], input=script, capture_output=True, text=True, timeout=30)
    assert run.returncode == 0, f"bash -n: {run.stderr}"
    shellcheck = ["shellcheck", "-s", "bash", "-f", "gcc", "-"]
    run = subprocess.run(shellcheck, input=script, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, f"shellcheck: {run.stdout}"
    world.calls.write_text("")
    env = {
        "PATH": str(world.bin), "HOME": str(world.root), "USER": "fuzz",
        "FUZZ_CALLS": str(world.calls),
        "SLURM_SUBMIT_DIR": str(folder), "SLURM_JOB_NODELIST": "node01", "SLURM_CPUS_PER_TASK": "2",
        "SLURM_NNODES": "1", "SLURM_JOB_ID": "42",
    }
    # Site limits (Leonardo's `ulimit -n`) are not this machine's: a function shadows the builtin.
    (world.root / "bash_env").write_text("ulimit() { :; }\n")
    env["BASH_ENV"] = str(world.root / "bash_env")
    run = subprocess.run(
        ["/bin/bash", launcher], cwd=folder, env=env, capture_output=True, text=True, timeout=60
    )
    calls = world.calls.read_text().splitlines()
    planted = sorted(str(p) for p in world.root.rglob(f"*{MARKER}*") if p.name == MARKER)
    assert not planted, f"{launcher} ran blueprint text: created {planted}"
    assert "command not found" not in run.stderr, f"{launcher} ran something else: {run.stderr}"
    unexpected = sorted(set(calls) - STUBS - set(UTILITIES))
    assert not unexpected, f"{launcher} ran {unexpected}"
    launches = [c for c in calls if c in LAUNCH]
    if run.returncode == 0:
        assert len(launches) == 1, f"{launcher} launched {launches}"
    else:
        assert launches == [] and run.stderr.startswith("dtec:"), f"{launcher} failed: {run.stderr}"


def assert_manifests_validate(text: str) -> None:
    """job.yaml: strict Kubernetes validation; the pod templates of a PyTorchJob's replicas and
    of a TrainJob's runtime patch as core ones (their CRD schemas: tests/test_kube_schemas.py)."""
    import kubernetes_validate

    for doc in yaml.safe_load_all(text):
        pods = [doc]
        if doc["kind"] == "PyTorchJob":
            pods = [r["template"] for r in doc["spec"]["pytorchReplicaSpecs"].values()]
        elif doc["kind"] == "TrainJob":
            patches = doc["spec"]["runtimePatches"]
            jobs = [j for p in patches for j in p["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]]
            pods = [j["template"]["spec"]["template"] for j in jobs]
        templates = pods if pods == [doc] else [
            {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "probe"}, "template": pod}
            for pod in pods
        ]
        for template in templates:
            kubernetes_validate.validate(template, K8S_VERSION, strict=True)
        for key, value in _leaves(doc):
            if isinstance(value, int) and not isinstance(value, bool):
                assert -(2**63) <= value < 2**63, f"{key} = {value} does not fit int64"
            if key == "memory":
                zero = re.fullmatch(r"0+(\.0*)?[A-Za-z]*", str(value))
                assert not zero, f"memory request {value!r}"


def _leaves(node: object, key: str = "") -> Iterator[tuple[str, object]]:
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _leaves(v, str(k))
    elif isinstance(node, list):
        for v in node:
            yield from _leaves(v, key)
    else:
        yield key, node


def assert_bundle_keeps_promises(world: World, case: Case, bundle, lint_diagnostics) -> None:
    files = bundle.files
    strict_json(files["ir.json"], "ir.json")
    strict_json(files["manifest.json"], "manifest.json")
    assert_train_py_is_inert(files["train.py"])
    folder = default_folder(str(world.root / "build"), bundle.ir.twin.name, bundle.ir.target.name)  # as `dtec compile` names it
    write_bundle(files, folder)
    try:
        if bundle.launcher == "job.yaml":
            assert_manifests_validate(files["job.yaml"])
        else:
            if bundle.launcher == "job.sbatch":
                assert_sbatch_header(files["job.sbatch"])
            if case.local_walltime:
                said = any("walltime" in d.message for d in lint_diagnostics)
                enforced = "timeout" in files["run.sh"]
                assert said or enforced, "a local walltime is enforced by nothing"
            assert_script_is_inert(world, folder, bundle.launcher)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def assert_fmt_keeps_meaning(path: Path, case: Case, before) -> None:
    """fmt: same checked values, same diagnostics (suppressions included), same comments, stable."""
    original, parse_diagnostics = parse(Source(str(path), case.text))
    formatted, diagnostics = format_source(Source(str(path), case.text))
    assert (formatted is None) == bool(parse_diagnostics)
    if formatted is None:
        return
    assert format_source(Source(str(path), formatted))[0] == formatted, "fmt is not idempotent"
    again, _ = parse(Source(str(path), formatted))
    assert [comment_text(c) for c in again.comments] == [comment_text(c) for c in original.comments]
    with bounded():
        after = analyse(path, formatted, case.environ, targets=case.targets[:1])
    values = [r.blueprint and r.blueprint.values for r in (before, after)]
    assert values[0] == values[1], "fmt changed the checked values"
    kept = [(d.code, d.severity.value, d.message) for d in after.diagnostics]
    was = [(d.code, d.severity.value, d.message) for d in before.diagnostics]
    assert kept == was, "fmt changed the diagnostics"


def keep_promises(world: World, case: Case) -> None:
    """Run every oracle on one generated blueprint."""
    path = world.project / "bp.twin"
    path.write_bytes(case.text.encode("utf-8"))
    for target in case.targets:
        with bounded():
            lint = analyse(path, case.text, case.environ, targets=[target])
        assert_spans_inside(lint.diagnostics, path, case.text)
        assert_nothing_leaks(lint.diagnostics)
        if target == case.targets[0]:
            assert_fmt_keeps_meaning(path, case, lint)
            if case.non_ascii_number:
                assert codes(lint.diagnostics), "a number with non-ASCII digits is accepted"
            if case.newline == "\r":
                lf = analyse(path, case.text.replace("\r", "\n"), case.environ, targets=[target])
                same = codes(lint.diagnostics) == codes(lf.diagnostics)
                assert same or any("line ending" in d.message for d in lint.diagnostics), (
                    "CR-only line endings are misread without saying so"
                )
        with bounded():
            bundle, found = compile_blueprint(path, target, text=case.text, environ=case.environ)
        assert codes(found) == codes(lint.diagnostics), f"lint and compile disagree for {target}"
        assert (bundle is None) == bool(codes(found))
        if bundle is not None:
            assert_bundle_keeps_promises(world, case, bundle, lint.diagnostics)


@FUZZ
@given(blueprints())
def test_hostile_blueprints_keep_the_promises(world: World, case: Case) -> None:
    keep_promises(world, case)


# ---- the issue's findings: each one fails an oracle above (issue 9) --------------------------

H = (Path(__file__).resolve().parent / "fixtures" / "minimal.twin").read_text()  # the issue's base


def h_with(target: str, body: str, replace: dict[str, str]) -> str:
    """H and a target block holding `body`, with `old: new` replacements."""
    text = H + f'target "{target}" {{\n{body}\n}}\n'
    for old, new in replace.items():
        text = text.replace(old, new)
    return text


def machine(settings_: str) -> str:
    return f"  machine {{\n{settings_}\n  }}"


SYNTHETIC = "synthetic(samples = 64, shape = [8], targets = 1)"
MLP = "mlp(input = 8, output = 1)"
DEEP_LSTM = "lstm(input = 8, hidden = 8, layers = {}, output = 1)"
ONE_LINE_DATA = f'data "d" {{ source = {SYNTHETIC}, batch = 8, workers = 64 }}'
IGNORE_DT213 = "# dtec: ignore[DT213]"
CRAFTED_LABEL = '"\\"\\"\\"\\nimport os; os.system(\\"touch PWNED\\")\\n\\"\\"\\""'
# name: (target, target block body, replacements in H)
ISSUE_CASES = {
    "gpu-flag-newline": (
        "slurm", machine('gpus = 1\ngpu_flag = "--gres=gpu:{n}\\ntouch PWNED"'), {}
    ),
    "memory-flag-newline": (
        "slurm", machine('memory = 4GB\nmemory_flag = "--mem={gb}G\\n: > PWNED"'), {}
    ),
    "master-addr-suffix": (
        "jureca-dc", 'account = "a"\n' + machine('master_addr_suffix = "$(: > PWNED)"'), {}
    ),
    "import-outside-project": ("local", "", {'twin "t"': 'import "../secret.env"\ntwin "t"'}),
    "import-non-blueprint": ("local", "", {'twin "t"': 'import "notes.env"\ntwin "t"'}),
    "import-symlink-loop": ("local", "", {'twin "t"': 'import "loop.twin"\ntwin "t"'}),
    "label-backslashes": ("local", "", {'"t"': '"C:\\\\users\\\\me"'}),
    "label-triple-quotes": ("local", "", {'"t"': CRAFTED_LABEL}),
    "walltime-1ms": ("slurm", "walltime = 1ms", {}),
    "walltime-half-second": ("slurm", "walltime = 0.5s", {}),
    "walltime-1e309s": ("slurm", "walltime = 1e309s", {}),
    "walltime-1e20d": ("slurm", "walltime = 1e20d", {}),
    "walltime-1e20d-kubernetes": ("kubernetes", 'image = "x"\nwalltime = 1e20d', {}),
    "size-1e400GB": ("slurm", machine("memory = 1e400GB"), {}),
    "lr-1e309": ("local", "", {"loss = mse": "loss = mse\n  optimizer = adamw(lr = 1e309)"}),
    "clip-grad-1e999": ("local", "", {"loss = mse": "loss = mse\n  clip_grad = 1e999"}),
    "machine-cpus-0": ("slurm", machine("cpus = 0"), {}),
    "machine-max-nodes-0": ("slurm", machine("max_nodes = 0"), {}),
    "machine-usable-cpus-1000": ("slurm", machine("usable_cpus = 1000"), {}),
    "machine-gpu-vendor-x": ("slurm", machine('gpu_vendor = "x"'), {}),
    "machine-kubernetes-key-on-slurm": ("slurm", machine("shm_size = 1GB"), {}),
    "memory-flag-unknown-placeholder": (
        "slurm", machine('memory = 4GB\nmemory_flag = "--mem={GB}G"'), {}
    ),
    "gpu-flag-unknown-placeholder": ("slurm", machine('gpus = 1\ngpu_flag = "{x}"'), {}),
    "gpu-flag-ifs": ("slurm", machine('gpus = 1\ngpu_flag = "${IFS}{n}"'), {}),
    "torchrun-quote": ("slurm", machine('torchrun = "torch\'run"'), {}),
    "torchrun-backslash": ("slurm", machine('torchrun = "torchrun\\\\"'), {}),
    "csv-features-fraction": (
        "local", "", {SYNTHETIC: 'csv(path = "d.csv", target = "y", features = 1.5)'}
    ),
    "lstm-layers-2-31": ("local", "", {MLP: DEEP_LSTM.format(2**31), "[8]": "[4, 8]"}),
    "lstm-layers-1e21-digits": ("local", "", {MLP: DEEP_LSTM.format(10**21), "[8]": "[4, 8]"}),
    "twin-name-300-characters": ("local", "", {'"t"': '"' + "t" * 300 + '"'}),
    "fmt-moves-suppression": (
        "local", "", {H.split("model")[0]: f'twin "t" {{}}\n{ONE_LINE_DATA}  {IGNORE_DT213}\n'}
    ),
    "sbatch-memory-rounds-to-0": (
        "slurm", machine('memory = 512MB\nmemory_flag = "--mem={gb}G"'), {}
    ),
    "kubernetes-memory-1B": ("kubernetes", 'image = "x"\n' + machine("memory = 1B"), {}),
    "non-ascii-digits": ("local", "", {"batch  = 8": "batch  = ３２"}),
    "local-walltime": ("local", "walltime = 1min", {}),
    "cr-only-line-endings": ("local", "", {"\n": "\r"}),
    "modules-trailing-backslash": ("slurm", 'modules = ["tools\\\\"]', {}),
    "cpu-bind-command": (
        "lumi", 'account = "project_1"\n' + machine('cpu_bind = "$(hostname)"'), {}
    ),
}


@pytest.mark.parametrize("name", sorted(ISSUE_CASES))
def test_issue_cases_keep_the_promises(world: World, name: str) -> None:
    target, body, replace = ISSUE_CASES[name]
    text = h_with(target, body, replace)
    newline = "\r" if "\r" in text else "\n"
    non_ascii = any(c.isdigit() and not c.isascii() for c in text)
    local_walltime = target == "local" and "walltime" in body
    keep_promises(world, Case(text, {}, [target], newline, non_ascii, local_walltime))


# ---- the generators themselves -----------------------------------------------------------------


def test_slots_cover_the_vocabulary() -> None:
    """Every string, number, size and duration key (machine overrides, env maps) gets values."""
    kinds = {type(s.type).__name__ for s in SLOTS}
    assert {"Str", "Int", "Float", "Size", "Duration", "Dict", "ListOf"} <= kinds
    machine = {s.key for s in SLOTS if s.block == ("target", "machine")}
    assert machine == set(BLOCKS["target"].blocks["machine"].fields)
    assert all(_values(s.type, (*s.block, s.key)) is not None for s in SLOTS)
    calls = {(s.block + (s.key,), s.inner[0]) for s in SLOTS if len(s.inner) == 2}
    for where, fn in calls:
        function = BLOCKS[where[0]].fields[where[1]].type.functions[fn]
        required = {a for a, p in function.params.items() if p.required}
        benign = set(BENIGN_CALLS.get(where, {}).get(fn, {}))
        assert required <= benign, f"{where} {fn}: no benign arguments"


@pytest.mark.parametrize("target", sorted(MACHINES))
def test_base_blueprint_keeps_the_promises_on_every_machine(world: World, target: str) -> None:
    """H itself, on each machine: the start of every generated blueprint."""
    machine = MACHINES[target]
    body = ('account = "a"' if machine.rules.account_required else "") + (
        'image = "x"' if machine.is_kube else ""
    )
    case = Case(h_with(target, body, {}), {}, [target], "\n", False, False)
    keep_promises(world, case)


def test_the_oracles_fail_on_known_bad_output(world: World) -> None:
    """The oracles fail on output like dtec's before issue 9 (they must keep failing on it)."""
    with pytest.raises(AssertionError, match="ran blueprint text|unexpected command"):
        folder = world.root / "probe"
        folder.mkdir(exist_ok=True)
        (folder / "train.py").write_text("")
        script = "#!/bin/bash\n#SBATCH --gres=gpu:1\ntouch PWNED\n: > PWNED\nsrun x\n"
        (folder / "job.sbatch").write_text(script)
        assert_script_is_inert(world, folder, "job.sbatch")
    with pytest.raises(AssertionError, match="#SBATCH line after a command"):
        assert_sbatch_header("#!/bin/bash\n#SBATCH --gres=gpu:1\ntouch PWNED\n#SBATCH --mem=1G\n")
    with pytest.raises(AssertionError, match="all the node's memory"):
        assert_sbatch_header("#!/bin/bash\n#SBATCH --mem=0G\n")
    with pytest.raises(AssertionError, match="no template writes"):
        assert_train_py_is_inert('NAME = """x"""\n__import__("os").system("touch PWNED")\n')
    with pytest.raises(SyntaxError):
        assert_train_py_is_inert('NAME = "C:\\users\\me"\n')
    with pytest.raises(AssertionError, match="not strict JSON"):
        strict_json('{"lr": Infinity}', "ir.json")
