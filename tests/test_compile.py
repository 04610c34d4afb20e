"""Compile every shipped blueprint for every target it declares; the IR and manifest contracts."""

from __future__ import annotations

import functools
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator
from typer.testing import CliRunner

from dtec.cli import app
from dtec.compiler import compile_blueprint
from dtec.ir import ir_schema
from dtec.analysis import analyse
from dtec.machines import load_machines
from dtec.runs import ir_sha256

REPO = Path(__file__).resolve().parent.parent
GOLDEN_TRAIN = REPO / "tests" / "golden" / "train"
IR_HASH = re.compile(r'^IR_SHA256 = "([0-9a-f]{64})"$', re.M)
CASES = [
    (path.name, target)
    for path in sorted((REPO / "blueprints").glob("*.twin"))
    for target in (analyse(path, environ={}).blueprint.get("target") or {})
]


@pytest.fixture(scope="module")
def validator() -> Draft202012Validator:
    schema = ir_schema()
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


@functools.cache
def bundle_of(name: str, target: str):
    """The bundle of a shipped blueprint for one of its targets, compiled once."""
    bundle, diagnostics = compile_blueprint(REPO / "blueprints" / name, target, environ={})
    assert bundle is not None, [(d.code, d.message) for d in diagnostics]
    return bundle


@pytest.mark.parametrize(("name", "target"), CASES)
def test_every_blueprint_compiles_for_every_target(
    name: str, target: str, validator, blueprints_dir: Path, golden_bundle
) -> None:
    bundle = bundle_of(name, target)
    assert {"train.py", "ir.json", "manifest.json", bundle.launcher} <= set(bundle.files)
    compile(bundle.files["train.py"], "train.py", "exec")
    validator.validate(json.loads(bundle.files["ir.json"]))
    manifest = json.loads(bundle.files["manifest.json"])
    assert manifest["target"] == target and manifest["launcher"] == bundle.launcher
    again, _ = compile_blueprint(blueprints_dir / name, target, environ={})
    assert again.files == bundle.files  # deterministic
    golden_bundle(blueprints_dir / name, target, bundle.files)


def test_training_scripts_match_golden_once_per_distinct_script(golden, update_golden) -> None:
    """Each distinct train.py once, in tests/golden/train/, named after its first (blueprint,
    target); index.json says which (blueprint, target) compiles to which."""
    scripts: dict[str, str] = {}  # text -> file name
    index = {}
    for name, target in CASES:
        files = bundle_of(name, target).files
        # The script holds its configuration's hash, which differs per target: checked here, and
        # left out of the goldens so that they do not fan out.
        assert IR_HASH.search(files["train.py"])[1] == ir_sha256(files["ir.json"])
        text = IR_HASH.sub('IR_SHA256 = "<ir_sha256 of ir.json>"', files["train.py"])
        stem = Path(name).stem
        index[f"{stem}/{target}"] = scripts.setdefault(text, f"{stem}-{target}.py")
    if update_golden:
        for old in GOLDEN_TRAIN.glob("*.py"):
            old.unlink()
    for text, file in scripts.items():
        golden(GOLDEN_TRAIN / file, text)
    golden(GOLDEN_TRAIN / "index.json", json.dumps(index, indent=2) + "\n")
    assert sorted(p.name for p in GOLDEN_TRAIN.glob("*.py")) == sorted(scripts.values())


def test_quickstart_compiles_locally(blueprints_dir: Path) -> None:
    bundle, diagnostics = compile_blueprint(blueprints_dir / "quickstart.twin", "local", environ={})
    assert diagnostics == []
    assert bundle.launcher == "run.sh"
    assert bundle.ir.strategy.device in ("cpu", "cuda")


def test_cli_compile_writes_the_bundle(tmp_path: Path, blueprints_dir: Path) -> None:
    out = tmp_path / "bundle"
    result = CliRunner().invoke(app, ["compile", str(blueprints_dir / "quickstart.twin"), "-t", "lumi", "-o", str(out), "--explain"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["ir.json", "job.sbatch", "logs", "manifest.json", "predict.py", "train.py"]
    first = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    CliRunner().invoke(app, ["compile", str(blueprints_dir / "quickstart.twin"), "-t", "lumi", "-o", str(out)])
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == first
    py = subprocess.run([sys.executable, "-m", "py_compile", str(out / "train.py")], capture_output=True, text=True)
    assert py.returncode == 0, py.stderr


def test_cli_compile_refuses_errors_with_a_diagnostic(tmp_path: Path, blueprints_dir: Path) -> None:
    result = CliRunner().invoke(app, ["compile", str(blueprints_dir / "quickstart.twin"), "-t", "lumii", "-o", str(tmp_path / "x")])
    assert result.exit_code == 1
    assert "DT200" in result.output and "did you mean `lumi`?" in result.output
    assert not (tmp_path / "x").exists()


def test_diagnostics_about_the_command_line_point_at_the_argument(tmp_path: Path, blueprints_dir: Path) -> None:
    """`-t lumii` or an undeclared target's missing account is the argument's fault, not line 1's."""
    quickstart = blueprints_dir / "quickstart.twin"
    for target, code, marked in (("lumii", "DT200", "lumii"), ("vega", "DT209", "vega")):
        [d] = [d for d in compile_blueprint(quickstart, target, environ={})[1] if d.code == code]
        assert (d.span.path, d.span.source.text) == ("command line", f"--target {target}")
        assert d.span.source.text[d.span.start : d.span.end] == marked
    result = CliRunner().invoke(app, ["lint", str(tmp_path / "nothere.twin")])
    assert "DT001" in result.output and "nothere.twin" in result.output and "1 |" not in result.output
    result = CliRunner().invoke(app, ["compile", str(quickstart), "-t", "vega", "-o", str(tmp_path / "x")])
    assert "--target vega" in result.output and 'add `target "vega" { account' in result.output
    assert "1 | #" not in result.output  # the blueprint's first line is not quoted


def test_cli_set_and_emit_ir(blueprints_dir: Path) -> None:
    result = CliRunner().invoke(
        app, ["compile", str(blueprints_dir / "quickstart.twin"), "-t", "lumi", "--emit", "ir", "--set", "strategy.nodes=4"]
    )
    assert result.exit_code == 0, result.output
    ir = json.loads(result.stdout)
    assert ir["strategy"]["nodes"] == 4 and ir["strategy"]["world_size"] == 32
    assert ir["monitor"]["log_every"] is None


def test_log_every_reaches_the_training_script(blueprints_dir: Path) -> None:
    bundle, diagnostics = compile_blueprint(
        blueprints_dir / "quickstart.twin", "lumi", environ={}, sets=("monitor.log_every=7",)
    )
    assert diagnostics == []
    assert bundle.ir.monitor.log_every == 7
    assert '"log_every": 7}' in bundle.files["train.py"].split("\nMONITOR = ")[1].split("\n")[0]


def test_cli_schema_graph_and_targets(blueprints_dir: Path) -> None:
    runner = CliRunner()
    schema = json.loads(runner.invoke(app, ["schema"]).stdout)
    assert schema["$id"].startswith("https://") and schema["$schema"].endswith("2020-12/schema")
    machine_schema = json.loads(runner.invoke(app, ["schema", "machine"]).stdout)
    assert machine_schema["$schema"].endswith("2020-12/schema")
    for fmt, marker in (("dot", "digraph"), ("mermaid", "flowchart LR"), ("json", '"nodes"')):
        result = runner.invoke(app, ["graph", str(blueprints_dir / "quickstart.twin"), "-t", "lumi", "-f", fmt])
        assert result.exit_code == 0 and marker in result.stdout
    listing = runner.invoke(app, ["targets", "--format", "json"])
    names = {row["name"] for row in json.loads(listing.stdout)}
    assert {"lumi", "juwels-booster", "jureca-dc", "vega", "deucalion", "deucalion-gpu", "leonardo", "marenostrum5",
            "karolina", "meluxina", "local", "slurm", "kubernetes", "kubeflow", "interlink"} <= names
    shown = runner.invoke(app, ["targets", "show", "lumi"])
    assert json.loads(shown.stdout)["name"] == "lumi"
    missing = runner.invoke(app, ["targets", "show", "lumii"])
    assert missing.exit_code == 2 and "did you mean `lumi`?" in missing.output


# ---- lint and compile agree --------------------------------------------------------------------
TARGETS = load_machines().names()
AGREE_FILES = [
    *sorted((REPO / "tests" / "fixtures" / "rules").glob("DT*.twin")),
    *sorted((REPO / "blueprints").glob("*.twin")),
    *sorted((REPO / "tests" / "backends").glob("*.twin")),
]
TINY = (REPO / "tests" / "fixtures" / "minimal.twin").read_text()
# What a launcher cannot express, and `machine { }` values a profile cannot take: (text, the value
# the error points at). Lint passed the first kind and compile refused it; both crashed on the second.
REFUSED = {
    "container": ('target "marenostrum5" {\n  account = "ehpc01"\n}\n', 'target "marenostrum5"'),
    "sbatch-value": ('target "slurm" {\n  account = "a\\\\b"\n}\n', '"a\\\\b"'),
    "interlink-nodes": ('strategy {\n  nodes = 2\n}\ntarget "interlink" {\n  image = "x/y:1"\n}\n', "2"),
    "interlink-flag": ('target "interlink" {\n  image = "x/y:1"\n  partition = "gpu a"\n}\n', '"gpu a"'),
    "namespace": ('target "kubernetes" {\n  image = "x/y:1"\n  namespace = "ML_Team"\n}\n', '"ML_Team"'),
    "override": ('target "slurm" {\n  machine {\n    cpus = 0\n  }\n}\n', "0"),
    "conflict": ('target "slurm" {\n  machine {\n    usable_cpus = 1000\n  }\n}\n', "1000"),
    "kube-only": ('target "slurm" {\n  machine {\n    shm_size = 1GB\n  }\n}\n', "1GB"),
}


def errors(diagnostics) -> list[tuple[str, str, object]]:
    return [(d.code, d.message, d.span) for d in diagnostics if d.severity.value == "error"]


def agree(path: Path, target: str, text: str | None = None) -> list:
    """Assert that lint's errors are compile's, and that compile writes a bundle exactly without them."""
    linted = errors(analyse(path, text, environ={}, targets=[target]).diagnostics)
    bundle, diagnostics = compile_blueprint(path, target, text=text, environ={})
    assert errors(diagnostics) == linted, target
    assert (bundle is None) == bool(linted), target
    return linted


@pytest.mark.parametrize("path", AGREE_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_lint_and_compile_agree_for_every_target(path: Path) -> None:
    for target in TARGETS:
        agree(path, target)


@pytest.mark.parametrize(("text", "at"), REFUSED.values(), ids=list(REFUSED))
def test_lint_reports_what_compile_refuses_at_the_value(text: str, at: str) -> None:
    source = TINY + text
    target = text.split('target "')[1].split('"')[0]
    [(code, _, span)] = agree(Path("t.twin"), target, source)
    assert code in ("DT215", "DT216") and source[span.start : span.end] == at
    for other in TARGETS:
        agree(Path("t.twin"), other, source)
