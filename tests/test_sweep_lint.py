"""The `sweep` block: its checks, `--set` on it, and the base blueprint it leaves for everything else."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from dtec.analysis import analyse
from dtec.compiler import compile_blueprint

# The flood twin without its sweep.
BASE = (Path(__file__).resolve().parent / "fixtures" / "flood-sweep.twin").read_text().split("\nsweep {")[0]
SWEEP = """
# tuned by hand before
sweep {
  trials = 8
  parallel = 2
  space = [
    loguniform("train.optimizer.lr", 1e-4, 1e-1),
    choice("data.gauges.batch", [16, 32]),
    choice("train.scheduler", [cosine(warmup = 5), none]),
    choice("model.net.arch.hidden", [[8], [16, 16]]),
  ]
}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bp.twin"
    path.write_text(text, encoding="utf-8")
    return path


def codes(result) -> list[str]:
    return [d.code for d in result.diagnostics]


def test_a_sweep_over_numbers_calls_and_lists_lints_clean(tmp_path: Path) -> None:
    assert codes(analyse(write(tmp_path, BASE + SWEEP), environ={})) == []


def test_set_changes_the_sweep(tmp_path: Path) -> None:
    result = analyse(write(tmp_path, BASE + SWEEP), environ={}, sets=["sweep.trials=4"])
    assert codes(result) == [] and result.blueprint.get("sweep", "trials") == 4


def test_the_sweep_leaves_the_base_blueprint_to_compile(tmp_path: Path) -> None:
    with_sweep, _ = compile_blueprint(write(tmp_path, BASE + SWEEP), "local", environ={})
    without, _ = compile_blueprint(write(tmp_path, BASE), "local", environ={})
    assert with_sweep is not None and with_sweep.files["ir.json"] == without.files["ir.json"]


def test_a_bad_key_points_at_the_key_with_a_suggestion(tmp_path: Path) -> None:
    text = BASE + SWEEP.replace('"model.net.arch.hidden"', '"model.net.arch.hiden"')
    [d] = analyse(write(tmp_path, text), environ={}).diagnostics
    assert d.code == "DT340" and d.help == "did you mean `hidden`?"
    assert d.span.source.text[d.span.start : d.span.end] == '"model.net.arch.hiden"'


def test_a_key_of_a_function_not_in_use_is_unknown(tmp_path: Path) -> None:
    text = BASE + SWEEP.replace('"model.net.arch.hidden", [[8], [16, 16]]', '"model.net.arch.layers", [1, 2]')
    [d] = analyse(write(tmp_path, text), environ={}).diagnostics
    assert d.code == "DT340" and "`mlp(…)` at `model.net.arch` takes no `layers`" in d.message


def test_each_choice_is_checked_as_the_key_would_be(tmp_path: Path) -> None:
    text = BASE + SWEEP.replace("[[8], [16, 16]]", "[[8], [0]]")
    [d] = analyse(write(tmp_path, text), environ={}).diagnostics
    assert d.code == "DT344" and d.message.startswith("`model.net.arch.hidden = [0]` fails:")
    assert d.span.source.text[d.span.start : d.span.end] == "[0]"


def test_journal_storage_is_refused_for_kubernetes(tmp_path: Path) -> None:
    text = BASE + 'target "kubernetes" {\n  image = "x/y:1"\n}\n' + SWEEP
    found = analyse(write(tmp_path, text), environ={}).diagnostics
    assert [d.code for d in found] == ["DT347"] and "`kubernetes`" in found[0].message
    fixed = text.replace("parallel = 2", 'parallel = 2\n  storage = "postgresql://optuna@db/sweeps"')
    assert codes(analyse(write(tmp_path, fixed), environ={})) == []


def test_lint_of_a_sweep_does_not_import_optuna(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + SWEEP)
    script = (
        "import sys\nfrom dtec.analysis import analyse\nfrom pathlib import Path\n"
        f"assert not analyse(Path({str(path)!r}), environ={{}}).diagnostics\n"
        "print(json.dumps('optuna' in sys.modules))\n"
    ).replace("import sys", "import json, sys")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) is False
