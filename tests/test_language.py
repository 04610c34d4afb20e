"""The language core: typed values, env, imports, suppressions, --set overrides, cross-block checks."""

from __future__ import annotations

import itertools
import re
import subprocess
import sys
from pathlib import Path

import pytest

from dtec.analysis import analyse
from dtec.units import SIZES, parse_duration, parse_size

QUICKSTART_VALUES = {
    "twin": {"name": "flood-forecast", "description": "LSTM surrogate for daily river discharge", "version": "1.0"},
    "batch": 64,
    "walltime": 1800,
    "account": "project_465000000",
}

MINIMAL = """\
twin "t" {}
data "d" {
  source = synthetic(samples = 64, shape = [4], targets = 1)
  batch  = 8
}
model "m" {
  arch  = mlp(input = 4, output = 1)
  input = data.d
}
train {
  loss = mse
}
"""


def codes(result) -> list[tuple[str, int, int]]:
    """Return (code, line, column) of every diagnostic."""
    return [(d.code, *d.span.start_pos) if d.span else (d.code, 0, 0) for d in result.diagnostics]


def lint_text(text: str, environ=None, **kwargs):
    return analyse(Path("bp.twin"), text, environ or {}, targets=kwargs.pop("targets", ()), **kwargs)


def test_every_shipped_blueprint_lints_clean(blueprints_dir: Path) -> None:
    files = sorted(blueprints_dir.glob("*.twin"))
    assert len(files) >= 6
    for path in files:
        result = analyse(path, environ={})
        assert result.diagnostics == (), (path, codes(result))
        assert result.plans, f"{path} declares no target"


def test_quickstart_values_are_typed(blueprints_dir: Path) -> None:
    bp = analyse(blueprints_dir / "quickstart.twin", environ={}).blueprint
    assert bp.values["twin"] == QUICKSTART_VALUES["twin"]
    assert bp.get("data", "gauges", "batch") == QUICKSTART_VALUES["batch"]
    assert bp.get("data", "gauges", "source") == {
        "fn": "synthetic", "samples": 4096, "shape": [30, 8], "targets": 1, "classes": None, "seed": 42,
    }
    assert bp.get("train", "optimizer") == {"fn": "adamw", "lr": 1e-3, "weight_decay": 0.01, "betas": [0.9, 0.999], "eps": 1e-8}
    assert bp.get("train", "scheduler") == {"fn": "cosine", "warmup": 10}
    assert bp.get("target", "lumi", "walltime") == QUICKSTART_VALUES["walltime"]
    assert bp.get("target", "lumi", "account") == QUICKSTART_VALUES["account"]
    assert bp.get("strategy", "gpus_per_node") == "all"
    span = bp.span("data", "gauges", "batch")
    assert span.start_pos == (11, 13) and span.end_pos == (11, 15)


def test_env_takes_the_environment_over_the_default(blueprints_dir: Path) -> None:
    bp = analyse(blueprints_dir / "quickstart.twin", environ={"LUMI_ACCOUNT": "project_462000001"}).blueprint
    assert bp.get("target", "lumi", "account") == "project_462000001"


def test_env_without_default_and_unset_is_an_error() -> None:
    text = MINIMAL + 'target "lumi" {\n  account = env("NO_SUCH_VARIABLE")\n}\n'
    assert codes(lint_text(text, targets=["lumi"])) == [("DT113", 14, 13)]
    assert codes(lint_text(text, {"NO_SUCH_VARIABLE": "project_1"}, targets=["lumi"])) == []
    # Another target's variable is resolved only when that target is linted, compiled or run.
    assert codes(lint_text(text, targets=["local"])) == []


def test_minimal_blueprint_is_clean_and_defaults_are_filled() -> None:
    result = lint_text(MINIMAL)
    assert codes(result) == []
    bp = result.blueprint
    assert bp.get("train", "model") == "m"  # the only model
    assert bp.get("train", "checkpoint") == {"every": 1, "keep": 2, "final": "last"}
    assert bp.get("strategy", "kind") == "auto"
    assert bp.get("monitor", "profiler") == {"fn": "none"}


def test_monitor_log_every_is_an_optional_positive_int() -> None:
    assert lint_text(MINIMAL).blueprint.get("monitor", "log_every") is None
    result = lint_text(MINIMAL + "monitor {\n  log_every = 25\n}\n")
    assert codes(result) == []
    assert result.blueprint.get("monitor", "log_every") == 25


@pytest.mark.parametrize(
    ("value", "code", "hint"),
    [("0", "DT106", "at least 1"), ("-3", "DT106", "at least 1"), ("2.5", "DT105", "whole number"),
     ('"often"', "DT105", "remove the quotes"), ("true", "DT105", None)],
)
def test_invalid_log_every_points_at_the_value(value: str, code: str, hint: str | None) -> None:
    result = lint_text(MINIMAL + f"monitor {{\n  log_every = {value}\n}}\n")
    [found] = result.diagnostics
    assert (found.code, found.span.start_pos, found.span.end_pos) == (code, (14, 15), (14, 15 + len(value)))
    if hint:
        assert hint in found.help


@pytest.mark.parametrize(
    ("broken", "where"),
    [
        ("  arch  = mlp(input = 4, output = 1)", "  arch  = mlp(input = 4,"),  # a bracket left open
        ("  loss = mse", "  loss ="),  # a value not typed yet
        ("twin \"t\" {}", "twin \"t\" {"),  # a block never closed, in column 0 before the others
    ],
)
def test_a_syntax_error_leaves_the_other_blocks_checked(broken: str, where: str) -> None:
    text = MINIMAL.replace("  batch  = 8", "  btch   = 8").replace(broken, where)
    # The syntax error, and the unknown key of the block that parses; nothing that the broken
    # block could settle (a required block, the reference to the model).
    assert sorted(d.code for d in lint_text(text).diagnostics) == ["DT002", "DT101", "DT107"]


@pytest.mark.parametrize("digits", ["３２", "١٠٠", "1٠"])
def test_numbers_take_ascii_digits_only(digits: str) -> None:
    result = lint_text(MINIMAL.replace("batch  = 8", f"batch  = {digits}"))
    [found] = result.diagnostics
    assert (found.code, found.span.start_pos) == ("DT002", (4, 12 + digits.startswith("1")))
    assert "ASCII digits" in found.help


def test_cr_only_line_endings_are_line_breaks() -> None:
    from dtec.format import format_source
    from dtec.source import Source

    text = MINIMAL.replace("batch  = 8", "batch  = 0  # a comment ends at a CR")
    cr = text.replace("\n", "\r")
    assert codes(lint_text(cr)) == codes(lint_text(text)) == [("DT106", 4, 12)]
    [found] = lint_text(cr).diagnostics
    assert found.span.source.line_text(4) == "  batch  = 0  # a comment ends at a CR"
    assert format_source(Source("bp.twin", cr)) == format_source(Source("bp.twin", text))


def lint_bad(text: str, bad: str) -> tuple[list[tuple[str, tuple[int, int], str]], tuple[int, int]]:
    """Lint `text`; return its diagnostics as (code, position, message) and the position of `bad`."""
    result = lint_text(text)
    before = text[: text.index(bad)]
    return [(d.code, d.span.start_pos, d.message) for d in result.diagnostics], (before.count("\n") + 1, len(before.rsplit("\n", 1)[-1]) + 1)


def lint_value(block: str, value: str):
    """Lint MINIMAL plus `block` with `{}` replaced by `value`; return the diagnostics, the value's position and the blueprint."""
    found, at = lint_bad(MINIMAL + block.replace("{}", value), value)
    return found, at, lint_text(MINIMAL + block.replace("{}", value)).blueprint


WALLTIME = 'target "x" {\n  walltime = {}\n}\n'
MEMORY = 'target "x" {\n  machine {\n    memory = {}\n  }\n}\n'


@pytest.mark.parametrize(
    ("old", "new", "bad"),
    [
        ("loss = mse", "loss = mse, optimizer = adamw(lr = 1e309)", "1e309"),
        ("loss = mse", "loss = mse, clip_grad = 1e999", "1e999"),
        ("loss = mse", "loss = mse, clip_grad = -1e999", "-1e999"),
        ("batch  = 8", "batch  = 8e400", "8e400"),
        ("mlp(input = 4, output = 1)", 'python("m:M", scale = 1e999)', "1e999"),
        ("}\ntrain", '}\ntarget "x" {\n  walltime = 1e309s\n}\ntrain', "1e309s"),
        ("}\ntrain", '}\ntarget "x" {\n  machine {\n    memory = 1e400GB\n  }\n}\ntrain', "1e400GB"),
    ],
)
def test_non_finite_numbers_are_reported_once_at_the_number(old: str, new: str, bad: str) -> None:
    found, at = lint_bad(MINIMAL.replace(old, new, 1), bad)
    assert found == [("DT106", at, f"`{bad}` is not a finite number")]


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("2000ms", 2), ("0.1h", 360), ("1.5h", 5400), ("365d", 365 * 86400),
     ("1ms", "shorter than a second"), ("0.5s", "shorter than a second"), ("1500ms", "1.5 seconds"),
     ("366d", "longer than a year"), ("1e20d", "longer than a year"), ("1e305d", "longer than a year"),
     ("9" * 30 + "ms", "longer than a year"), ("0s", "must be positive")],
)
def test_walltimes_are_whole_seconds_up_to_a_year(value: str, seconds) -> None:
    found, at, bp = lint_value(WALLTIME, value)
    if isinstance(seconds, int):
        assert (found, bp.get("target", "x", "walltime")) == ([], seconds)
    else:
        [(code, where, message)] = found
        assert (code, where) == ("DT106", at) and seconds in message


@pytest.mark.parametrize(
    ("value", "size"),
    [("1.5KB", 1500), ("1.5B", 2), ("1000PB", 10**18), ("1001PB", "larger than 1 EB"),
     ("1e300PB", "larger than 1 EB"), ("0.5B", "less than a byte")],
)
def test_sizes_are_bytes_up_to_an_exabyte(value: str, size) -> None:
    found, at, bp = lint_value(MEMORY, value)
    if isinstance(size, int):
        assert (found, bp.get("target", "x", "machine", "memory")) == ([], size)
    else:
        [(code, where, message)] = found
        assert (code, where) == ("DT106", at) and size in message


@pytest.mark.parametrize("unit", sorted(SIZES))
def test_a_blueprint_takes_every_size_unit_a_machine_profile_takes(unit: str) -> None:
    found, _, bp = lint_value(MEMORY, f"3{unit}")
    assert (found, bp.get("target", "x", "machine", "memory")) == ([], parse_size(f"3{unit}"))


@pytest.mark.parametrize(("value", "unit"), [("30m", "m"), ("16G", "G"), ("512M", "M")])
def test_units_that_would_be_a_guess_are_refused_in_blueprints_and_profiles(value, unit) -> None:
    found, at, _ = lint_value(WALLTIME if unit == "m" else MEMORY, value)
    assert [(code, message) for code, _, message in found] == [("DT005", f"unknown unit `{unit}` in `{value}`")]
    with pytest.raises(ValueError):
        (parse_duration if unit == "m" else parse_size)(value)


@pytest.mark.parametrize(
    ("value", "converted"),
    [("0.5s", 0.5), ("-2s", -2), ("1.5KB", 1500), ("400d", None), ("1e300PB", None)],
)
def test_python_arguments_take_unit_values_within_the_bounds(value: str, converted) -> None:
    text = MINIMAL.replace("mlp(input = 4, output = 1)", f'python("m:M", wait = {value})')
    found, at = lint_bad(text, value)
    assert [(code, where) for code, where, _ in found] == ([] if converted is not None else [("DT106", at)])
    if converted is not None:
        assert lint_text(text).blueprint.get("model", "m", "arch", "kwargs", "wait") == converted


@pytest.mark.parametrize(
    ("old", "new", "bad", "most"),
    [("batch  = 8", "batch  = 2147483648", "2147483648", 2**31 - 1),
     ("batch  = 8", "batch  = 1" + "0" * 21, "1" + "0" * 21, 2**31 - 1),
     ("output = 1)", "output = 1, hidden = [9999999999])", "9999999999", 2**31 - 1),
     ("[4], targets = 1)\n  batch  = 8\n}\nmodel \"m\" {\n  arch  = mlp(input = 4, output = 1)",
      "[3, 4], targets = 1)\n  batch  = 8\n}\nmodel \"m\" {\n  arch  = lstm(input = 4, hidden = 8, layers = 300000000, output = 1)",
      "300000000", 10_000)],
)
def test_every_count_is_bounded(old: str, new: str, bad: str, most: int) -> None:
    text = MINIMAL.replace(old, new)
    found, at = lint_bad(text, bad)
    assert found == [("DT106", at, f"`{bad}` is out of range")]
    assert lint_text(text).diagnostics[0].help == f"the value must be at most {most}"


def test_estimates_are_closed_form_in_every_count() -> None:
    from dtec.estimate import parameter_count

    lstm = {"fn": "lstm", "input": 8, "hidden": 64, "output": 1}
    one, two, huge = (parameter_count({**lstm, "layers": n}, [30, 8]) for n in (1, 2, 10**20))
    assert two == 52289  # sum(p.numel()) of torch.nn.LSTM(8, 64, 2) and nn.Linear(64, 1)
    assert huge == one + (10**20 - 1) * (two - one)  # a list of 10**20 layers was built to count them


SOURCES = [
    "synthetic(samples = 64, shape = [30, 8], targets = 1, seed = 1)",
    "synthetic(samples = 64, shape = [3, 8, 8], classes = 3)",
    'npz(path = "a.npz", shape = [30, 8], targets = 1)',
    'csv(path = "a.csv", target = "y", features = 8, classes = 2)',
]
ARCHS = [
    "mlp(input = 8, hidden = [4], output = 1)",
    "lstm(input = 8, hidden = 4, layers = 2, output = 1)",
    "cnn(channels = 3, output = 3, widths = [4])",
    "unet(channels = 3, output = 3, depth = 2, width = 4)",
    "transformer(input = 8, dim = 8, heads = 2, layers = 1, output = 1, ffn = 16)",
]
ARGUMENT = re.compile(r"(\w+ = )(\[[^]]*\]|[^,)]+)")


@pytest.mark.parametrize("bad", ["1.5", '"x"', "[1.5]", "0", "1e999"])
def test_a_wrong_argument_is_reported_and_no_cross_block_check_trips_on_it(bad: str) -> None:
    """Every argument of every data source and architecture, with a value the checker rejects."""
    strategy = "strategy {\n  kind = foo\n  zero = 2\n}\n"
    for source, arch in itertools.product(SOURCES, ARCHS):
        for call, other in ((source, arch), (arch, source)):
            for argument in ARGUMENT.finditer(call):
                wrong = call[: argument.start(2)] + bad + call[argument.end(2) :]
                text = MINIMAL.replace("synthetic(samples = 64, shape = [4], targets = 1)", wrong if call is source else other)
                text = text.replace("mlp(input = 4, output = 1)", wrong if call is arch else other)
                found = {d.code for d in lint_text(text + strategy).diagnostics}  # raised TypeError
                assert "DT207" not in found  # `zero` against a strategy `kind` already reported
                if bad in ("1.5", "[1.5]", "1e999"):  # no argument takes these; `0` and `"x"` may fit
                    assert found & {"DT105", "DT106"}, (wrong, found)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("twin {}\n", [("DT111", 1, 1)]),
        ('train "x" {}\n', [("DT111", 1, 7)]),
        ('datum "d" {}\n', [("DT100", 1, 1)]),
        ("x = 1\n", [("DT101", 1, 1)]),
    ],
)
def test_structure_errors(text: str, expected) -> None:
    found = [c for c in codes(lint_text(text)) if c[0] != "DT108"]
    assert found == expected


def test_missing_blocks_point_at_the_file_start() -> None:
    result = lint_text('twin "t" {}\n')
    assert {c for c in codes(result)} == {("DT108", 1, 1)}
    assert len(result.diagnostics) == 3  # train, data, model


def test_cross_block_checks() -> None:
    text = MINIMAL.replace("mlp(input = 4, output = 1)", "mlp(input = 5, output = 3)")
    found = lint_text(text).diagnostics
    assert [(d.code, d.span.start_pos) for d in found] == [("DT300", (7, 23)), ("DT300", (7, 35))]
    assert found[0].related[0].span.start_pos == (3, 44)  # the data's shape
    assert found[0].help == "set `input = 4`"


def test_task_mismatch() -> None:
    text = MINIMAL.replace("targets = 1", "classes = 3").replace("output = 1", "output = 3")
    assert codes(lint_text(text)) == [("DT301", 11, 10)]


@pytest.mark.parametrize(
    ("checkpoint", "loss", "found"),
    [
        ("best = min(val_loss), final = best", "mse", []),
        ("best = max(val_accuracy)", "cross_entropy", []),
        ("best = max(val_loss)", "mse", [("DT310", 11, 25)]),  # the whole min/max
        ("best = min(val_accuracy)", "cross_entropy", [("DT310", 11, 25)]),
        ("best = max(val_accuracy)", "mse", [("DT310", 11, 29)]),  # the metric: not recorded
        ("best = min(val_f1s)", "mse", [("DT102", 11, 29)]),
        ("best = max(val_f1)", "mse", [("DT310", 11, 29)]),  # classification only
        ("best = min(val_rmse)", "cross_entropy", [("DT310", 11, 29)]),  # regression only
        ("best = min(val_rmse)", "mse", [("DT310", 11, 29)]),  # not in `metrics`
        ("best = max(val_f1)", "cross_entropy", [("DT310", 11, 29)]),
        ("best = val_loss", "mse", [("DT103", 11, 25)]),
        ("final = best", "mse", [("DT107", 11, 26)]),
    ],
)
def test_the_best_checkpoint_monitors_a_recorded_metric_the_right_way(
    checkpoint: str, loss: str, found: list
) -> None:
    text = MINIMAL.replace("train {\n", f"train {{\n  checkpoint = {{ {checkpoint} }}\n")
    if loss == "cross_entropy":
        text = text.replace("targets = 1", "classes = 3").replace("output = 1", "output = 3")
    text = text.replace("loss = mse", f"loss = {loss}")
    assert codes(lint_text(text)) == found


def test_a_monitored_metric_needs_validation_samples() -> None:
    """`split` without `val` records no validation metric: nothing could be watched."""
    text = MINIMAL.replace("  batch  = 8\n", "  batch  = 8\n  split  = { train = 1.0 }\n")
    text = text.replace("train {\n", "train {\n  checkpoint = { best = min(val_loss) }\n")
    found = lint_text(text).diagnostics
    assert codes(lint_text(text)) == [("DT310", 12, 29)]
    assert "no validation samples" in found[0].message
    assert codes(lint_text(text.replace("{ train = 1.0 }", "{ train = 0.9, val = 0.1 }"))) == []


def metrics_blueprint(metrics: str, loss: str, monitored: str | None = None) -> str:
    """MINIMAL with `metrics` (line 11) and a best checkpoint by `monitored` (line 12)."""
    text = MINIMAL.replace("train {\n", f"train {{\n  metrics = {metrics}\n")
    if monitored:
        text = text.replace("  loss = mse", f"  checkpoint = {{ best = {monitored} }}\n  loss = mse")
    if loss == "cross_entropy":
        text = text.replace("targets = 1", "classes = 3").replace("output = 1", "output = 3")
    elif loss == "bce":  # two classes, one logit
        text = text.replace("targets = 1", "classes = 2")
    return text.replace("loss = mse", f"loss = {loss}")


@pytest.mark.parametrize(
    ("metrics", "loss", "monitored", "found"),
    [
        ("[accuracy, f1, f1(average = micro), precision, recall(average = micro)]", "cross_entropy", "max(val_f1_micro)", []),
        ("[f1]", "bce", "max(val_f1)", []),
        ("[mae, rmse, r2]", "mse", "min(val_rmse)", []),
        ("[r2]", "huber", "max(val_r2)", []),
        ("[]", "cross_entropy", "max(val_accuracy)", []),  # recorded without being asked for
        ("[f1]", "mse", None, [("DT311", 11, 14)]),
        ("[rmse, accuracy]", "mse", None, [("DT311", 11, 20)]),
        ("[f1, r2]", "cross_entropy", None, [("DT311", 11, 18)]),
        ("[f1, f1(average = macro)]", "cross_entropy", None, [("DT312", 11, 18)]),
        ("[mae, rmse, mae]", "mse", None, [("DT312", 11, 25)]),
        ("[f1, f1(average = micro)]", "cross_entropy", None, []),  # two metrics
        ("[f1(average = weighted)]", "cross_entropy", None, [("DT102", 11, 27)]),
        ("[mae(average = micro)]", "mse", None, [("DT104", 11, 18)]),
        ("[f1(average = 2)]", "cross_entropy", None, [("DT105", 11, 27)]),
        ("[auc]", "cross_entropy", None, [("DT103", 11, 14)]),
        ("f1", "cross_entropy", None, [("DT105", 11, 13)]),  # a list
        ("[f1]", "cross_entropy", "max(val_f1_micro)", [("DT310", 12, 29)]),  # not asked for
        ("[rmse]", "mse", "min(val_mae)", [("DT310", 12, 29)]),
        ("[rmse]", "mse", "max(val_rmse)", [("DT310", 12, 25)]),  # the wrong way
    ],
)
def test_metrics_suit_the_task_once_each_and_feed_the_monitored_metric(
    metrics: str, loss: str, monitored: str | None, found: list
) -> None:
    assert codes(lint_text(metrics_blueprint(metrics, loss, monitored))) == found


def test_a_monitored_metric_not_recorded_says_how_to_record_it() -> None:
    found = lint_text(metrics_blueprint("[f1]", "cross_entropy", "max(val_recall_micro)")).diagnostics
    assert [d.help for d in found] == ["add `recall(average = micro)` to `train.metrics`"]
    found = lint_text(metrics_blueprint("[f1, f1]", "cross_entropy")).diagnostics
    assert found[0].related[0].span.start_pos == (11, 14)  # the first of the two


def test_unused_blocks_warn_and_can_be_suppressed() -> None:
    extra = 'data "spare" {  # dtec: ignore[DT115]\n  source = synthetic(samples = 1, shape = [1], targets = 1)\n  batch = 1\n}\n'
    assert codes(lint_text(MINIMAL + extra)) == []
    own_line = extra.replace("  # dtec: ignore[DT115]", "").replace('data "spare"', '# dtec: ignore[DT115]\ndata "spare"')
    assert codes(lint_text(MINIMAL + own_line)) == []
    unsuppressed = extra.replace("  # dtec: ignore[DT115]", "")
    assert codes(lint_text(MINIMAL + unsuppressed)) == [("DT115", 13, 1)]


def test_unused_and_invalid_suppressions() -> None:
    text = MINIMAL.replace("batch  = 8", "batch  = 8  # dtec: ignore[DT115]")
    assert codes(lint_text(text)) == [("DT120", 4, 15)]
    text = MINIMAL.replace("batch  = 8", "batch  = 8  # dtec: ignore[DT999]")
    assert codes(lint_text(text)) == [("DT121", 4, 15)]
    text = MINIMAL.replace("batch  = 8", "batch  = 8  # dtec: ignore[DT105]")
    assert codes(lint_text(text)) == [("DT121", 4, 15)]  # errors cannot be suppressed


def test_imports_merge_files(tmp_path: Path) -> None:
    (tmp_path / "common").mkdir()
    (tmp_path / "common" / "data.twin").write_text(MINIMAL.split("model")[0].replace('twin "t" {}\n', ""))
    main = 'import "common/data.twin"\ntwin "t" {}\nmodel "m" {\n  arch = mlp(input = 4, output = 1)\n  input = data.d\n}\ntrain {\n  loss = mse\n}\n'
    (tmp_path / "main.twin").write_text(main)
    result = analyse(tmp_path / "main.twin", environ={}, targets=())
    assert codes(result) == []
    assert result.blueprint.get("data", "d", "batch") == 8


def test_duplicate_across_files_points_at_both(tmp_path: Path) -> None:
    (tmp_path / "a.twin").write_text('twin "other" {}\n')
    (tmp_path / "main.twin").write_text('import "a.twin"\n' + MINIMAL)
    result = analyse(tmp_path / "main.twin", environ={}, targets=())
    [d] = result.diagnostics
    assert (d.code, d.span.path, d.span.start_pos) == ("DT110", str(tmp_path / "a.twin"), (1, 1))
    assert d.related[0].span.path == str(tmp_path / "main.twin")


def test_import_cycle_and_missing_import(tmp_path: Path) -> None:
    (tmp_path / "a.twin").write_text('import "b.twin"\n')
    (tmp_path / "b.twin").write_text('import "a.twin"\n')
    (tmp_path / "main.twin").write_text('import "a.twin"\nimport "nope.twin"\n' + MINIMAL)
    result = analyse(tmp_path / "main.twin", environ={}, targets=())
    found = {(d.code, Path(d.span.path).name, d.span.start_pos) for d in result.diagnostics}
    assert found == {("DT011", "b.twin", (1, 1)), ("DT010", "main.twin", (2, 8))}
    cycle = next(d for d in result.diagnostics if d.code == "DT011")
    assert "a.twin → b.twin → a.twin" in cycle.message


SECRET = "API_TOKEN = ghp_0123456789 leaked\n"  # parses as far as `leaked`, like many config files


def import_diagnostics(main: Path, import_path: str, environ=None) -> list[tuple[str, int, int, str]]:
    """Lint `main` importing `import_path`; return its diagnostics, asserting no secret is echoed."""
    from dtec.render import render

    main.write_text(f'import "{import_path}"\n' + MINIMAL)
    result = analyse(main, environ=environ or {}, targets=())
    assert "ghp_" not in render(list(result.diagnostics), "text")
    return [(d.code, *d.span.start_pos, Path(d.span.path).name) for d in result.diagnostics]


@pytest.mark.parametrize("import_path", ["../.env", "../secret.twin", "{outside}/secret.twin", "link.twin"])
def test_imports_outside_the_project_are_refused_unread(tmp_path: Path, import_path: str) -> None:
    project = tmp_path / "project"
    project.mkdir()
    for name in (".env", "secret.twin"):
        (tmp_path / name).write_text(SECRET)
    (project / "link.twin").symlink_to(tmp_path / "secret.twin")  # symlinks are resolved first
    path = import_path.format(outside=tmp_path)
    assert import_diagnostics(project / "main.twin", path) == [("DT010", 1, 8, "main.twin")]


def test_the_project_is_the_repository_or_the_configured_root(tmp_path: Path) -> None:
    (tmp_path / "repo" / ".git").mkdir(parents=True)
    (tmp_path / "repo" / "twins").mkdir()
    (tmp_path / "repo" / "common.twin").write_text('twin "shared" {}\n')
    main = tmp_path / "repo" / "twins" / "main.twin"
    assert import_diagnostics(main, "../common.twin") == [("DT110", 1, 1, "common.twin")]
    (tmp_path / "repo" / ".git").rmdir()  # no repository: the main blueprint's folder
    assert import_diagnostics(main, "../common.twin") == [("DT010", 1, 8, "main.twin")]
    environ = {"DTEC_PROJECT_ROOT": str(tmp_path)}
    assert import_diagnostics(main, "../common.twin", environ) == [("DT110", 1, 1, "common.twin")]


@pytest.mark.parametrize("name", [".env", "notes.txt", "common"])
def test_only_twin_files_are_imported(tmp_path: Path, name: str) -> None:
    (tmp_path / name).write_text('twin "shared" {}\n')
    assert import_diagnostics(tmp_path / "main.twin", name) == [("DT010", 1, 8, "main.twin")]


def test_an_import_that_does_not_parse_is_reported_at_the_import_without_its_lines(tmp_path: Path) -> None:
    (tmp_path / "secret.twin").write_text(SECRET)
    assert import_diagnostics(tmp_path / "main.twin", "secret.twin") == [("DT010", 1, 8, "main.twin")]
    [d] = analyse(tmp_path / "main.twin", environ={}, targets=()).diagnostics
    assert "1:28" in d.message  # where the syntax error is, for the author to find


def test_an_import_of_a_symlink_loop_is_reported(tmp_path: Path) -> None:
    (tmp_path / "a.twin").symlink_to(tmp_path / "b.twin")
    (tmp_path / "b.twin").symlink_to(tmp_path / "a.twin")
    assert import_diagnostics(tmp_path / "main.twin", "a.twin") == [("DT010", 1, 8, "main.twin")]


@pytest.mark.parametrize(
    "content",
    [b"\x00\x01binary", "caf\u00e9".encode("latin-1")],
    ids=["binary", "latin-1"],
)
def test_unreadable_files(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.twin"
    path.write_bytes(content)
    [d] = analyse(path, environ={}).diagnostics
    assert d.code == "DT001"


def test_set_overrides_values_and_creates_blocks() -> None:
    result = lint_text(MINIMAL, sets=["data.d.batch=32", "strategy.nodes=4", "train.optimizer=sgd(lr = 0.1)"])
    assert codes(result) == []
    bp = result.blueprint
    assert bp.get("data", "d", "batch") == 32
    assert bp.get("strategy", "nodes") == 4
    assert bp.get("train", "optimizer", "fn") == "sgd"


@pytest.mark.parametrize(
    ("override", "code"),
    [("strategy.nodes=0", "DT106"), ("nodes=4", "DT002"), ("strategy.nodez=4", "DT101"), ("data.batch=4", "DT111"), ("strategy.nodes=[", "DT002")],
)
def test_bad_set_overrides_are_diagnostics(override: str, code: str) -> None:
    assert [d.code for d in lint_text(MINIMAL, sets=[override]).diagnostics] == [code]


def test_set_reaches_into_calls_and_maps_keeping_the_other_arguments() -> None:
    text = MINIMAL.replace("train {", "train {\n  optimizer = sgd(0.5, momentum = 0.9)\n  scheduler = cosine\n")
    sets = ["train.optimizer.lr=1e-2", "train.scheduler.warmup=5", "train.checkpoint.keep=4", "data.d.source.seed=7", "strategy.nodes=2"]
    result = lint_text(text, sets=sets)
    assert codes(result) == []
    bp = result.blueprint
    assert bp.get("train", "optimizer") == {"fn": "sgd", "lr": 1e-2, "weight_decay": 0.0, "momentum": 0.9, "nesterov": False}
    assert bp.get("train", "scheduler") == {"fn": "cosine", "warmup": 5}
    assert bp.get("train", "checkpoint") == {"every": 1, "keep": 4, "best": None, "final": "last"}
    assert bp.get("data", "d", "source", "seed") == 7
    # An argument the blueprint does not give yet is added to the function the vocabulary lists first.
    assert lint_text(MINIMAL, sets=["train.optimizer.lr=0.1"]).blueprint.get("train", "optimizer", "fn") == "adamw"


def test_set_takes_a_bare_word_as_a_string_where_a_string_is_expected() -> None:
    sets = ["twin.description=a flood model", "twin.version=1.2", 'target.slurm.partition="batch"', "target.slurm.qos=normal-qos",
            "target.juwels-booster.partition=booster"]
    bp = lint_text(MINIMAL, sets=sets).blueprint
    assert bp.get("target", "juwels-booster", "partition") == "booster"  # a label is any text
    assert bp.get("twin", "description") == "a flood model"
    assert bp.get("twin", "version") == "1.2"
    assert bp.get("target", "slurm", "partition") == "batch"
    assert bp.get("target", "slurm", "qos") == "normal-qos"


@pytest.mark.parametrize(
    ("override", "code", "marked"),
    [
        ("train.epochs=abc", "DT105", "abc"),
        ("epochs=3", "DT002", "epochs"),
        ("train..x=1", "DT002", ""),
        ("train.epochs=3 4", "DT002", "4"),
        ("strategy.nodez=4", "DT101", "nodez"),
        ("train.epochs.x=1", "DT002", "x"),
    ],
)
def test_set_errors_point_into_the_argument(override: str, code: str, marked: str) -> None:
    """A diagnostic about `--set` shows the argument as typed and marks the part at fault."""
    from dtec.render.text import render_text

    [d] = lint_text(MINIMAL, sets=[override]).diagnostics
    assert d.code == code
    assert d.span.path == "command line"
    assert d.span.source.text == f"--set {override}"
    assert d.span.source.text[d.span.start : d.span.end] == (marked or d.span.source.text[d.span.start : d.span.end])
    text = render_text([d])
    assert f"--set {override}" in text and "x = " not in text
    if code == "DT002" and override == "epochs=3":
        assert "`train.epochs`" in (d.help or "")


def test_lint_path_stays_light(blueprints_dir: Path) -> None:
    """`dtec lint` must not import torch, networkx, jinja2, pydantic, optuna or the server's pygls (start-up time)."""
    script = (
        "import sys\n"
        "from dtec.cli import app\n"
        "from typer.testing import CliRunner\n"
        f"result = CliRunner().invoke(app, ['lint', {str(blueprints_dir)!r}])\n"
        "assert result.exit_code == 0, result.output\n"
        "heavy = sorted(m for m in ('torch', 'networkx', 'jinja2', 'pydantic', 'optuna', 'pygls', 'lsprotocol') if m in sys.modules)\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_language_reference_is_fresh(repo_root: Path) -> None:
    from dtec.lang.reference import language_reference

    page = (repo_root / "docs" / "language.md").read_text(encoding="utf-8")
    assert page == language_reference(), "run `python scripts/gen_language_docs.py`"


@pytest.mark.parametrize("points", ["ranks = []", "nodes = []", 'ranks = [1, "x"]'])
def test_an_invalid_scaling_list_is_reported_once_not_crashed_on(points: str) -> None:
    """Found by the fuzz test: the study's checks met the invalid list's placeholder."""
    found = codes(lint_text(MINIMAL + f"scaling {{\n  {points}\n}}\n"))
    assert [code for code, _, _ in found] in (["DT106"], ["DT105"])
