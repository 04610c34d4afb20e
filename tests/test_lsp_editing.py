"""Completion, hover and code actions of `dtec lsp`, as pure functions of the text and a position."""

from __future__ import annotations

import glob
from pathlib import Path

import pytest
from lsprotocol import types

from dtec.analysis import analyse
from dtec.lsp.actions import code_actions
from dtec.lsp.completion import complete
from dtec.lsp.hover import hover
from dtec.lsp.positions import lsp_range, offset
from dtec.source import Source

BLUEPRINT = """\
twin "flood" {
  description = "river levels"
}

data "gauges" {
  source = synthetic(samples = 256, shape = [8], targets = 1)
  batch = 16
}

model "net" {
  arch = mlp(input = 8, output = 1)
  input = data.gauges
}

train {
  loss = mse
  epochs = 10
}

target "juwels-booster" {
  partition = "booster"
  walltime = 2h
  account = "training2500"
  venv = "/p/project/training2500/venv"
}
"""


IMPORTING = 'import "shared.twin"\n\n' + BLUEPRINT


def at(text: str, marker: str, after: str = "") -> tuple[str, types.Position]:
    """Insert `marker` after the first `after` (or at the end) and return the text and the position after the marker."""
    index = text.index(after) + len(after) if after else len(text)
    text = text[:index] + marker + text[index:]
    end = index + len(marker)
    line = text.count("\n", 0, end)
    return text, types.Position(line, end - (text.rfind("\n", 0, end) + 1))


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / ".git").mkdir()  # the project root: imports stay inside it
    (tmp_path / "shared.twin").write_text((Path(__file__).parent / "fixtures" / "lsp" / "shared.twin").read_text())
    return tmp_path / "flood.twin"


def completions(found: tuple[str, types.Position], path: Path | None = None) -> types.CompletionList:
    text, pos = found
    return complete(text, str(path) if path else None, pos, {})


def labels(text: str, pos: types.Position, path: Path | None = None, environ: dict | None = None) -> list[str]:
    return [item.label for item in complete(text, str(path) if path else None, pos, environ or {}).items]


# ---- completion at the positions of issue 17 ------------------------------------------------


def test_top_level_offers_block_kinds_but_not_singletons_already_there() -> None:
    got = labels(*at(BLUEPRINT, "\n"))
    assert {"data", "model", "target", "strategy", "monitor", "sweep", "import"} <= set(got)
    assert "train" not in got and "twin" not in got  # each may appear once and is already there


def test_a_block_offers_its_keys_not_yet_set_with_their_docs() -> None:
    result = completions(at(BLUEPRINT, "  ", "train {\n"))
    by_label = {item.label: item for item in result.items}
    assert "loss" not in by_label and "epochs" not in by_label  # set below the cursor
    assert {"optimizer", "precision", "scheduler", "checkpoint"} <= set(by_label)
    precision = by_label["precision"]
    assert precision.detail.startswith("one of `auto`, `fp32`")
    assert "numeric precision" in precision.documentation.value
    assert precision.text_edit.new_text == "precision = "


@pytest.mark.parametrize(
    ("after", "expected", "absent"),
    [
        ('twin "flood" {\n', {"version"}, {"description"}),
        ('data "gauges" {\n', {"split", "shuffle", "workers", "normalize"}, {"source", "batch"}),
        ('model "net" {\n', {"weights", "freeze", "init", "path"}, {"arch", "input"}),
        ('target "juwels-booster" {\n', {"reservation", "qos", "machine", "modules"}, {"partition", "walltime"}),
    ],
)
def test_each_block_kind_offers_its_own_keys(after: str, expected: set[str], absent: set[str]) -> None:
    got = set(labels(*at(BLUEPRINT, "  ", after)))
    assert expected <= got and not absent & got


def test_after_equals_the_enum_symbols_of_the_key() -> None:
    text = BLUEPRINT + "\nstrategy {\n  kind =\n}\n"
    result = completions(at(text, "", "kind ="))
    assert [i.label for i in result.items] == ["auto", "single", "ddp", "fsdp", "deepspeed"]
    assert result.items[2].text_edit.new_text == " ddp"  # a space after the `=`


def test_after_equals_a_call_key_offers_its_functions() -> None:
    got = completions(at(BLUEPRINT, "\n  optimizer = ad", "epochs = 10"))
    names = {item.label: item for item in got.items}
    assert {"adamw", "adam", "sgd", "rmsprop"} == set(names)
    assert names["sgd"].detail == "sgd(lr, weight_decay, momentum, nesterov)"
    assert names["adamw"].text_edit.range.start.character == len("  optimizer = ")


def test_inside_a_call_its_arguments_not_given_with_their_types() -> None:
    items = completions(at(BLUEPRINT, ",", "shape = [8]")).items
    by_label = {item.label: item for item in items}
    assert set(by_label) == {"classes", "seed"}
    assert by_label["seed"].detail == "an integer (default `0`)"
    assert by_label["seed"].text_edit.new_text == " seed = "


def test_a_positional_argument_offers_the_values_of_its_parameter() -> None:
    text = BLUEPRINT.replace("epochs = 10", "stop_early = { monitor = max(val_ }")
    got = labels(*at(text, "", "max(val_"))
    assert {"val_loss", "val_accuracy", "val_f1"} <= set(got) and "metric" in got


def test_after_data_dot_the_data_sets_of_this_file_and_its_imports(project: Path) -> None:
    text, pos = at(IMPORTING, "", "input = data.")
    assert labels(text, pos, project) == ["gauges", "archive"]
    assert labels(text, pos) == ["gauges"]  # an unsaved file has no folder to import from


def test_a_reference_key_offers_the_dotted_labels() -> None:
    got = labels(*at(BLUEPRINT, "\n  model = ", "epochs = 10"))
    assert got == ["model.net"]


def test_in_a_target_label_the_machines_shipped_and_from_dtec_machines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dtec.resources import data_path

    shipped = data_path("backends", "machines", "slurm.toml")
    (tmp_path / "mycluster.toml").write_text(shipped.read_text().replace('name = "slurm"', 'name = "mycluster"'))
    monkeypatch.setenv("DTEC_MACHINES", str(tmp_path))
    items = completions(at(BLUEPRINT, '\ntarget "ju')).items
    by_label = {item.label: item for item in items}
    assert {"juwels-booster", "lumi", "local", "mycluster"} <= set(by_label)
    assert "4 × " in by_label["juwels-booster"].detail
    assert by_label["juwels-booster"].text_edit.range.start.character == len('target "')


def test_partition_and_qos_of_the_target_machine() -> None:
    text, pos = at(BLUEPRINT, "", 'partition = "')
    partitions = completions((text, pos)).items
    assert [i.label for i in partitions] == ["booster", "develbooster", "largebooster"]
    assert "walltime ≤ 2h" in partitions[1].detail
    # `profile` names the machine when the label names something else, even below the cursor.
    other = 'target "small" {\n  qos = "\n  profile = "lumi"\n}\n'
    assert labels(*at(other, "", 'qos = "')) == [p.qos for p in _lumi().partitions if p.qos]
    assert labels(*at(other.replace("lumi", "juwels-booster"), "", 'qos = "')) == []


def _lumi():
    from dtec.machines import load_machines

    return load_machines().get("lumi")


def test_units_after_a_number_where_the_key_takes_them() -> None:
    got = labels(*at(BLUEPRINT, "", "walltime = 2"))
    assert got == ["ms", "s", "min", "h", "d"]
    sizes = completions(at('target "x" {\n  machine {\n    memory = 512Gi\n  }\n}\n', "", "memory = 512Gi")).items
    assert "GiB" in [i.label for i in sizes] and "ms" not in [i.label for i in sizes]
    assert sizes[0].text_edit.range.start.character == len("    memory = 512")
    assert labels(*at(BLUEPRINT, "", "epochs = 10")) == []  # an integer takes no unit


def test_half_typed_text_elsewhere_does_not_blank_completion() -> None:
    broken = BLUEPRINT.replace("batch = 16", "batch = (((\n  source = ")
    assert {"adamw", "sgd"} <= set(labels(*at(broken, "\n  optimizer = ", "epochs = 10")))
    unclosed = 'model "m" {\n  arch = mlp(input = 8, '
    assert {"output", "hidden"} <= set(labels(unclosed, types.Position(1, len("  arch = mlp(input = 8, "))))


def test_no_completion_in_a_comment() -> None:
    assert labels(*at(BLUEPRINT, "# a note on da", "train {\n")) == []


# ---- hover ---------------------------------------------------------------------------------


def hover_text(text: str, after: str, environ: dict | None = None, path: Path | None = None) -> str | None:
    index = text.index(after) + len(after) - 1
    line = text.count("\n", 0, index)
    found = hover(text, str(path) if path else None, types.Position(line, index - (text.rfind("\n", 0, index) + 1)), environ or {})
    return found.contents.value if found else None


def test_hover_on_a_block_key_function_argument_and_symbol() -> None:
    assert hover_text(BLUEPRINT, "train").startswith("`train { … }`\n\nHow the model is trained.")
    assert hover_text(BLUEPRINT, "batch") == "`batch`: an integer (required)\n\nbatch size per rank"
    assert hover_text(BLUEPRINT, "mlp").startswith("- `mlp(input, hidden, output)`: A multi-layer perceptron.")
    assert "widths of the hidden layers" in hover_text(BLUEPRINT, "mlp")
    assert hover_text(BLUEPRINT, "samples").startswith("`samples`: an integer (required)\n\nnumber of samples")
    assert hover_text(BLUEPRINT, "mse") == "- `mse()`: Mean squared error."
    assert hover_text(BLUEPRINT, "description = ") is None  # the `=`: nothing to say


def test_hover_on_a_reference_names_where_it_is_declared(project: Path) -> None:
    text = IMPORTING.replace("input = data.gauges", "input = data.archive")
    assert hover_text(text, "data.archive", path=project).startswith('`data "archive"`, declared in shared.twin')


def test_hover_on_a_target_label_summarises_the_machine() -> None:
    summary = hover_text(BLUEPRINT, 'target "juwels')
    assert summary.startswith("**juwels-booster**: JUWELS Booster")
    assert "4 × NVIDIA A100" in summary and "512 GiB memory" in summary
    assert "- `develbooster`: 4 GPUs/node, 48 cores, 512 GiB, walltime ≤ 2h" in summary
    assert hover_text(BLUEPRINT, 'partition = "boo').startswith("`booster` of juwels-booster")


def test_hover_on_env_resolves_it_in_the_servers_environment() -> None:
    text = 'target "local" {\n  account = env("PROJECT")\n  venv = env("VENV", env("HOME", "~"))\n}\n'
    assert hover_text(text, 'env("PROJ', {"PROJECT": "hpc42"}) == "`env(…)` = `hpc42` (`PROJECT` is set)"
    assert "is not set and there is no default (DT113)" in hover_text(text, "account = env", {})
    assert hover_text(text, "venv = env", {"HOME": "/home/me"}) == "`env(…)` = `/home/me` (`VENV` is not set: `HOME` is set)"
    assert hover_text(text, "venv = env", {}) == "`env(…)` = `~` (`VENV` is not set: `HOME` is not set: the default)"


# ---- code actions --------------------------------------------------------------------------


def apply(text: str, edit: types.TextEdit) -> str:
    source = Source("x", text)
    return text[: offset(source, edit.range.start)] + edit.new_text + text[offset(source, edit.range.end) :]


def actions_for(path: Path, text: str, code: str) -> list[types.CodeAction]:
    found = analyse(path, text).diagnostics
    wanted = [types.Diagnostic(lsp_range(d.span), d.message, code=d.code) for d in found if d.code == code and d.span.path == str(path)]
    assert wanted, f"{code} not reported"
    return code_actions(text, str(path), "file:///bp.twin", wanted, found)


def fixture_files() -> list[Path]:
    root = Path(__file__).parent / "fixtures" / "rules"
    return [Path(p) for p in sorted(glob.glob(str(root / "DT*.twin")))]


def test_every_did_you_mean_of_the_rule_fixtures_is_a_fix_that_removes_its_diagnostic() -> None:
    fixed = []
    for path in fixture_files():
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        found = analyse(path, text).diagnostics
        for d in found:
            if "did you mean" not in (d.help or "") or d.span is None or d.span.path != str(path):
                continue
            wanted = types.Diagnostic(lsp_range(d.span), d.message, code=d.code)
            (action,) = [a for a in code_actions(text, str(path), "file:///x", [wanted], found) if a.is_preferred]
            after = analyse(path, apply(text, action.edit.changes["file:///x"][0])).diagnostics
            assert sum(x.code == d.code for x in after) < sum(x.code == d.code for x in found), (path.name, action)
            fixed.append(d.code)
    assert {"DT005", "DT100", "DT101", "DT102", "DT103", "DT104", "DT112", "DT200", "DT302", "DT307"} <= set(fixed)


def test_did_you_mean_replaces_only_the_misspelt_part() -> None:
    text = BLUEPRINT.replace("input = data.gauges", "input = data.gauge").replace("epochs = 10", "epoch = 10")
    path = Path("bp.twin")
    (action,) = actions_for(path, text, "DT112")
    assert action.title == "Replace with `data.gauges`" and action.kind == types.CodeActionKind.QuickFix
    (dym,) = [a for a in actions_for(path, text, "DT101") if a.is_preferred]
    assert "epochs = 10" in apply(text, dym.edit.changes["file:///bp.twin"][0])


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ("arch = mlp(input = 8, output = 1)", "arch = mlp(input = 8)"),
        ("source = synthetic(samples = 256, shape = [8], targets = 1)", "source = synthetic(shape = [8], targets = 1)"),
    ],
)
def test_add_a_missing_required_argument(before: str, after: str) -> None:
    text = BLUEPRINT.replace(before, after)
    path = Path("bp.twin")
    (action,) = actions_for(path, text, "DT107")
    fixed = apply(text, action.edit.changes["file:///bp.twin"][0])
    assert analyse(path, fixed).ok, fixed
    assert action.title in ("Add `output = 1`", "Add `samples = 1`")


@pytest.mark.parametrize(
    ("train", "expected"),
    [
        ("train {\n  epochs = 10\n}", "train {\n  loss = mse\n  epochs = 10\n}"),
        ("train {}", "train { loss = mse }"),
        ("train { epochs = 10 }", "train { loss = mse, epochs = 10 }"),
        (
            "train {\n  epochs = 10\n  stop_early = { patience = 2 }\n}",
            "train {\n  loss = mse\n  epochs = 10\n  stop_early = { patience = 2, monitor = min(metric = val_loss) }\n}",
        ),
    ],
)
def test_add_a_missing_required_key_to_a_block_or_map(train: str, expected: str) -> None:
    text = BLUEPRINT.replace("train {\n  loss = mse\n  epochs = 10\n}", train)
    path = Path("bp.twin")
    actions = actions_for(path, text, "DT107")
    edits = sorted((a.edit.changes["file:///bp.twin"][0] for a in actions), key=lambda e: _key(e.range.start), reverse=True)
    fixed = text
    for edit in edits:  # the last first: each edit's range is in the original text
        fixed = apply(fixed, edit)
    assert expected in fixed
    assert analyse(path, fixed).ok, fixed


def _key(p: types.Position) -> tuple[int, int]:
    return (p.line, p.character)


def test_suppress_a_warning_adds_a_comment_or_extends_the_one_there() -> None:
    text = BLUEPRINT + 'data "spare" {\n  source = synthetic(samples = 8, shape = [2], targets = 1)\n  batch = 2\n}\n'
    path = Path("bp.twin")
    (action,) = actions_for(path, text, "DT115")
    assert action.title == "Suppress DT115 on this line (`# dtec: ignore[DT115]`)"
    fixed = apply(text, action.edit.changes["file:///bp.twin"][0])
    assert '# dtec: ignore[DT115]\ndata "spare" {' in fixed
    assert analyse(path, fixed).ok and not analyse(path, fixed).diagnostics
    assert not [a for a in actions_for(path, text.replace("epochs = 10", "epoch = 10"), "DT101") if "Suppress" in a.title]  # errors cannot be


def test_suppress_extends_an_existing_directive() -> None:
    text = BLUEPRINT.replace('target "juwels-booster"', '# dtec: ignore[DT120]\ntarget "juwels-booster"')
    text += 'data "spare" {  # dtec: ignore[DT211]\n  source = synthetic(samples = 8, shape = [2], targets = 1)\n  batch = 2\n}\n'
    path = Path("bp.twin")
    (action,) = [a for a in actions_for(path, text, "DT115") if "Suppress" in a.title]
    fixed = apply(text, action.edit.changes["file:///bp.twin"][0])
    assert 'data "spare" {  # dtec: ignore[DT211, DT115]' in fixed


def test_actions_only_for_diagnostics_the_client_sends() -> None:
    text = BLUEPRINT.replace("epochs = 10", "epoch = 10")
    path = Path("bp.twin")
    stale = types.Diagnostic(types.Range(types.Position(0, 0), types.Position(0, 1)), "old", code="DT101")
    assert code_actions(text, str(path), "file:///bp.twin", [stale]) == []
    assert code_actions(text, str(path), "file:///bp.twin", []) == []
