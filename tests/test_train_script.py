"""The generated train.py: rendering for every strategy/arch/loss, and real runs on CPU (gloo)."""

from __future__ import annotations

import ast
import builtins
import copy
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from dtec.backends import templating
from dtec.backends.train_script import STOP_CHECK_EVERY, render_train

TRAIN_FIXTURES = Path(__file__).resolve().parent / "train"

PROFILER = {"fn": "torch", "wait": 1, "warmup": 1, "active": 2}
STEP_KEYS = {"kind", "time", "step", "epoch", "loss", "lr", "iter_time", "data_time",
             "compute_time", "samples_per_s"}
EPOCH_KEYS = {"kind", "time", "epoch", "steps", "epoch_time", "train_loss", "val_loss",
              "throughput", "peak_mem", "energy"}
SUMMARY_KEYS = {"status", "twin", "strategy", "precision", "world_size", "device", "epochs",
                "steps", "total_steps", "total_time", "train_time", "samples_per_s", "final",
                "resumed_from", "energy_j", "error"}


# ----------------------------------------------------------------------------- contexts
def quickstart() -> dict[str, Any]:
    """What the compiler makes of blueprints/quickstart.twin, shrunk to train in a second."""
    return json.loads((TRAIN_FIXTURES / "quickstart.json").read_text())


def variant(base: dict[str, Any] | None = None, **changes: Any) -> dict[str, Any]:
    """A copy of `base` (default: quickstart) with `a__b=v` setting `ctx["a"]["b"] = v`."""
    ctx = copy.deepcopy(base if base is not None else quickstart())
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        target = ctx
        for part in parents:
            target = target[part]
        target[last] = value
    return ctx


MODELS = {
    "mlp": ({"input": 48, "hidden": [16, 16], "output": 1}, [12, 4]),
    "lstm": ({"input": 4, "hidden": 16, "layers": 1, "output": 1}, [12, 4]),
    "cnn": ({"channels": 2, "output": 1, "widths": [8, 16]}, [2, 8, 8]),
    "unet": ({"channels": 2, "output": 1, "depth": 2, "width": 8}, [2, 10, 6]),
    "transformer": ({"input": 4, "dim": 16, "heads": 2, "layers": 1, "output": 1}, [12, 4]),
    "python": ({"class": "toy:Net", "kwargs": {"features": 6, "hidden": 8}}, [6]),
}


def with_model(arch: str, base: dict[str, Any] | None = None) -> dict[str, Any]:
    """`base` with a built-in architecture (or the test's user model) and a fitting data shape."""
    params, shape = MODELS[arch]
    ctx = variant(base, model__arch=arch, model__params=copy.deepcopy(params))
    ctx["data"]["source"]["shape"] = list(shape)
    if arch == "python":
        ctx["code"] = ["code"]
    return ctx


def classification(arch: str = "transformer", loss: str = "cross_entropy") -> dict[str, Any]:
    """Synthetic 3-class classification, or 2 classes scored by one logit for bce."""
    ctx = with_model(arch)
    ctx.update(task="classification")
    ctx["train"]["loss"] = loss
    classes = 3 if loss == "cross_entropy" else 2
    ctx["data"]["source"].update(targets=None, classes=classes)
    if arch != "python":
        ctx["model"]["params"]["output"] = 3 if loss == "cross_entropy" else 1
    return ctx


# ----------------------------------------------------------------------------- running
def write_bundle(ctx: dict[str, Any], folder: Path) -> Path:
    """Render `ctx` to `folder/train.py` (with the test's user code in `folder/code`)."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copytree(TRAIN_FIXTURES / "usercode", folder / "code", dirs_exist_ok=True)
    script = folder / "train.py"
    script.write_text(render_train(ctx))
    return script


def clean_env(**extra: str) -> dict[str, str]:
    """No inherited launcher variables; one thread per rank (the machine has two cores)."""
    launcher = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SLURM_", "TORCHELASTIC_")) and k not in launcher}
    # The tests keep data files beside train.py: a relative data root is relative to the bundle.
    env.update(OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", DTEC_DATA_ROOT=".", **extra)
    return env


def torchrun_cmd(script: Path, nproc: int, *args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc_per_node={nproc}", str(script), *args]


def run(cmd: list[str], timeout: float = 180, **env: str) -> subprocess.CompletedProcess:
    """Run to completion; stderr is merged into stdout, which the assertions print on failure."""
    return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=timeout, env=clean_env(**env))


def torchrun(script: Path, *args: str, nproc: int = 2,
             timeout: float = 180) -> subprocess.CompletedProcess:
    return run(torchrun_cmd(script, nproc, "--run-dir", str(script.parent / "run"), *args),
               timeout=timeout)


def python(script: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return run([sys.executable, str(script), "--run-dir", str(script.parent / "run"), *args],
               timeout=timeout)


def ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, result.stdout[-6000:]
    return result.stdout


def records(run_dir: Path, kind: str) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == kind]


def summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "final_model.pt", map_location="cpu", weights_only=True)


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"weights differ: {different}"


def checkpoint_names(run_dir: Path) -> list[str]:
    return sorted(p.name for p in (run_dir / "checkpoints").iterdir() if p.name.startswith("step-"))


def worker_pids(launcher: int) -> dict[int, int]:
    """The torchrun workers under `launcher`, by rank (read from /proc)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == launcher:
            ranks = [int(e[5:]) for e in environ if e.startswith(b"RANK=")]
            if ranks:
                found[ranks[0]] = int(entry.name)
    return found


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


# ----------------------------------------------------------------------------- static checks
def undefined_and_unused(source: str) -> tuple[set[str], set[str]]:
    """Names read but bound nowhere in the file, and imports never read (a cheap pyflakes)."""
    tree = ast.parse(source)
    bound, read, imported = set(dir(builtins)) | {"__file__"}, set(), set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                name = (alias.asname or alias.name).split(".")[0]
                bound.add(name)
                if not (isinstance(node, ast.ImportFrom) and node.module == "__future__"):
                    imported.add(name)
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, ast.Name):
            (read if isinstance(node.ctx, ast.Load) else bound).add(node.id)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            bound.add(node.name)
    return read - bound, imported - read


def render_cases() -> dict[str, dict[str, Any]]:
    """Contexts covering every strategy x arch, precision, loss, source, scheduler and switch."""
    cases: dict[str, dict[str, Any]] = {}
    strategies = {"single": {"kind": "single", "zero": None}, "ddp": {"kind": "ddp", "zero": None},
                  "fsdp": {"kind": "fsdp", "zero": None}}
    strategies.update({f"zero{z}": {"kind": "deepspeed", "zero": z} for z in (1, 2, 3)})
    for sname, strategy in strategies.items():
        for arch in MODELS:
            cases[f"{sname}-{arch}"] = variant(with_model(arch), strategy=strategy)
        for precision in ("bf16", "fp16"):
            cases[f"{sname}-{precision}"] = variant(strategy=strategy, train__precision=precision)
        for loss in ("cross_entropy", "bce"):
            cases[f"{sname}-{loss}"] = variant(classification("cnn", loss), strategy=strategy)
        cases[f"{sname}-accum-clip"] = variant(strategy=strategy, train__grad_accum=2,
                                               train__clip_grad=1.0)
    for loss in ("mae", "huber"):
        cases[f"loss-{loss}"] = variant(train__loss=loss)
    cases["unet-classes"] = classification("unet")
    cases["python-classes"] = classification("python")
    for name in ("adam", "sgd"):
        cases[f"optimizer-{name}"] = variant(train__optimizer={"name": name, "lr": 0.1,
                                                              "weight_decay": 0.0, "momentum": 0.9})
    cases["scheduler-none"] = variant(train__scheduler={"name": "none"})
    cases["scheduler-step"] = variant(train__scheduler={"name": "step", "every": 1, "gamma": 0.5})
    npz = {"kind": "npz", "path": "data/x.npz", "x": "x", "y": "y"}
    cases["source-npz"] = variant(data__source=npz)
    cases["source-csv"] = variant(data__source={"kind": "csv", "path": "data/x.csv", "target": "q"})
    cases["source-npz-classes"] = variant(classification("mlp"),
                                          data__source=npz)
    cases["source-python"] = variant(data__source={"kind": "python",
                                                   "callable": "toy:make_datasets",
                                                   "kwargs": {"samples": 64, "features": 6}})
    cases["monitor-off"] = variant(monitor={"timing": False, "energy": False, "profiler": None})
    cases["profiler"] = variant(monitor__profiler=PROFILER)
    cases["log-every"] = variant(monitor__log_every=5, train__max_steps=100)
    return cases


CASES = render_cases()


@pytest.mark.parametrize("name", sorted(CASES))
def test_rendered_script_compiles_and_is_deterministic(name: str) -> None:
    source = render_train(CASES[name])
    compile(source, f"{name}/train.py", "exec")
    assert render_train(CASES[name]) == source
    undefined, unused = undefined_and_unused(source)
    assert not undefined, f"names used but never defined: {sorted(undefined)}"
    assert not unused, f"imports never used: {sorted(unused)}"
    imports = [n for n in ast.walk(ast.parse(source))
               if isinstance(n, (ast.Import, ast.ImportFrom))]
    modules = {(n.module if isinstance(n, ast.ImportFrom) else a.name).split(".")[0]
               for n in imports for a in n.names}
    assert "dtec" not in modules, "the script must run without dtec installed"
    assert source.startswith("#!/usr/bin/env python3\n")
    long = [line for line in source.splitlines() if len(line) > 100]
    assert not long, f"lines over 100 columns: {long}"


def test_rendered_scripts_pass_py_compile(tmp_path: Path) -> None:
    paths = []
    for name in ("ddp-lstm", "fsdp-transformer", "zero3-unet", "single-python", "source-csv"):
        path = tmp_path / f"{name}.py"
        path.write_text(render_train(CASES[name]))
        paths.append(str(path))
    ok(run([sys.executable, "-m", "py_compile", *paths], timeout=60))


@pytest.mark.parametrize(
    ("strategy", "present", "absent"),
    [
        ("single", [],
         ["init_process_group", "DistributedDataParallel", "fully_shard", "deepspeed"]),
        ("ddp", ["DistributedDataParallel", "no_sync"], ["fully_shard", "deepspeed"]),
        ("fsdp", ["fully_shard", "set_requires_gradient_sync", "broadcast_from_rank0"],
         ["DistributedDataParallel", "deepspeed"]),
        ("deepspeed", ["deepspeed.initialize", 'os.environ.setdefault("DS_ACCELERATOR", "cpu")',
                       "save_checkpoint(str(staging)"], ["DistributedDataParallel", "fully_shard"]),
    ],
)
def test_script_carries_only_its_strategy(strategy: str, present: list[str],
                                          absent: list[str]) -> None:
    zero = 2 if strategy == "deepspeed" else None
    source = render_train(variant(strategy={"kind": strategy, "zero": zero}))
    for text in present:
        assert text in source
    for text in absent:
        assert text not in source


@pytest.mark.parametrize(("strategy", "every"),
                         [("single", 1), ("ddp", STOP_CHECK_EVERY), ("fsdp", STOP_CHECK_EVERY),
                          ("deepspeed", STOP_CHECK_EVERY)])
def test_ranks_check_for_preemption_every_few_steps(strategy: str, every: int) -> None:
    zero = 2 if strategy == "deepspeed" else None
    source = render_train(variant(strategy={"kind": strategy, "zero": zero}))
    assert f"\nSTOP_CHECK_EVERY = {every}\n" in source
    loop = source.split("def train(")[1]
    assert "epoch_end = state.step_in_epoch == plan.steps_per_epoch" in loop
    assert "if (state.step % STOP_CHECK_EVERY == 0 or epoch_end) and stop.agreed(rt):" in loop
    assert loop.count("stop.agreed(") == 1


def test_script_carries_only_its_architecture() -> None:
    classes = {"mlp": "class MLP", "lstm": "class LSTMRegressor", "cnn": "class CNN",
               "unet": "class UNet", "transformer": "class SequenceTransformer"}
    for arch, marker in classes.items():
        source = render_train(with_model(arch))
        assert [c for c in classes.values() if c in source] == [marker]


def test_config_section_holds_the_blueprint_values_as_literals() -> None:
    ctx = quickstart()
    source = render_train(ctx)
    namespace: dict[str, Any] = {}
    config = source.split("TWIN = ")[1].split("BUNDLE =")[0]
    exec(compile("TWIN = " + config, "config", "exec"), namespace)  # literals only
    assert namespace["TRAIN"]["optimizer"]["lr"] == ctx["train"]["optimizer"]["lr"]
    assert namespace["DATA"] == ctx["data"]
    assert namespace["MONITOR"]["log_every"] is None  # an optional key, filled in


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"strategy": {"kind": "horovod", "zero": None}}, "`strategy.kind` is 'horovod'"),
        ({"strategy": {"kind": "deepspeed", "zero": 4}}, "`strategy.zero` must be 1, 2 or 3"),
        ({"model__arch": "resnet"}, "`model.arch` is 'resnet'"),
        ({"train__loss": "cross_entropy"}, "loss `cross_entropy` does not suit task `regression`"),
        ({"data__batch": 0}, "`data.batch` must be a positive integer"),
        ({"train__precision": "fp8"}, "`train.precision` is 'fp8'"),
        ({"train__scheduler": {"name": "cosine"}}, "lacks `train.scheduler.warmup`"),
        ({"data__source": {"kind": "csv", "path": "x.csv"}}, "lacks `data.source.target`"),
    ],
)
def test_render_train_rejects_unusable_contexts(change: dict, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        render_train(variant(**change))


# Every string a blueprint can place into train.py, each to be filled with a hostile value. Paths
# are absolute, so that files not on this computer are not checked (DT306), only placed.
HOSTILE_BLUEPRINT = """
twin "{s0}" {{
  description = env("DTEC_TEST_DESCRIPTION", "{s1}")
  version     = "{s2}"
}}
data "d" {{
  source = {source}
  batch  = 8
}}
model "{s3}" {{
  arch  = {arch}
  input = data.d
  path  = "/{s4}"
}}
train {{
  loss = mse
}}
"""
HOSTILE_SOURCES = [
    'npz(path = "/{s5}", x = "{s6}", y = "{s7}")',
    'csv(path = "/{s5}", target = "{s6}")',
    'python(callable = "{s5}:{s6}", note = "{s7}")',
]
HOSTILE_ARCHS = ['mlp(input = 8, output = 1)', 'python(class = "{s8}:{s9}", tag = "{s8}")']
HOSTILE_STRINGS = [
    "C:\\users\\me",  # a backslash escape in a plain string literal: \u is a SyntaxError
    'x"""\nimport os; os.system("touch PWNED")\n"""',
    "x'''\nos.system('touch PWNED')  # ",
    "x\n__import__('os').system('touch PWNED')\n#",
    "\\N{x} \\x4 \\",  # bad escapes, and a trailing backslash that would eat the quote
    "{{ twin }} {% raw %} \t\u2028\u0085 \u00e9 \U0001f600 `",
]


def twin_string(value: str) -> str:
    """`value` as the body of a .twin string literal."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")


def blueprint_script(tmp_path: Path, source: str, arch: str, strings: list[str]) -> str:
    """Compile the hostile blueprint with `strings` in its slots; return its train.py."""
    from dtec.compiler import compile_blueprint

    slots = {f"s{i}": twin_string(strings[i % len(strings)]) for i in range(10)}
    text = HOSTILE_BLUEPRINT.format(source=source.format(**slots), arch=arch.format(**slots),
                                    **slots)
    environ = {"DTEC_TEST_DESCRIPTION": strings[-1]}
    bundle, diagnostics = compile_blueprint(tmp_path / "h.twin", "local", text=text,
                                            environ=environ)
    assert bundle is not None, [d.message for d in diagnostics]
    return bundle.files["train.py"]


def code_shape(source: str) -> str:
    """The script's syntax tree with every constant blanked: its code, not its values."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant):
            node.value = None
    return ast.dump(tree)


@pytest.mark.parametrize("source", HOSTILE_SOURCES)
@pytest.mark.parametrize("arch", HOSTILE_ARCHS)
def test_blueprint_strings_reach_train_py_only_as_literals(tmp_path: Path, source: str,
                                                           arch: str) -> None:
    plain = blueprint_script(tmp_path, source, arch, ["plain"])
    expected = code_shape(plain)
    for shift in range(len(HOSTILE_STRINGS)):
        strings = HOSTILE_STRINGS[shift:] + HOSTILE_STRINGS[:shift]
        script = blueprint_script(tmp_path, source, arch, strings)
        compile(script, "train.py", "exec")
        assert code_shape(script) == expected, "a blueprint string changed train.py's code"
        config = script.split("\nTWIN = ")[1].split("\nBUNDLE =")[0]
        namespace: dict[str, Any] = {}
        exec(compile("TWIN = " + config, "config", "exec"), namespace)  # literals only
        assert namespace["TWIN"]["name"] == strings[0]
        assert namespace["MODEL"]["name"] == strings[3]
        docstring = ast.get_docstring(ast.parse(script), clean=False)
        assert docstring.startswith(f'Train "{strings[3]}" for the digital twin "{strings[0]}":')


def test_render_train_names_a_missing_section() -> None:
    ctx = quickstart()
    del ctx["monitor"]
    with pytest.raises(ValueError, match="section `monitor`"):
        render_train(ctx)


def test_site_templates_override_by_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "train.py.jinja").write_text("# site script for {{ twin.name }}\n")
    expected = "# site script for flood-forecast\n"
    assert render_train(quickstart(), template_dirs=[tmp_path]) == expected
    monkeypatch.setenv("DTEC_TEMPLATES", os.pathsep.join(["/nonexistent", str(tmp_path)]))
    assert render_train(quickstart()) == expected


def test_environment_is_strict_and_shared(tmp_path: Path) -> None:
    env = templating.environment()
    assert env is templating.environment()
    (tmp_path / "t.jinja").write_text("{{ missing }}")
    with pytest.raises(Exception, match="missing"):
        templating.render("t.jinja", [tmp_path])
    (tmp_path / "q.jinja").write_text("x={{ v | py }} j={{ v | json }} s={{ s | shquote }}")
    out = templating.render("q.jinja", [tmp_path], v={"a": [1, None, True]}, s="it's")
    assert out == """x={"a": [1, None, True]} j={"a": [1, null, true]} s='it'"'"'s'"""


literals = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8)
    | st.floats(allow_nan=False),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=5), children, max_size=4)
    | st.tuples(children, children),
    max_leaves=20,
)


@given(literals)
def test_py_filter_round_trips(value: Any) -> None:
    text = templating.py_literal(value)
    assert eval(text, {"float": float}) == value  # noqa: S307 - our own literal
    assert templating.py_literal(value) == text


# ----------------------------------------------------------------------------- real runs
# Runs are CPU-only (gloo) and tiny; most of their time is torch starting up, so each test
# starts as few launches as it can.
REFERENCE = {"data__workers": 1, "train__epochs": 10}


@pytest.fixture(scope="module")
def ddp_reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The quickstart context trained once, uninterrupted, with DDP on two ranks."""
    script = write_bundle(variant(**REFERENCE), tmp_path_factory.mktemp("reference"))
    return script.parent / "run", ok(torchrun(script))


@pytest.mark.slow
def test_quickstart_trains_with_ddp_on_two_ranks(ddp_reference: tuple[Path, str]) -> None:
    run_dir, out = ddp_reference
    epochs = records(run_dir, "epoch")
    assert [e["epoch"] for e in epochs] == list(range(1, 11))
    assert epochs[0]["train_loss"] > epochs[-1]["train_loss"]
    assert epochs[0]["val_loss"] > epochs[-1]["val_loss"]
    for record in epochs:
        assert EPOCH_KEYS <= record.keys()
        assert record["energy"] == {"available": False, "reason": "no GPU: running on CPU"}
        assert record["peak_mem"] > 0 and record["throughput"] > 0
    steps = records(run_dir, "step")
    assert steps and all(STEP_KEYS <= s.keys() for s in steps)
    result = summary(run_dir)
    assert SUMMARY_KEYS <= result.keys()
    assert (result["status"], result["world_size"], result["strategy"]) == ("completed", 2, "ddp")
    assert result["steps"] == result["total_steps"] == 120  # 384 samples / 2 ranks / 16 x 10
    assert result["final"].items() <= epochs[-1].items()
    assert checkpoint_names(run_dir) == ["step-00000108.pt", "step-00000120.pt"]  # keep = 2
    assert "epoch 10/10 step 12/12 loss" in out  # plain progress lines without a terminal
    assert set(final_weights(run_dir)) == {"lstm.weight_ih_l0", "lstm.weight_hh_l0",
                                           "lstm.bias_ih_l0", "lstm.bias_hh_l0",
                                           "head.weight", "head.bias"}


@pytest.mark.slow
def test_preempted_run_resumes_to_identical_weights(tmp_path: Path,
                                                    ddp_reference: tuple[Path, str]) -> None:
    """SIGTERM after the first checkpoint: checkpoint mid-epoch, status preempted, exact resume."""
    script = write_bundle(variant(**REFERENCE), tmp_path)
    run_dir = tmp_path / "run"
    launcher = subprocess.Popen(torchrun_cmd(script, 2, "--run-dir", str(run_dir)),
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env=clean_env())
    try:
        first = run_dir / "checkpoints" / "step-00000012.pt"
        wait_for(first.exists, 120, "the first checkpoint")
        launcher.send_signal(signal.SIGTERM)  # torchrun passes it on to every rank
        out, _ = launcher.communicate(timeout=90)
    finally:
        launcher.kill()
    result = summary(run_dir)
    assert result["status"] == "preempted", out[-4000:]
    assert "pre-empted at epoch" in out
    assert launcher.returncode != 0
    stopped_at = result["steps"]
    assert 12 < stopped_at < 120
    # The ranks agree every STOP_CHECK_EVERY steps and at the end of each 12-step epoch.
    assert stopped_at % STOP_CHECK_EVERY == 0 or stopped_at % 12 == 0, stopped_at
    assert checkpoint_names(run_dir)[-1] == f"step-{stopped_at:08d}.pt"

    out = ok(torchrun(script))
    assert f"step {stopped_at})" in out
    assert summary(run_dir)["status"] == "completed"
    assert_same_weights(final_weights(run_dir), final_weights(ddp_reference[0]))


@pytest.mark.slow
def test_fsdp_classifies_checkpoints_and_resumes(tmp_path: Path) -> None:
    script = write_bundle(variant(classification("transformer"), strategy__kind="fsdp"), tmp_path)
    run_dir = tmp_path / "run"
    ok(torchrun(script, "--max-steps", "18"))  # stops in the middle of epoch 2
    assert summary(run_dir)["steps"] == 18
    assert checkpoint_names(run_dir) == ["step-00000012.pt", "step-00000018.pt"]
    out = ok(torchrun(script))
    assert "step-00000018.pt (epoch 2, step 18)" in out
    result = summary(run_dir)
    assert (result["status"], result["steps"], result["strategy"]) == ("completed", 36, "fsdp")
    epochs = records(run_dir, "epoch")
    assert [e["epoch"] for e in epochs] == [1, 2, 2, 3]  # epoch 2 was cut by --max-steps
    assert all(0.0 <= e["val_accuracy"] <= 1.0 for e in epochs)
    assert epochs[-1]["val_accuracy"] > 0.5  # three classes: chance is a third
    assert result["final"]["val_accuracy"] == epochs[-1]["val_accuracy"]
    assert "encoder.layers.0.self_attn.in_proj_weight" in final_weights(run_dir)


@pytest.mark.slow
@pytest.mark.parametrize("zero", [1, 2, 3])
def test_deepspeed_zero_trains_checkpoints_and_resumes(tmp_path: Path, zero: int) -> None:
    script = write_bundle(variant(strategy={"kind": "deepspeed", "zero": zero}), tmp_path)
    run_dir = tmp_path / "run"
    ok(torchrun(script, "--max-steps", "8", timeout=240))
    assert checkpoint_names(run_dir) == ["step-00000008"]
    shards = sorted(p.name for p in (run_dir / "checkpoints" / "step-00000008").iterdir())
    assert "trainer.pt" in shards and any("optim_states" in name for name in shards)
    out = ok(torchrun(script, "--epochs", "2", timeout=240))
    assert "step-00000008 (epoch 1, step 8)" in out
    result = summary(run_dir)
    assert (result["status"], result["steps"]) == ("completed", 24)
    assert result["strategy"] == f"deepspeed-zero{zero}"
    epochs = records(run_dir, "epoch")
    assert epochs[-1]["epoch"] == 2 and epochs[-1]["train_loss"] < epochs[0]["train_loss"]
    assert final_weights(run_dir)["head.weight"].shape == (1, 16)


def signal_rank_1(tmp_path: Path, sig: int, timeout: float) -> tuple[int, Path, str, float]:
    """Start a long 2-rank training, send `sig` to rank 1 once it logs; return how it ended.

    The result is (exit code, run dir, output, seconds from the signal to the end).
    """
    script = write_bundle(variant(train__epochs=200), tmp_path)
    run_dir = tmp_path / "run"
    launcher = subprocess.Popen(torchrun_cmd(script, 2, "--run-dir", str(run_dir)),
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env=clean_env())
    try:
        wait_for(lambda: (run_dir / "metrics.jsonl").exists() and records(run_dir, "step"), 120,
                 "training to start")
        ranks = worker_pids(launcher.pid)
        assert sorted(ranks) == [0, 1]
        sent = time.monotonic()
        os.kill(ranks[1], sig)
        out, _ = launcher.communicate(timeout=timeout)
        elapsed = time.monotonic() - sent
    finally:
        launcher.kill()
    return launcher.returncode, run_dir, out, elapsed


@pytest.mark.slow
def test_a_signal_to_one_rank_stops_every_rank_at_the_next_check(tmp_path: Path) -> None:
    """Only rank 1 gets SIGUSR1; rank 0 learns of it from the check and both checkpoint."""
    _, run_dir, out, _ = signal_rank_1(tmp_path, signal.SIGUSR1, 90)
    result = summary(run_dir)  # written by rank 0, which got no signal itself
    assert result["status"] == "preempted", out[-4000:]
    stopped_at = result["steps"]
    assert stopped_at % STOP_CHECK_EVERY == 0 or stopped_at % 12 == 0, stopped_at
    assert checkpoint_names(run_dir)[-1] == f"step-{stopped_at:08d}.pt"
    # Every step before the stop was logged (log_every is 1 here): none after it.
    assert records(run_dir, "step")[-1]["step"] == stopped_at


@pytest.mark.slow
def test_a_killed_rank_fails_the_job_quickly(tmp_path: Path) -> None:
    code, _, out, elapsed = signal_rank_1(tmp_path, signal.SIGKILL, 60)
    assert code != 0
    assert elapsed < 60
    assert "rank      : 1 (local_rank: 1)" in out and "SIGKILL" in out, out[-4000:]


@pytest.mark.slow
def test_diverging_loss_stops_with_a_clear_error(tmp_path: Path) -> None:
    ctx = variant(train__optimizer__lr=1e30, train__scheduler={"name": "none"})
    result = python(write_bundle(ctx, tmp_path))  # a ddp script, as one plain process
    assert result.returncode == 1
    assert "FloatingPointError: loss is" in result.stdout
    assert "at epoch 1, step" in result.stdout and "lower the learning rate" in result.stdout
    outcome = summary(tmp_path / "run")
    assert outcome["status"] == "failed" and outcome["error"].startswith("FloatingPointError")


@pytest.mark.slow
def test_srun_style_launch_uses_slurm_variables(tmp_path: Path) -> None:
    script = write_bundle(variant(train__epochs=1), tmp_path)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = str(sock.getsockname()[1])
    procs = [
        subprocess.Popen([sys.executable, str(script), "--run-dir", str(tmp_path / "run")],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         env=clean_env(SLURM_STEP_NUM_TASKS="2", SLURM_NTASKS="2",
                                       SLURM_PROCID=str(rank), SLURM_LOCALID=str(rank),
                                       MASTER_ADDR="127.0.0.1", MASTER_PORT=port))
        for rank in range(2)
    ]
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs[0][-3000:] + outs[1][-3000:]
    assert summary(tmp_path / "run")["world_size"] == 2


@pytest.mark.slow
def test_file_and_python_sources(tmp_path: Path) -> None:
    """npz, csv and a user dataset/model, each with `python train.py`."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(96, 6, generator=gen)
    labels = (x[:, 0] > 0).long()

    npz_ctx = variant(with_model("python"), strategy__kind="single", train__epochs=6,
                      data__source={"kind": "npz", "path": "data/x.npz", "x": "x", "y": "y"})
    npz = write_bundle(npz_ctx, tmp_path / "npz")
    (npz.parent / "data").mkdir()
    with open(npz.parent / "data" / "x.npz", "wb") as handle:
        torch_to_npz(handle, x=x, y=x.sum(dim=1))
    ok(python(npz))
    epochs = records(npz.parent / "run", "epoch")
    assert epochs[-1]["train_loss"] < epochs[0]["train_loss"]

    csv_ctx = variant(classification("mlp"), strategy__kind="single", train__epochs=1,
                      model__params={"input": 6, "hidden": [8], "output": 2},
                      data__source={"kind": "csv", "path": "x.csv", "target": "label"})
    csv_script = write_bundle(csv_ctx, tmp_path / "csv")
    rows = ["a,b,c,d,e,f,label"] + [",".join(f"{v:.4f}" for v in row) + f",{int(y)}"
                                    for row, y in zip(x.tolist(), labels)]
    (csv_script.parent / "x.csv").write_text("\n".join(rows) + "\n")
    ok(python(csv_script))
    assert "val_accuracy" in summary(csv_script.parent / "run")["final"]

    user_ctx = variant(with_model("python"), strategy__kind="ddp", train__epochs=1,
                       data__source={"kind": "python", "callable": "toy:make_datasets",
                                     "kwargs": {"samples": 128, "features": 6}})
    user = write_bundle(user_ctx, tmp_path / "user")
    ok(python(user))  # a ddp script also runs as one plain process
    assert summary(user.parent / "run")["world_size"] == 1


def only_error_line(result: subprocess.CompletedProcess) -> str:
    """The run failed and said why in one line, without a traceback or a warning."""
    assert result.returncode == 1, result.stdout[-3000:]
    errors = [line for line in result.stdout.splitlines() if line.startswith("train.py: error: ")]
    assert len(errors) == 1, result.stdout[-3000:]
    assert "Traceback" not in result.stdout and "Warning" not in result.stdout, result.stdout
    return errors[0]


@pytest.mark.slow
def test_a_model_output_that_does_not_fit_the_targets_stops_at_the_first_batch(
    tmp_path: Path,
) -> None:
    x = torch.randn(64, 6, generator=torch.Generator().manual_seed(0))
    mlp = {"input": 6, "hidden": [8], "output": 1}
    ctx = variant(strategy__kind="single", model__arch="mlp", model__params=mlp,
                  data__source={"kind": "npz", "path": "x.npz", "x": "x", "y": "y"})
    script = write_bundle(ctx, tmp_path / "npz")
    with open(script.parent / "x.npz", "wb") as handle:
        torch_to_npz(handle, x=x, y=x[:, :3])  # three targets, one output
    line = only_error_line(python(script))
    assert ('model "surrogate" outputs [1] per sample, but the targets of data "gauges" are [3]'
            " (mse needs the same shape): set its arch's `output` to 3") in line
    assert summary(script.parent / "run")["status"] == "failed"

    classes = variant(classification("mlp"), strategy__kind="single",
                      model__params={"input": 2, "hidden": [8], "output": 2},
                      data__source={"kind": "csv", "path": "x.csv", "target": "label"})
    script = write_bundle(classes, tmp_path / "csv")
    pairs = enumerate(x[:, :2].tolist())
    rows = ["a,b,label"] + [f"{a:.3f},{b:.3f},{k % 4}" for k, (a, b) in pairs]
    (script.parent / "x.csv").write_text("\n".join(rows) + "\n")
    line = only_error_line(python(script))
    assert 'has class 3, but model "surrogate" scores 2 classes (0 to 1)' in line
    assert "set its arch's `output` to 4 or more" in line


def torch_to_npz(handle, **arrays: torch.Tensor) -> None:
    import numpy as np

    np.savez(handle, **{name: value.numpy() for name, value in arrays.items()})


@pytest.mark.slow
def test_unet_pads_odd_sizes_trains_in_bf16_and_profiles(tmp_path: Path) -> None:
    ctx = variant(with_model("unet"), strategy__kind="single", train__precision="bf16",
                  train__epochs=2,
                  monitor__profiler=PROFILER)
    ctx["data"]["source"]["samples"] = 128
    script = write_bundle(ctx, tmp_path)
    ok(python(script))
    epochs = records(tmp_path / "run", "epoch")
    assert epochs[-1]["train_loss"] < epochs[0]["train_loss"]
    weights = final_weights(tmp_path / "run")
    assert weights["head.weight"].shape == (1, 8, 1, 1)  # 2-D samples: 2-D convolutions
    profile = tmp_path / "run" / "profile"
    assert list(profile.glob("rank0*.pt.trace.json"))
    assert "Self CPU" in (profile / "rank0-operators.txt").read_text()
