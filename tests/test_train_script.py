"""The generated train.py: rendering for every strategy/arch/loss, and real runs on CPU (gloo)."""

from __future__ import annotations

import ast
import builtins
import json
import os
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
from dtec.backends.train_script import STOP_CHECK_EVERY, render_train, train_context
from dtec.compiler import compile_blueprint
from quickstart import TRAIN_FIXTURES, compiled, script, write_bundle
from train_runs import clean_env, final_weights, load_script, ok, records, run, torchrun, torchrun_cmd

TEMPLATES = Path(templating.data_path("backends", "templates"))

PROFILER = "monitor.profiler=torch(wait = 1, warmup = 1, active = 2)"
STEP_KEYS = {"kind", "time", "step", "epoch", "loss", "lr", "iter_time", "data_time",
             "compute_time", "samples_per_s"}
EPOCH_KEYS = {"kind", "time", "epoch", "steps", "epoch_time", "train_loss", "val_loss",
              "throughput", "peak_mem", "energy"}
SUMMARY_KEYS = {"status", "twin", "strategy", "precision", "world_size", "device", "epochs",
                "steps", "total_steps", "total_time", "train_time", "samples_per_s", "final",
                "resumed_from", "energy_j", "error"}


# ----------------------------------------------------------------------------- blueprints
# Every script is compiled from tests/train/quickstart.twin, varied with `--set` (sets=) as a user
# would (tests/helpers/quickstart.py).
# A CPU-only test machine plans fp16 as if it had GPUs that compute in it (scripts only rendered).
FP16 = ("train.precision=fp16", "target.local.machine.gpus=2",
        "target.local.machine.gpu_vendor=nvidia", "target.local.machine.fp16=true")
STRATEGIES = {
    "single": ("strategy.kind=single", "strategy.procs_per_node=1"),
    "ddp": ("strategy.kind=ddp",),
    "fsdp": ("strategy.kind=fsdp",),
    **{f"zero{z}": ("strategy.kind=deepspeed", f"strategy.zero={z}") for z in (1, 2, 3)},
}
# Each architecture with a data shape that suits it.
MODELS = {
    "mlp": ("mlp(input = 48, hidden = [16, 16], output = 1)", [12, 4]),
    "lstm": ("lstm(input = 4, hidden = 16, layers = 1, output = 1)", [12, 4]),
    "cnn": ("cnn(channels = 2, output = 1, widths = [8, 16])", [2, 8, 8]),
    "unet": ("unet(channels = 2, output = 1, depth = 2, width = 8)", [2, 8, 4]),
    "transformer": ("transformer(input = 4, dim = 16, heads = 2, layers = 1, output = 1)", [12, 4]),
    "python": ('python(class = "toy:Net", features = 6, hidden = 8)', [6]),
}


def with_model(arch: str) -> tuple[str, ...]:
    """A built-in architecture (or the test's user model) and a data shape that fits it."""
    call, shape = MODELS[arch]
    sets = (f"model.surrogate.arch={call}", f"data.gauges.source.shape={shape}")
    return sets + (('model.surrogate.path="code"',) if arch == "python" else ())


def classification(arch: str = "transformer", loss: str = "cross_entropy") -> tuple[str, ...]:
    """Synthetic 3-class classification, or 2 classes scored by one logit for bce."""
    classes = 3 if loss == "cross_entropy" else 2
    shape = MODELS[arch][1]
    source = f"synthetic(samples = 512, shape = {shape}, classes = {classes}, seed = 42)"
    sets = (*with_model(arch), f"train.loss={loss}", f"data.gauges.source={source}")
    if arch != "python":
        sets += (f"model.surrogate.arch.output={3 if loss == 'cross_entropy' else 1}",)
    return sets


# ----------------------------------------------------------------------------- running
def python(script: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return run([sys.executable, str(script), "--run-dir", str(script.parent / "run"), *args],
               timeout=timeout)


def summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


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


# Losses with options, a python() loss and a sum (with their data), for rendering and running.
LOSS_CASES = {
    "cross_entropy-options": (*classification("cnn"), "train.loss=cross_entropy(weights = [1, 2, 0.5], "
                              "label_smoothing = 0.1, ignore_index = -1)"),
    "nll": (*classification("cnn"), "train.loss=nll(weights = [1, 2, 0.5])"),
    "bce-pos_weight": (*classification("cnn", "bce"), "train.loss=bce(pos_weight = [3])"),
    "python": ('train.loss=python("losses:smooth_l1", beta = 0.5)', 'train.path="code"'),
    "sum": ('train.loss=sum(terms = [mse, python("losses:smooth_l1")], weights = [1, 0.5])',
            'train.path="code"'),
    "sum-rmse": ("train.loss=sum(terms = [rmse, huber], weights = [0.5, 2])",),
}


def render_cases() -> dict[str, tuple[str, ...]]:
    """`--set`s covering every strategy x arch, precision, loss, source, scheduler and switch."""
    cases: dict[str, tuple[str, ...]] = {}
    for sname, strategy in STRATEGIES.items():
        for arch in MODELS:
            cases[f"{sname}-{arch}"] = (*with_model(arch), *strategy)
        cases[f"{sname}-bf16"] = (*strategy, "train.precision=bf16")
        cases[f"{sname}-fp16"] = (*strategy, *FP16)
        for loss in ("cross_entropy", "bce"):
            cases[f"{sname}-{loss}"] = (*classification("cnn", loss), *strategy)
        cases[f"{sname}-accum-clip"] = (*strategy, "train.grad_accum=2", "train.clip_grad=1.0")
    for loss in ("mae", "huber(delta = 0.5)", "rmse", "mape"):
        cases[f"loss-{loss.split('(')[0]}"] = (f"train.loss={loss}",)
    for loss in LOSS_CASES:
        cases[f"loss-{loss}"] = LOSS_CASES[loss]
    cases["unet-classes"] = classification("unet")
    cases["python-classes"] = classification("python")
    cases["optimizer-adam"] = ("train.optimizer=adam(lr = 0.1)",)
    cases["optimizer-sgd"] = ("train.optimizer=sgd(lr = 0.1, momentum = 0.9)",)
    cases["scheduler-none"] = ("train.scheduler=none",)
    cases["scheduler-step"] = ("train.scheduler=step(every = 1, gamma = 0.5)",)
    cases["optimizer-rmsprop"] = ("train.optimizer=rmsprop(lr = 0.01, alpha = 0.9, momentum = 0.5)",)
    cases["optimizer-nesterov"] = ("train.optimizer=sgd(lr = 0.1, momentum = 0.9, nesterov = true)",)
    cases["scheduler-exponential"] = ("train.scheduler=exponential(gamma = 0.9, warmup = 2)",)
    cases["scheduler-multistep"] = ("train.epochs=5", "train.scheduler=multistep(milestones = [2, 4])")
    cases["scheduler-onecycle"] = ("train.scheduler=onecycle(max_lr = 0.1)",)
    for sname in ("single", "zero2"):
        cases[f"{sname}-plateau-stop-early"] = (
            *STRATEGIES[sname], "train.epochs=20",
            "train.scheduler=plateau(monitor = min(val_loss), patience = 2, warmup = 4)",
            "train.stop_early={ monitor = min(val_loss), patience = 5, min_delta = 0.01 }")
    cases["deterministic"] = ("train.deterministic=true",)
    # Absolute paths of the machine that will train: not checked here (DT306), only rendered.
    cases["source-npz"] = ('data.gauges.source=npz(path = "/data/x.npz")',)
    cases["source-csv"] = ('data.gauges.source=csv(path = "/data/x.csv", target = "q")',)
    cases["source-npz-classes"] = (*classification("mlp"),
                                   'data.gauges.source=npz(path = "/data/x.npz", classes = 3)')
    cases["source-python"] = (
        'data.gauges.source=python(callable = "toy:make_datasets", samples = 64, features = 6)',
    )
    cases["metrics-classes"] = (*classification("unet"), "train.metrics=[f1, precision(average = micro)]",
                                "train.checkpoint={ best = max(val_f1) }")
    cases["metrics-bce"] = (*classification("cnn", "bce"), "train.metrics=[recall]")
    cases["metrics-targets"] = ("train.metrics=[mae, rmse, r2]", "strategy.kind=fsdp",
                                "train.checkpoint={ best = min(val_rmse), final = best }")
    cases["monitor-off"] = ("monitor.timing=false", "monitor.energy=false")
    cases["profiler"] = (PROFILER,)
    cases["log-every"] = ("monitor.log_every=5", "train.max_steps=100")
    return cases


CASES = render_cases()


@pytest.mark.parametrize("name", sorted(CASES))
def test_rendered_script_compiles_and_is_deterministic(name: str) -> None:
    source = script(*CASES[name])
    compile(source, f"{name}/train.py", "exec")
    assert script(*CASES[name]) == source
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
        path.write_text(script(*CASES[name]))
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
    source = script(*STRATEGIES["zero2" if strategy == "deepspeed" else strategy])
    for text in present:
        assert text in source
    for text in absent:
        assert text not in source


@pytest.mark.parametrize(("strategy", "every"),
                         [("single", 1), ("ddp", STOP_CHECK_EVERY), ("fsdp", STOP_CHECK_EVERY),
                          ("deepspeed", STOP_CHECK_EVERY)])
def test_ranks_check_for_preemption_every_few_steps(strategy: str, every: int) -> None:
    source = script(*STRATEGIES["zero2" if strategy == "deepspeed" else strategy])
    assert f"\nSTOP_CHECK_EVERY = {every}\n" in source
    loop = source.split("def train(")[1]
    assert "epoch_end = state.step_in_epoch == length.steps_per_epoch" in loop
    assert "if (state.step % STOP_CHECK_EVERY == 0 or epoch_end) and stop.agreed(rt):" in loop
    assert loop.count("stop.agreed(") == 1


def test_script_carries_metric_code_only_for_the_metrics_it_records() -> None:
    assert "MetricSums" not in script()  # regression, the loss only
    classes = script(*classification("mlp"))  # the accuracy, always
    assert "bincount" in classes and "_f1" not in classes and "_micro" not in classes
    asked = script(*classification("mlp"), "train.metrics=[f1(average = micro), recall]")
    assert '"_f1_micro"' in asked and '_recall"' in asked and '_precision"' not in asked
    targets = script("train.metrics=[rmse]")
    assert '_rmse"' in targets and '_mae"' not in targets and '_r2"' not in targets


def test_script_carries_only_its_architecture() -> None:
    classes = {"mlp": "class MLP", "lstm": "class LSTMRegressor", "cnn": "class CNN",
               "unet": "class UNet", "transformer": "class SequenceTransformer"}
    for arch, marker in classes.items():
        source = script(*with_model(arch))
        assert [c for c in classes.values() if c in source] == [marker]


def test_config_section_holds_the_blueprint_values_as_literals() -> None:
    bundle = compiled()
    namespace: dict[str, Any] = {}
    config = bundle.files["train.py"].split("TWIN = ")[1].split("BUNDLE =")[0]
    exec(compile("TWIN = " + config, "config", "exec"), namespace)  # literals only
    assert namespace["TRAIN"]["optimizer"]["lr"] == 0.01
    context = train_context(bundle.ir)
    for name in ("twin", "data", "model", "task", "train", "strategy", "monitor"):
        assert namespace[name.upper()] == context[name]


def test_the_script_takes_its_defaults_from_the_ir(tmp_path: Path) -> None:
    """Keys the blueprint leaves out hold the schema's defaults, as resolved by the planner.

    The script's context had defaults of its own, some unlike the language's (`workers` 0
    where the blueprint's default is `auto`); the IR is now its only source.
    """
    text = (TRAIN_FIXTURES.parent / "fixtures" / "minimal.twin").read_text() + """target "slurm" {
  machine {
    cpus = 16
    gpus = 0
  }
}
"""
    bundle, diagnostics = compile_blueprint(tmp_path / "t.twin", "slurm", text=text, environ={})
    assert bundle is not None, [d.message for d in diagnostics]
    ir = bundle.ir
    context = train_context(ir)
    assert context["data"]["workers"] == ir.data["d"].workers > 0  # `auto`, resolved
    assert context["data"]["shuffle"] is True and context["data"]["source"]["seed"] == 0
    assert context["train"]["optimizer"] == {"name": "adamw", "lr": 1e-3, "weight_decay": 0.01,
                                             "betas": [0.9, 0.999], "eps": 1e-8}
    assert context["monitor"] == {"timing": True, "energy": False, "profiler": None,
                                  "log_every": None}


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


def test_site_templates_override_by_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "train.py.jinja").write_text("# site script for {{ twin.name }}\n")
    expected = "# site script for flood-forecast\n"
    ir = compiled().ir
    assert render_train(ir, template_dirs=[tmp_path]) == expected
    monkeypatch.setenv("DTEC_TEMPLATES", os.pathsep.join(["/nonexistent", str(tmp_path)]))
    assert render_train(ir) == expected


def test_a_site_overrides_one_piece_of_the_script(tmp_path: Path) -> None:
    """A site's train/model/mlp.py.jinja replaces the built-in one, and nothing else."""
    builtin = TEMPLATES / "train" / "model" / "mlp.py.jinja"
    piece = tmp_path / "train" / "model" / "mlp.py.jinja"
    piece.parent.mkdir(parents=True)
    piece.write_text(builtin.read_text().replace("class MLP(", "# the site's MLP\nclass MLP("))
    ir = compiled(*with_model("mlp")).ir
    source = render_train(ir, template_dirs=[tmp_path])
    assert "# the site's MLP\nclass MLP(nn.Module):" in source
    assert source.replace("# the site's MLP\n", "") == render_train(ir)


TOY_TEMPLATE = """\
{# A toy architecture: one linear layer over the flattened sample. #}
class Toy(nn.Module):
    \"\"\"One linear layer over the flattened sample.\"\"\"

    def __init__(self, input: int, output: int) -> None:
        super().__init__()
        self.linear = nn.Linear(input, output)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1))


def build_model(sample_shape: tuple[int, ...]) -> nn.Module:
    return Toy(**MODEL["params"])
"""


def test_an_architecture_is_added_as_the_docs_say(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/training-script.md, "Adding an architecture": its template, its vocabulary entry and
    its estimates; then it compiles, and trains a step."""
    from dtec import estimate
    from dtec.lang import schema
    from dtec.lang.types import Field, Function

    toy = Function({"input": Field(schema.POSITIVE, "input features", True),
                    "output": Field(schema.POSITIVE, "outputs", True)}, "A toy.")
    monkeypatch.setitem(schema.ARCH.functions, "toy", toy)
    monkeypatch.setitem(estimate.PARAMETER_COUNTS, "toy",
                        lambda arch, shape: (arch["input"] + 1) * arch["output"])
    monkeypatch.setitem(estimate.ACTIVATION_UNITS, "toy", lambda arch, shape: arch["output"])
    site = tmp_path / "templates"
    (site / "train" / "model").mkdir(parents=True)
    (site / "train" / "model" / "toy.py.jinja").write_text(TOY_TEMPLATE)
    monkeypatch.setenv("DTEC_TEMPLATES", str(site))

    bundle = compiled("model.surrogate.arch=toy(input = 48, output = 1)", *STRATEGIES["single"],
                      folder=tmp_path)
    assert bundle.ir.models["surrogate"].parameters == 49
    (tmp_path / "train.py").write_text(bundle.files["train.py"])
    ok(python(tmp_path / "train.py", "--max-steps", "1"))
    assert summary(tmp_path / "run")["steps"] == 1
    assert set(final_weights(tmp_path / "run")) == {"linear.weight", "linear.bias"}


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
REFERENCE = ("data.gauges.workers=1", "train.epochs=10")


@pytest.fixture(scope="module")
def ddp_reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The quickstart context trained once, uninterrupted, with DDP on two ranks."""
    script = write_bundle(tmp_path_factory.mktemp("reference"), *REFERENCE)
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
    script = write_bundle(tmp_path, *REFERENCE)
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
    script = write_bundle(tmp_path, *classification("transformer"), "strategy.kind=fsdp")
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
@pytest.mark.parametrize("strategy", ["fsdp", "zero2", "zero3"])
def test_sharded_strategies_train_and_resume_sgd(tmp_path: Path, strategy: str) -> None:
    """SGD without momentum keeps no tensors (FSDP cannot broadcast its state as such); DeepSpeed
    refuses optimizers it has not tested with ZeRO unless told."""
    script = write_bundle(tmp_path, *STRATEGIES[strategy], "train.optimizer=sgd(lr = 0.05)")
    run_dir = tmp_path / "run"
    ok(torchrun(script, "--max-steps", "18"))
    out = ok(torchrun(script, "--max-steps", "30"))
    assert "(epoch 2, step 18)" in out
    assert summary(run_dir)["steps"] == 30


@pytest.mark.slow
@pytest.mark.parametrize("zero", [1, 2, 3])
def test_deepspeed_zero_trains_checkpoints_and_resumes(tmp_path: Path, zero: int) -> None:
    script = write_bundle(tmp_path, *STRATEGIES[f"zero{zero}"])
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
    script = write_bundle(tmp_path, "train.epochs=200")
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
    script = write_bundle(tmp_path, "train.optimizer.lr=1e30", "train.scheduler=none")
    result = python(script)  # a ddp script, as one plain process
    assert result.returncode == 1
    assert "FloatingPointError: loss is" in result.stdout
    assert "at epoch 1, step" in result.stdout and "lower the learning rate" in result.stdout
    outcome = summary(tmp_path / "run")
    assert outcome["status"] == "failed" and outcome["error"].startswith("FloatingPointError")


@pytest.mark.slow
def test_srun_style_launch_uses_slurm_variables(tmp_path: Path) -> None:
    script = write_bundle(tmp_path, "train.epochs=1")
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

    # The data is there before compiling, as lint checks the files a blueprint names.
    (tmp_path / "npz" / "data").mkdir(parents=True)
    with open(tmp_path / "npz" / "data" / "x.npz", "wb") as handle:
        torch_to_npz(handle, x=x, y=x.sum(dim=1))
    npz = write_bundle(tmp_path / "npz", *with_model("python"), *STRATEGIES["single"],
                       "train.epochs=6", 'data.gauges.source=npz(path = "data/x.npz")')
    ok(python(npz))
    epochs = records(npz.parent / "run", "epoch")
    assert epochs[-1]["train_loss"] < epochs[0]["train_loss"]

    rows = ["a,b,c,d,e,f,label"] + [",".join(f"{v:.4f}" for v in row) + f",{int(y)}"
                                    for row, y in zip(x.tolist(), labels)]
    (tmp_path / "csv").mkdir()
    (tmp_path / "csv" / "x.csv").write_text("\n".join(rows) + "\n")
    csv_script = write_bundle(
        tmp_path / "csv", *classification("mlp"), *STRATEGIES["single"], "train.epochs=1",
        "model.surrogate.arch=mlp(input = 6, hidden = [8], output = 2)",
        'data.gauges.source=csv(path = "x.csv", target = "label", classes = 2)',
    )
    ok(python(csv_script))
    assert "val_accuracy" in summary(csv_script.parent / "run")["final"]

    user = write_bundle(
        tmp_path / "user", *with_model("python"), "strategy.kind=ddp", "train.epochs=1",
        'data.gauges.source=python(callable = "toy:make_datasets", samples = 128, features = 6)',
    )
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
    # The files lie outside the blueprint's project, where lint does not read them (DT306):
    # this is the check that still catches the mistake, at the first batch.
    x = torch.randn(64, 6, generator=torch.Generator().manual_seed(0))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    script = write_bundle(tmp_path / "npz", *STRATEGIES["single"],
                          "model.surrogate.arch=mlp(input = 6, hidden = [8], output = 1)",
                          f'data.gauges.source=npz(path = "{elsewhere}/x.npz")')
    with open(elsewhere / "x.npz", "wb") as handle:
        torch_to_npz(handle, x=x, y=x[:, :3])  # three targets, one output
    line = only_error_line(python(script))
    assert ('model "surrogate" outputs [1] per sample, but the targets of data "gauges" are [3]'
            " (mse needs the same shape): set its arch's `output` to 3") in line
    assert summary(script.parent / "run")["status"] == "failed"

    script = write_bundle(
        tmp_path / "csv", *classification("mlp"), *STRATEGIES["single"],
        "model.surrogate.arch=mlp(input = 2, hidden = [8], output = 2)",
        f'data.gauges.source=csv(path = "{elsewhere}/x.csv", target = "label", classes = 2)',
    )
    pairs = enumerate(x[:, :2].tolist())
    rows = ["a,b,label"] + [f"{a:.3f},{b:.3f},{k % 4}" for k, (a, b) in pairs]
    (elsewhere / "x.csv").write_text("\n".join(rows) + "\n")
    line = only_error_line(python(script))
    assert 'has class 3, but model "surrogate" scores 2 classes (0 to 1)' in line
    assert "set its arch's `output` to 4 or more" in line


def torch_to_npz(handle, **arrays: torch.Tensor) -> None:
    import numpy as np

    np.savez(handle, **{name: value.numpy() for name, value in arrays.items()})


@pytest.mark.slow
def test_unet_pads_odd_sizes_trains_in_bf16_and_profiles(tmp_path: Path) -> None:
    # Sizes that are not multiples of 2**depth, in a file: lint takes them (the U-Net pads them).
    x = torch.randn(128, 2, 10, 6, generator=torch.Generator().manual_seed(0))
    with open(tmp_path / "x.npz", "wb") as handle:
        torch_to_npz(handle, x=x, y=x.sum(dim=1, keepdim=True))
    script = write_bundle(tmp_path, *with_model("unet"), *STRATEGIES["single"],
                          "train.precision=bf16", "train.epochs=2", PROFILER,
                          'data.gauges.source=npz(path = "x.npz")')
    ok(python(script))
    epochs = records(tmp_path / "run", "epoch")
    assert epochs[-1]["train_loss"] < epochs[0]["train_loss"]
    weights = final_weights(tmp_path / "run")
    assert weights["head.weight"].shape == (1, 8, 1, 1)  # 2-D samples: 2-D convolutions
    profile = tmp_path / "run" / "profile"
    assert list(profile.glob("rank0*.pt.trace.json"))
    assert "Self CPU" in (profile / "rank0-operators.txt").read_text()


# Validation loss that bottoms out mid-run (toy:crossing_datasets): epoch 3 of 10 is the best.
CROSSING = (*with_model("python"), "train.epochs=10", "train.scheduler=none",
            "train.optimizer=sgd(lr = 0.01, momentum = 0.5)",
            'data.gauges.source=python(callable = "toy:crossing_datasets", samples = 256, '
            'features = 6)',
            "train.checkpoint={ every = 1, keep = 2, best = min(val_loss), final = best }")


def best_checkpoint(run_dir: Path, strategy: str) -> tuple[dict, dict[str, torch.Tensor] | None]:
    """The trainer state in checkpoints/best(.pt), and its model weights (None for DeepSpeed)."""
    if strategy.startswith("zero"):
        state = torch.load(run_dir / "checkpoints" / "best" / "trainer.pt", weights_only=False)
        return state["state"], None
    saved = torch.load(run_dir / "checkpoints" / "best.pt", weights_only=False)
    return saved["state"], saved["model"]


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["ddp", "fsdp", "zero3"])
def test_best_checkpoint_is_kept_and_becomes_the_final_model(tmp_path: Path,
                                                              strategy: str) -> None:
    # DeepSpeed's ZeRO takes Adam-like optimizers, not SGD.
    adam = ("train.optimizer=adam(lr = 0.01)",) if strategy.startswith("zero") else ()
    script = write_bundle(tmp_path, *CROSSING, *STRATEGIES[strategy], *adam)
    run_dir = tmp_path / "run"
    ok(torchrun(script, timeout=240))
    epochs = records(run_dir, "epoch")
    best = min(epochs, key=lambda e: e["val_loss"])
    assert 1 < best["epoch"] < len(epochs) == 10  # the data set makes it so
    state, weights = best_checkpoint(run_dir, strategy)
    assert (state["best_epoch"], state["best"]) == (best["epoch"], best["val_loss"])
    assert state["step"] == state["best_step"] == best["epoch"] * best["steps"]
    assert summary(run_dir)["best"] == {"metric": "val_loss", "value": best["val_loss"],
                                        "epoch": best["epoch"], "step": state["step"]}
    assert checkpoint_names(run_dir)[-1].startswith("step-00000060")  # keep = 2 spares best
    if weights is not None:
        assert_same_weights(final_weights(run_dir), weights)
        last = torch.load(run_dir / "checkpoints" / "step-00000060.pt", weights_only=False)
        assert not torch.equal(last["model"]["layers.0.weight"], weights["layers.0.weight"])


@pytest.mark.slow
def test_a_resumed_run_keeps_the_best_so_far(tmp_path: Path) -> None:
    """Stopped after the best epoch and resumed: the best is not forgotten nor overwritten."""
    reference = write_bundle(tmp_path / "reference", *CROSSING)
    ok(torchrun(reference))
    script = write_bundle(tmp_path / "resumed", *CROSSING)
    run_dir = tmp_path / "resumed" / "run"
    ok(torchrun(script, "--max-steps", "30"))  # 5 epochs of 6 steps: past the best, epoch 3
    assert summary(run_dir)["best"]["epoch"] == 3
    out = ok(torchrun(script))
    assert "step-00000030.pt (epoch 6, step 30)" in out
    assert summary(run_dir)["best"] == summary(tmp_path / "reference" / "run")["best"]
    assert_same_weights(final_weights(run_dir), final_weights(tmp_path / "reference" / "run"))
    assert best_checkpoint(run_dir, "ddp")[0]["best_step"] == 18


# ----------------------------------------------------------------------------- metrics
CLASS_METRICS = ("accuracy", "f1", "f1_micro", "precision", "precision_micro", "recall",
                 "recall_micro")
# name: (--sets, the metrics to compare). Validation sets of odd sizes (125 and 25 samples) on
# two ranks: the second rank's last sample is padding, which must count nowhere.
METRIC_CASES = {
    # final = best by the macro F1: the final weights are those of the best epoch's metrics.
    "classes": ((*classification("mlp"), "data.gauges.source.samples=501", "train.epochs=3",
                 "train.metrics=[accuracy, f1, f1(average = micro), precision, "
                 "precision(average = micro), recall, recall(average = micro)]",
                 "train.checkpoint={ every = 1, keep = 1, best = max(val_f1), final = best }"),
                CLASS_METRICS),
    "bce": ((*classification("mlp", "bce"), "data.gauges.source.samples=501",
             "train.metrics=[f1, precision, recall]"), ("accuracy", "f1", "precision", "recall")),
    "segmentation": ((*classification("unet"), "data.gauges.source.samples=101",
                      "train.metrics=[f1, precision, recall]"),
                     ("accuracy", "f1", "precision", "recall")),
    "targets": (("data.gauges.source.samples=501", "data.gauges.source.targets=3",
                 "model.surrogate.arch.output=3", "train.metrics=[mae, rmse, r2]"),
                ("mae", "rmse", "r2")),
    "fields": ((*with_model("unet"), "data.gauges.source.samples=101",
                "data.gauges.source.targets=2", "model.surrogate.arch.output=2",
                "train.metrics=[mae, rmse, r2]"), ("mae", "rmse", "r2")),
}


def direct_metrics(script: Path, run_dir: Path) -> dict[str, Any]:
    """The validation metrics of final_model.pt, in one process over the whole validation set,
    computed here from their definitions (scikit-learn's), independently of train.py's sums."""
    train_py = load_script(script)
    val_set = train_py.split(train_py.load_dataset(), train_py.TRAIN["seed"])[1]
    xs, ys = zip(*(val_set[i] for i in range(len(val_set))))
    x, y = torch.stack(xs), torch.stack(ys)
    model = train_py.build_model(tuple(x.shape[1:]))
    model.load_state_dict(final_weights(run_dir))
    with torch.no_grad():
        pred = model.eval()(x).double()
    found: dict[str, Any] = {"val_loss": torch.stack([
        train_py.loss_fn(pred[i : i + 1].float(), y[i : i + 1]) for i in range(len(y))
    ]).double().mean().item()}
    if train_py.TASK == "classification":
        if train_py.TRAIN["loss"]["fn"] == "bce":
            guess, truth = (pred > 0).long().flatten(), (y > 0.5).long().flatten()
        else:
            guess, truth = pred.argmax(dim=1).flatten(), y.flatten()
        present = sorted(set(truth.tolist()) | set(guess.tolist()))
        precision, recall, f1 = [], [], []
        for c in present:
            tp = ((guess == c) & (truth == c)).sum().item()
            fp = ((guess == c) & (truth != c)).sum().item()
            fn = ((guess != c) & (truth == c)).sum().item()
            precision.append(tp / (tp + fp) if tp + fp else 0.0)
            recall.append(tp / (tp + fn) if tp + fn else 0.0)
            f1.append(2 * tp / (2 * tp + fp + fn))
        accuracy = (guess == truth).double().mean().item()
        found |= {"val_accuracy": accuracy, "val_precision": sum(precision) / len(present),
                  "val_recall": sum(recall) / len(present), "val_f1": sum(f1) / len(present)}
        found |= {f"val_{m}_micro": accuracy for m in ("precision", "recall", "f1")}
        return found
    # Regression: each target over its samples and positions; the scalar is their mean.
    pred, y = (t.reshape(len(t), t.shape[1], -1).transpose(0, 1).reshape(t.shape[1], -1)
               for t in (pred, y.double()))
    error = pred - y
    per_target = {
        "mae": error.abs().mean(dim=1),
        "rmse": error.pow(2).mean(dim=1).sqrt(),
        "r2": 1 - error.pow(2).sum(dim=1) / (y - y.mean(dim=1, keepdim=True)).pow(2).sum(dim=1),
    }
    for name, values in per_target.items():
        found[f"val_{name}"] = values.mean().item()
        found[f"val_{name}_per_target"] = values.tolist()
    return found


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(METRIC_CASES))
def test_metrics_on_two_ranks_equal_a_direct_computation(tmp_path: Path, case: str) -> None:
    sets, names = METRIC_CASES[case]
    script = write_bundle(tmp_path, *sets)
    run_dir = tmp_path / "run"
    out = ok(torchrun(script, timeout=240))
    epochs = records(run_dir, "epoch")
    best = summary(run_dir).get("best")
    # final = best: final_model.pt holds the best epoch's weights, else the last epoch's.
    record = epochs[best["epoch"] - 1] if best else epochs[-1]
    expected = direct_metrics(script, run_dir)
    for name in ("loss", *names):
        key = f"val_{name}"
        assert record[key] == pytest.approx(expected[key], rel=1e-5, abs=1e-7), key
        if f"{key}_per_target" in record:
            assert record[f"{key}_per_target"] == pytest.approx(
                expected[f"{key}_per_target"], rel=1e-5, abs=1e-7)
    targets = dict(targets=3, fields=2).get(case)
    assert all(len(record[f"val_{n}_per_target"]) == targets for n in names) if targets else True
    last = {k: v for k, v in epochs[-1].items() if k not in ("kind", "time")}
    assert summary(run_dir)["final"] == last  # recorded in the summary too
    shown = [line for line in out.splitlines() if " done in " in line][-1]  # the progress line
    assert all(f"val_{name} " in shown for name in names) and "per_target" not in shown
    if best:  # max(val_f1): the best epoch is the one with the highest macro F1
        assert best["metric"] == "val_f1"
        assert best["value"] == max(e["val_f1"] for e in epochs) == record["val_f1"]


# ----------------------------------------------------------------------------- losses
def script_module(folder: Path, *sets: str):
    """The compiled train.py of `sets`, imported as a module (main() is not run)."""
    return load_script(write_bundle(folder, *sets))


@pytest.mark.parametrize(
    ("sets", "pred_shape", "target", "direct"),
    [
        (LOSS_CASES["cross_entropy-options"], (10, 3, 4),
         lambda g: torch.randint(-1, 3, (10, 4), generator=g),
         lambda p, t: torch.nn.functional.cross_entropy(
             p, t, weight=torch.tensor([1.0, 2.0, 0.5]), label_smoothing=0.1, ignore_index=-1)),
        (LOSS_CASES["nll"], (10, 3),
         lambda g: torch.randint(0, 3, (10,), generator=g),
         lambda p, t: torch.nn.functional.nll_loss(p, t, weight=torch.tensor([1.0, 2.0, 0.5]))),
        (LOSS_CASES["bce-pos_weight"], (10, 1),
         lambda g: torch.randint(0, 2, (10, 1), generator=g).float(),
         lambda p, t: torch.nn.functional.binary_cross_entropy_with_logits(
             p, t, pos_weight=torch.tensor([3.0]))),
        (('data.gauges.source=npz(path = "/data/x.npz")', "train.loss=bce(pos_weight = [1, 4])",
          "model.surrogate.arch.output=2"), (10, 2, 5),
         lambda g: torch.randint(0, 2, (10, 2, 5), generator=g).float(),
         lambda p, t: torch.nn.functional.binary_cross_entropy_with_logits(
             p, t, pos_weight=torch.tensor([1.0, 4.0]).reshape(2, 1))),
        (("train.loss=huber(delta = 0.5)",), (10, 2), lambda g: torch.randn(10, 2, generator=g),
         lambda p, t: torch.nn.functional.huber_loss(p, t, delta=0.5)),
        (LOSS_CASES["sum-rmse"], (10, 2), lambda g: torch.randn(10, 2, generator=g),
         lambda p, t: 0.5 * torch.nn.functional.mse_loss(p, t).sqrt()
         + 2 * torch.nn.functional.huber_loss(p, t)),
        (LOSS_CASES["sum"], (10, 1), lambda g: torch.randn(10, 1, generator=g),
         lambda p, t: torch.nn.functional.mse_loss(p, t)
         + 0.5 * torch.nn.functional.smooth_l1_loss(p, t)),
        (("train.loss=mape",), (10, 2), lambda g: torch.randn(10, 2, generator=g),
         lambda p, t: ((p - t).abs() / t.abs()).mean()),
    ],
    ids=["cross_entropy", "nll", "bce", "bce-per-channel", "huber", "sum-rmse", "sum-python",
         "mape"],
)
def test_the_loss_is_torchs_and_its_sums_add_up_exactly(tmp_path: Path, sets, pred_shape, target,
                                                         direct) -> None:
    """loss_fn is the torch loss with the blueprint's options; the sums of any split of a batch
    give the loss of the whole batch (validation sums them over batches and ranks)."""
    train = script_module(tmp_path, *sets)
    gen = torch.Generator().manual_seed(0)
    pred, y = torch.randn(pred_shape, generator=gen), target(gen)
    expected = direct(pred, y).item()
    assert train.loss_fn(pred, y).item() == pytest.approx(expected, rel=1e-5)
    parts = [torch.stack(train.loss_sums(pred[i:j], y[i:j])).double()
             for i, j in ((0, 3), (3, 4), (4, 10))]
    assert train.loss_value(sum(parts)).item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("loss", ["python", "sum"])
def test_a_custom_loss_and_a_weighted_sum_train_on_two_ranks(tmp_path: Path, loss: str) -> None:
    """python("losses:smooth_l1", beta = 0.5) and sum(terms = [mse, python(...)]) with DDP."""
    script = write_bundle(tmp_path, *LOSS_CASES[loss], "train.epochs=4")
    ok(torchrun(script))
    epochs = records(tmp_path / "run", "epoch")
    assert epochs[-1]["train_loss"] < epochs[0]["train_loss"]
    assert epochs[-1]["val_loss"] < epochs[0]["val_loss"]


@pytest.mark.slow
def test_a_python_source_declares_classification(tmp_path: Path) -> None:
    """`classes` is the data's, not the function's (blobs takes none): the run classifies."""
    script = write_bundle(
        tmp_path, "train.loss=cross_entropy", "train.epochs=3", *STRATEGIES["single"],
        "model.surrogate.arch=mlp(input = 6, hidden = [16], output = 3)", 'data.gauges.path="code"',
        'data.gauges.source=python("classes:blobs", samples = 256, classes = 3, shape = [6])',
    )
    assert '"kwargs": {"samples": 256}' in script.read_text()
    ok(python(script))
    epochs = records(tmp_path / "run", "epoch")
    assert epochs[-1]["val_accuracy"] > 0.6 and epochs[-1]["val_loss"] < epochs[0]["val_loss"]


@pytest.mark.slow
def test_a_custom_loss_that_is_no_scalar_stops_with_one_line(tmp_path: Path) -> None:
    script = write_bundle(tmp_path, 'train.loss=python("losses:per_sample")', 'train.path="code"',
                          *STRATEGIES["single"])
    line = only_error_line(python(script))
    assert "the loss losses:per_sample returned shape [16], not a scalar tensor" in line


# ----------------------------------------------------------------------------- optimization
@pytest.mark.parametrize(
    ("call", "cls", "expected"),
    [
        ("adamw(lr = 0.02, betas = [0.8, 0.99], eps = 1e-6, weight_decay = 0.1)", torch.optim.AdamW,
         {"lr": 0.02, "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.1}),
        ("adam(betas = [0.5, 0.9], eps = 1e-7)", torch.optim.Adam,
         {"lr": 1e-3, "betas": (0.5, 0.9), "eps": 1e-7, "weight_decay": 0.0}),
        ("sgd(lr = 0.1, momentum = 0.9, nesterov = true, weight_decay = 0.001)", torch.optim.SGD,
         {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 0.001}),
        ("rmsprop(lr = 0.005, alpha = 0.9, momentum = 0.5, eps = 1e-5, weight_decay = 0.01)",
         torch.optim.RMSprop,
         {"lr": 0.005, "alpha": 0.9, "momentum": 0.5, "eps": 1e-5, "weight_decay": 0.01}),
    ],
)
def test_every_optimizer_key_reaches_torch(tmp_path: Path, call: str, cls: type,
                                           expected: dict) -> None:
    module = load_script(write_bundle(tmp_path, f"train.optimizer={call}"))
    optimizer = module.make_optimizer([torch.nn.Parameter(torch.zeros(2))])
    assert type(optimizer) is cls
    defaults = {k: tuple(v) if isinstance(v, list) else v for k, v in optimizer.defaults.items()}
    assert expected.items() <= defaults.items()


def step_lrs(run_dir: Path) -> list[float]:
    """The learning rate of every optimizer step (monitor.log_every = 1)."""
    return [s["lr"] for s in records(run_dir, "step")]


def torch_lrs(scheduler_of, steps: int, per_epoch: int, lr: float) -> list[float]:
    """The rate after each optimizer step (as step records log it) under torch's own scheduler:
    `scheduler_of(optimizer)` returns it and whether it is stepped once per epoch."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    scheduler, once_per_epoch = scheduler_of(optimizer)
    found = []
    for step in range(1, steps + 1):
        optimizer.step()
        if not once_per_epoch or step % per_epoch == 0:
            scheduler.step()
        found.append(optimizer.param_groups[0]["lr"])
    return found


# CROSSING on one process: SGD at LR, 10 epochs of 12 steps.
LR, STEPS, PER_EPOCH = 0.01, 120, 12
ONE_PROCESS = ("strategy.kind=single", "strategy.procs_per_node=1", "monitor.log_every=1")
SCHEDULES = {
    "exponential(gamma = 0.8)": lambda o: (torch.optim.lr_scheduler.ExponentialLR(o, 0.8), True),
    "multistep(milestones = [2, 5], gamma = 0.5)":
        lambda o: (torch.optim.lr_scheduler.MultiStepLR(o, [2, 5], 0.5), True),
    "step(every = 3, gamma = 0.5)": lambda o: (torch.optim.lr_scheduler.StepLR(o, 3, 0.5), True),
    "onecycle(max_lr = 0.05, pct_start = 0.25)":
        lambda o: (torch.optim.lr_scheduler.OneCycleLR(o, 0.05, total_steps=STEPS, pct_start=0.25,
                                                        cycle_momentum=False), False),
}


@pytest.mark.slow
@pytest.mark.parametrize("schedule", sorted(SCHEDULES))
def test_schedules_follow_torchs_own(tmp_path: Path, schedule: str) -> None:
    script = write_bundle(tmp_path, *CROSSING, *ONE_PROCESS, f"train.scheduler={schedule}")
    ok(python(script))
    expected = torch_lrs(SCHEDULES[schedule], STEPS, PER_EPOCH, LR)
    assert step_lrs(tmp_path / "run") == pytest.approx(expected, rel=1e-9)


@pytest.mark.slow
def test_warmup_combines_with_a_schedule(tmp_path: Path) -> None:
    script = write_bundle(tmp_path, *CROSSING, *ONE_PROCESS,
                          "train.scheduler=exponential(gamma = 0.8, warmup = 9)")
    ok(python(script))
    decay = torch_lrs(SCHEDULES["exponential(gamma = 0.8)"], STEPS, PER_EPOCH, LR)
    warm = [min(1.0, (step + 1) / 9) for step in range(1, STEPS + 1)]  # the next step's
    assert step_lrs(tmp_path / "run") == pytest.approx([w * d for w, d in zip(warm, decay)])


@pytest.mark.slow
def test_plateau_reduces_the_rate_as_torchs_reduce_lr_on_plateau(tmp_path: Path) -> None:
    """The validation loss rises after epoch 3: with patience 1 the rate halves after epoch 5.

    Two ranks: 6 steps an epoch."""
    script = write_bundle(tmp_path, *CROSSING, "monitor.log_every=1",
                          "train.scheduler=plateau(monitor = min(val_loss), factor = 0.5, "
                          "patience = 1, min_lr = 0.003)")
    out = ok(torchrun(script))
    run_dir = tmp_path / "run"
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=LR)
    reference = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, "min", factor=0.5, patience=1,
                                                           min_lr=0.003)
    expected = []
    for epoch in records(run_dir, "epoch"):
        expected += [optimizer.param_groups[0]["lr"]] * 6
        reference.step(epoch["val_loss"])
    lrs = step_lrs(run_dir)
    assert lrs == pytest.approx(expected)
    assert lrs[0] == LR and lrs[-1] == 0.003  # reduced twice: 0.005, then min_lr
    assert "plateau: val_loss has not improved for 2 epochs: learning rate 0.005" in out


STOP = "train.stop_early={ monitor = min(val_loss), patience = 2, min_delta = 0.01 }"
MESSAGE = "stopped early at epoch 5: val_loss did not improve by 0.01 for 2 epochs"


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["ddp", "zero2"])
def test_early_stopping_ends_the_run_after_patience_epochs(tmp_path: Path, strategy: str) -> None:
    """The validation loss is lowest at epoch 3 of 10: patience 2 stops after epoch 5.

    Under ZeRO with SGD too, which DeepSpeed calls untested and the script allows."""
    script = write_bundle(tmp_path, *CROSSING, STOP, *STRATEGIES[strategy])
    out = ok(torchrun(script, timeout=240))
    run_dir = tmp_path / "run"
    epochs = records(run_dir, "epoch")
    assert [e["epoch"] for e in epochs] == [1, 2, 3, 4, 5]
    assert min(epochs, key=lambda e: e["val_loss"])["epoch"] == 3
    result = summary(run_dir)
    assert (result["status"], result["steps"], result["stopped_early"]) == ("completed", 30, MESSAGE)
    assert MESSAGE in out
    assert checkpoint_names(run_dir)[-1].startswith("step-00000030")  # a last checkpoint
    if strategy == "ddp":
        best = torch.load(run_dir / "checkpoints" / "best.pt", weights_only=False)
        assert_same_weights(final_weights(run_dir), best["model"])  # final = best still applies


@pytest.mark.slow
def test_a_run_resumed_inside_the_patience_window_stops_where_it_would_have(tmp_path: Path) -> None:
    """Stopped after epoch 4 (one epoch without improvement) and resumed: the counter and the
    plateau schedule's reduction come back, so it stops after epoch 5 with the same weights."""
    sets = (*CROSSING, STOP, "train.scheduler=plateau(monitor = min(val_loss), patience = 0)")
    reference = write_bundle(tmp_path / "reference", *sets)
    ok(torchrun(reference))
    script = write_bundle(tmp_path / "resumed", *sets)
    run_dir = tmp_path / "resumed" / "run"
    ok(torchrun(script, "--max-steps", "24"))
    assert summary(run_dir)["stopped_early"] is None
    out = ok(torchrun(script))
    assert "step-00000024.pt (epoch 5, step 24)" in out
    result = summary(run_dir)
    assert (result["steps"], result["stopped_early"]) == (30, MESSAGE)
    lrs = [e["lr"] for e in records(run_dir, "step") if e["epoch"] == 5]
    assert lrs and all(lr == pytest.approx(LR * 0.1) for lr in lrs)  # reduced after epoch 4
    last = "step-00000030.pt"
    assert_same_weights(
        torch.load(run_dir / "checkpoints" / last, weights_only=False)["model"],
        torch.load(tmp_path / "reference" / "run" / "checkpoints" / last, weights_only=False)["model"],
    )


@pytest.mark.slow
def test_deterministic_runs_give_bit_identical_weights(tmp_path: Path) -> None:
    sets = ("train.deterministic=true", "data.gauges.workers=1")
    for name in ("a", "b"):
        ok(torchrun(write_bundle(tmp_path / name, *sets)))
        assert summary(tmp_path / name / "run")["deterministic"] is True
    assert_same_weights(final_weights(tmp_path / "a" / "run"), final_weights(tmp_path / "b" / "run"))
