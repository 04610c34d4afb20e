"""The code table: a doc and a triggering fixture per rule; `dtec explain`; docs/rules."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import dtec.rules
from dtec.cli import app
from dtec.analysis import analyse
from dtec.compiler import compile_blueprint
from dtec.evaluation import evaluate_run
from dtec.tracking import export_mlflow
from dtec.output import write_bundle
from dtec.preflight import run_check
from dtec.render import render
from dtec.rules import RULES, rule_doc
from dtec.source import Source
from dtec.syntax.parser import parse

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "rules"
HEADINGS = ["## What it does", "## Why is this bad?", "## Example", "## Use instead"]

# Codes in the table that no check emits yet. The fixtures exist; strict xfail turns the test red
# the day the code is emitted, so that the marker is removed and the golden file written.
NOT_EMITTED: dict[str, str] = {}
# Codes only `dtec check` emits: it compiles the fixture and runs its train.py --check.
CHECK_ONLY = {"DT308", "DT320"}
# Codes only `dtec evaluate` emits: the fixture is compiled into a run folder that never ran.
EVALUATE_ONLY = {"DT321"}
# Rules of `dtec export mlflow`, about a run of the fixture that never ran.
EXPORT_ONLY = {"DT373"}
# Doc examples that are not meant to parse: they show syntax errors.
UNPARSABLE_EXAMPLES = {"DT002", "DT003", "DT004", "DT005", "DT006"}


def sections(doc: str) -> dict[str, str]:
    """Split a rule doc at its `## ` headings."""
    parts = re.split(r"^(## .+)$", doc, flags=re.MULTILINE)
    return {parts[i]: parts[i + 1].strip() for i in range(1, len(parts), 2)}


def fenced(text: str) -> tuple[str, str]:
    """Return (language, code) of the first fenced block."""
    match = re.search(r"^```(\w*)\n(.*?)^```$", text, flags=re.DOTALL | re.MULTILINE)
    assert match, "no fenced code block"
    return match.group(1), match.group(2)


def param(code: str):
    if code in NOT_EMITTED:
        return pytest.param(code, marks=pytest.mark.xfail(strict=True, reason=NOT_EMITTED[code]))
    return code


# ---- docs --------------------------------------------------------------------------------------


@pytest.mark.parametrize("code", list(RULES))
def test_rule_has_a_doc_with_every_heading(code: str) -> None:
    doc = rule_doc(code)
    assert doc, f"dtec/rules/docs/{code}.md is missing"
    assert doc.splitlines()[0] == f"# {code} {RULES[code].name}"
    found = re.findall(r"^## .+$", doc, flags=re.MULTILINE)
    assert found == HEADINGS
    parts = sections(doc)
    assert all(parts[h] for h in HEADINGS), "a section is empty"
    assert doc.endswith("\n") and not doc.endswith("\n\n")


@pytest.mark.parametrize("code", list(RULES))
def test_doc_snippets_parse(code: str) -> None:
    parts = sections(rule_doc(code))
    for heading in ("## Example", "## Use instead"):
        lang, snippet = fenced(parts[heading])
        if lang != "hcl":
            continue  # a shell session or a machine profile
        _, found = parse(Source(f"{code}.md", snippet))
        if heading == "## Example" and code in UNPARSABLE_EXAMPLES:
            assert found, "the example is meant to show a syntax problem"
        else:
            assert [d.code for d in found] == [], f"{heading} does not parse"


def test_no_doc_without_a_rule() -> None:
    folder = Path(dtec.rules.__file__).resolve().parent / "docs"
    assert sorted(p.stem for p in folder.glob("*.md")) == sorted(RULES)


# ---- fixtures ----------------------------------------------------------------------------------


def test_every_rule_has_a_fixture() -> None:
    assert sorted(p.stem for p in FIXTURES.glob("DT*.twin")) == sorted(RULES)


@pytest.mark.parametrize("code", [param(c) for c in RULES])
def test_fixture_triggers_exactly_its_rule(
    code: str, repo_root: Path, monkeypatch, golden, tmp_path: Path
) -> None:
    monkeypatch.chdir(repo_root)  # diagnostics then carry portable, relative paths
    monkeypatch.delenv("DTEC_MACHINES", raising=False)
    if code == "DT214":
        monkeypatch.setenv("DTEC_MACHINES", str(Path("tests", "fixtures", "rules", "DT214")))
    if code == "DT336":
        monkeypatch.setitem(sys.modules, "h5py", None)  # `import h5py` fails, as where it is not installed
    path = Path("tests", "fixtures", "rules", f"{code}.twin")
    diagnostics = list(analyse(path, environ={}).diagnostics)
    if code in CHECK_ONLY:
        assert diagnostics == []
        bundle, _ = compile_blueprint(path, "local", environ={})
        diagnostics = run_check(bundle).diagnostics
    if code in EVALUATE_ONLY:
        assert diagnostics == []
        bundle, _ = compile_blueprint(path, "local", environ={})
        monkeypatch.chdir(tmp_path)
        write_bundle(bundle.files, Path("never-ran"))
        (Path("never-ran") / "run").mkdir()
        (Path("never-ran") / "run" / "run.json").write_text('{"id": "never-ran"}')
        diagnostics = evaluate_run("never-ran").diagnostics
    if code in EXPORT_ONLY:
        assert diagnostics == []
        bundle, _ = compile_blueprint(path, "local", environ={})
        monkeypatch.chdir(tmp_path)
        write_bundle(bundle.files, Path("never-ran"))
        (Path("never-ran") / "run").mkdir()
        (Path("never-ran") / "run" / "run.json").write_text('{"id": "never-ran"}')
        diagnostics = export_mlflow(["never-ran"], "http://127.0.0.1:9").diagnostics
    assert sorted({d.code for d in diagnostics}) == [code]
    # Imported files are read by absolute path, and DT010's help shows one: make them relative.
    out = render(diagnostics, "json").replace(str(repo_root) + os.sep, "")
    golden(FIXTURES / f"{code}.json", out)


def test_goldens_are_those_of_emitted_rules() -> None:
    emitted = set(RULES) - set(NOT_EMITTED)
    assert {p.stem for p in FIXTURES.glob("DT*.json")} == emitted


# ---- dtec explain ------------------------------------------------------------------------------


def explain(*args: str):
    return CliRunner().invoke(app, ["explain", *args])


@pytest.mark.parametrize("name", ["DT101", "dt101", "unknown-attribute"])
def test_explain_prints_the_doc(name: str) -> None:
    result = explain(name)
    assert result.exit_code == 0, result.output
    assert result.stdout == rule_doc("DT101")  # plain text when stdout is not a terminal


def test_explain_lists_every_rule() -> None:
    result = explain()
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines] == list(RULES)
    assert lines[9].split()[:3] == ["DT101", "unknown-attribute", "error"]
    assert lines[9].endswith(RULES["DT101"].summary)


@pytest.mark.parametrize(
    ("name", "hint"),
    [
        ("unknown-atribute", "did you mean `unknown-attribute`?"),
        ("nonsense-rule-xyz", "run `dtec explain`"),
    ],
)
def test_explain_unknown_rule_exits_2(name: str, hint: str) -> None:
    result = explain(name)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert f"unknown rule `{name}`" in result.stderr and hint in result.stderr


# ---- docs/rules --------------------------------------------------------------------------------


def gen_rule_docs(repo_root: Path, *args: str) -> subprocess.CompletedProcess:
    script = repo_root / "scripts" / "gen_rule_docs.py"
    return subprocess.run(
        [sys.executable, str(script), *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_docs_rules_are_up_to_date(repo_root: Path) -> None:
    result = gen_rule_docs(repo_root, "--check")
    assert result.returncode == 0, result.stderr


def test_gen_rule_docs_check_finds_stale_pages(repo_root: Path, tmp_path: Path) -> None:
    assert gen_rule_docs(repo_root, "--check", "--out", str(tmp_path)).returncode == 1
    assert gen_rule_docs(repo_root, "--out", str(tmp_path)).returncode == 0
    assert gen_rule_docs(repo_root, "--check", "--out", str(tmp_path)).returncode == 0
    assert (tmp_path / "index.md").read_text(encoding="utf-8").count("| [DT") == len(RULES)
    (tmp_path / "DT101.md").write_text("edited by hand\n", encoding="utf-8")
    (tmp_path / "DT999.md").write_text("a rule that left the table\n", encoding="utf-8")
    stale = gen_rule_docs(repo_root, "--check", "--out", str(tmp_path))
    assert stale.returncode == 1 and "DT101.md, DT999.md" in stale.stderr
    gen_rule_docs(repo_root, "--out", str(tmp_path))
    assert not (tmp_path / "DT999.md").exists()
