"""The formatter: golden input/output pairs, each under the three safety checks, and `dtec fmt`."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dtec.cli import app
from dtec.format import FormatterError, format_source
from dtec.format.comments import comment_text
from dtec.lint import analyse
from dtec.source import Source
from dtec.syntax.parser import parse

GOLDEN = Path(__file__).parent / "fmt"
CASES = sorted(GOLDEN.glob("*.in.twin"))


def _format(text: str, name: str = "x.twin") -> str:
    formatted, diagnostics = format_source(Source(name, text))
    assert diagnostics == [] and formatted is not None
    return formatted


def assert_safe(original: str, formatted: str) -> None:
    """gdtoolkit's three checks, spelled out here so a failure names the one that broke."""
    before, _ = parse(Source("in.twin", original))
    after, diagnostics = parse(Source("out.twin", formatted))
    assert diagnostics == [] and after == before, "the formatted tree differs"
    assert _format(formatted) == formatted, "formatting is not idempotent"
    kept = [comment_text(c) for c in after.comments]
    assert kept == [comment_text(c) for c in before.comments], "comments were lost or reordered"


def test_enough_golden_pairs() -> None:
    assert len(CASES) >= 12


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.name.removesuffix(".in.twin"))
def test_golden_pair(case: Path, update_golden: bool) -> None:
    original = case.read_bytes().decode("utf-8")
    formatted = _format(original, case.name)
    expected = case.with_name(case.name.replace(".in.twin", ".out.twin"))
    if update_golden:
        expected.write_bytes(formatted.encode("utf-8"))
    assert formatted == expected.read_bytes().decode("utf-8")
    assert formatted.endswith("\n") and not formatted.endswith("\n\n")
    assert_safe(original, formatted)


def test_shipped_blueprints_are_canonical(blueprints_dir: Path) -> None:
    for path in sorted(blueprints_dir.glob("*.twin")):
        original = path.read_text(encoding="utf-8")
        formatted = _format(original, path.name)
        assert_safe(original, formatted)
        assert formatted == original, f"{path.name} is not formatted: run `dtec fmt blueprints/`"


def test_broken_source_is_not_formatted() -> None:
    formatted, diagnostics = format_source(Source("x.twin", "twin {\n  a = \n}\n"))
    assert formatted is None
    assert [d.code for d in diagnostics] == ["DT002"]


@pytest.mark.parametrize("text", ['a = "\\d"\n', "a = 30mins\n"])
def test_source_with_literal_errors_is_not_formatted(text: str) -> None:
    # Re-escaping `\d` would silently turn an error into a different, valid string.
    formatted, diagnostics = format_source(Source("x.twin", text))
    assert formatted is None and diagnostics


def test_empty_source_stays_empty() -> None:
    assert _format("") == ""
    assert _format("\n\n  \n") == ""


def test_deep_nesting_formats_up_to_the_parser_bound() -> None:
    text = "x = " + "[" * 64 + "]" * 64 + "\n"
    assert_safe(text, _format(text))
    formatted, diagnostics = format_source(Source("x.twin", "x = " + "[" * 65 + "]" * 65 + "\n"))
    assert formatted is None and [d.code for d in diagnostics] == ["DT002"]


def test_safety_check_failure_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    import dtec.format as fmt

    monkeypatch.setattr(fmt, "print_document", lambda document: "twin {}\n")
    with pytest.raises(FormatterError, match="means something else"):
        format_source(Source("x.twin", "data {}\n"))


def test_lost_comment_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    import dtec.format as fmt

    monkeypatch.setattr(fmt, "print_document", lambda document: "data {}\n")
    with pytest.raises(FormatterError, match="comment"):
        format_source(Source("x.twin", "data {} # keep me\n"))


# ---- suppression comments apply to the same items after formatting -------------------------

SUPPRESSED = """\
twin "t" {}
target "jureca-dc" { account = "x" }
data "d" {
  source = synthetic(samples = 64, shape = [8], targets = 1)
  PAIR
}
BLOCK
model "m" {
  arch  = mlp(input = 8, output = 1)
  input = data.d
}
train {
  loss = mse
}
"""
_PAIR = "workers = 640, batch = 8"  # DT213 points at `640`, the first item of the line
_BLOCK = 'data "spare" { source = synthetic(samples = 1, shape = [1], targets = 1), batch = 1 }'


@pytest.mark.parametrize(
    ("pair", "block"),
    [
        (f"{_PAIR}  # dtec: ignore[DT213]", _BLOCK),
        ("# dtec: ignore[DT213]\n  batch = 8, workers = 640", _BLOCK),
        (_PAIR + "  # dtec: ignore[DT213]", f"{_BLOCK}  # dtec: ignore[DT115]"),
        (f"# dtec: ignore[DT213]\n  {_PAIR}", f"# dtec: ignore[DT115]\n{_BLOCK}"),
    ],
    ids=["trailing-pair", "own-line-pair", "trailing-block", "own-line-block"],
)
def test_suppressions_keep_their_effect(pair: str, block: str, tmp_path: Path) -> None:
    text = SUPPRESSED.replace("PAIR", pair).replace("BLOCK", block)
    formatted = _format(text)
    assert formatted != text  # it is reformatted, not left alone
    path = tmp_path / "x.twin"
    before = [d.code for d in analyse(path, text).diagnostics]
    after = [d.code for d in analyse(path, formatted).diagnostics]
    assert "DT213" not in before and "DT120" not in before
    assert ("DT115" in before) == ("ignore[DT115]" not in text)
    assert after == before


def test_moved_suppression_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    import dtec.format as fmt

    moved = "x {\n  a = 1\n  b = 2  # dtec: ignore[DT213]\n}\n"  # same tree, same comments
    monkeypatch.setattr(fmt, "print_document", lambda document: moved)
    with pytest.raises(FormatterError, match="`# dtec: ignore` comment on line 2"):
        format_source(Source("x.twin", "x {\n  a = 1, b = 2  # dtec: ignore[DT213]\n}\n"))


def test_suppression_without_a_canonical_layout_is_refused() -> None:
    # The comment covers `e`, the call and `x`; the call must explode, and `x` leaves the line.
    text = "x {\n  e = f(x = 1,  # dtec: ignore[DT213]\n    y = 2)\n}\n"
    with pytest.raises(FormatterError, match="cannot keep what the `# dtec: ignore` comment"):
        format_source(Source("x.twin", text))


# ---- the command -------------------------------------------------------------------------------

MESSY = 'twin  "x" {a=1\nbb = 2}\n'
CLEAN = 'twin "x" {\n  a  = 1\n  bb = 2\n}\n'


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def test_cli_rewrites_in_place(tmp_path: Path, runner: CliRunner) -> None:
    messy, clean = tmp_path / "messy.twin", tmp_path / "sub" / "clean.twin"
    clean.parent.mkdir()
    messy.write_text(MESSY)
    clean.write_text(CLEAN)
    mtime = clean.stat().st_mtime_ns
    result = runner.invoke(app, ["fmt", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert messy.read_text() == CLEAN
    assert clean.stat().st_mtime_ns == mtime  # unchanged files are not rewritten
    assert f"reformatted {messy}" in result.stderr
    assert "1 file reformatted, 1 file left unchanged" in result.stderr
    # No temporary file is left behind.
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["clean.twin", "messy.twin", "sub"]


def test_cli_keeps_file_mode(tmp_path: Path, runner: CliRunner) -> None:
    path = tmp_path / "x.twin"
    path.write_text(MESSY)
    os.chmod(path, 0o640)
    assert runner.invoke(app, ["fmt", str(path)]).exit_code == 0
    assert path.stat().st_mode & 0o777 == 0o640


def test_cli_check_changes_nothing(tmp_path: Path, runner: CliRunner) -> None:
    path = tmp_path / "x.twin"
    path.write_text(MESSY)
    result = runner.invoke(app, ["fmt", "--check", str(path)])
    assert result.exit_code == 1
    assert f"would reformat {path}" in result.stderr
    assert path.read_text() == MESSY
    path.write_text(CLEAN)
    assert runner.invoke(app, ["fmt", "--check", str(path)]).exit_code == 0


def test_cli_diff(tmp_path: Path, runner: CliRunner) -> None:
    path = tmp_path / "x.twin"
    path.write_text(MESSY)
    result = runner.invoke(app, ["fmt", "--diff", str(path)])
    assert result.exit_code == 0
    assert "-bb = 2}" in result.stdout and "+  bb = 2" in result.stdout
    assert path.read_text() == MESSY
    assert runner.invoke(app, ["fmt", "--diff", "--check", str(path)]).exit_code == 1


def test_cli_stdin(runner: CliRunner) -> None:
    result = runner.invoke(app, ["fmt", "-"], input=MESSY)
    assert result.exit_code == 0
    assert result.stdout == CLEAN
    result = runner.invoke(app, ["fmt", "--check", "-"], input=MESSY)
    assert result.exit_code == 1 and result.stdout == ""


def test_cli_broken_file_untouched(tmp_path: Path, runner: CliRunner) -> None:
    path = tmp_path / "broken.twin"
    broken = "twin {\n  a = \n}\n"
    path.write_text(broken)
    result = runner.invoke(app, ["fmt", str(path)])
    assert result.exit_code == 1
    assert "error[DT002]" in result.stderr
    assert path.read_text() == broken


def test_cli_broken_stdin_is_echoed(runner: CliRunner) -> None:
    result = runner.invoke(app, ["fmt", "-"], input="twin {")
    assert result.exit_code == 1
    assert result.stdout == "twin {"  # a pipe into the same buffer must not lose the text


def test_cli_stdin_not_utf8_is_echoed_byte_for_byte(runner: CliRunner) -> None:
    data = b'twin "\xff" {}\n'
    result = runner.invoke(app, ["fmt", "-"], input=data)
    assert result.exit_code == 1
    assert result.stdout_bytes == data
    assert "not valid UTF-8" in result.stderr


def test_cli_formatter_bug_exits_2(
    tmp_path: Path, runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dtec.format as fmt

    monkeypatch.setattr(fmt, "print_document", lambda document: "other {}\n")
    path = tmp_path / "x.twin"
    path.write_text(MESSY)
    result = runner.invoke(app, ["fmt", str(path)])
    assert result.exit_code == 2
    assert "formatter bug" in result.stderr
    assert path.read_text() == MESSY


def test_cli_missing_file(tmp_path: Path, runner: CliRunner) -> None:
    result = runner.invoke(app, ["fmt", str(tmp_path / "nope.twin")])
    assert result.exit_code == 1
    assert "DT001" in result.stderr


def test_cli_read_only_file_is_one_line_and_the_others_are_formatted(
    tmp_path: Path, runner: CliRunner, read_only
) -> None:
    locked, other = tmp_path / "a.twin", tmp_path / "b.twin"
    for path in (locked, other):
        path.write_text(MESSY)
    read_only(locked)
    result = runner.invoke(app, ["fmt", str(tmp_path)])
    assert result.exit_code == 1
    assert "internal error" not in result.stderr
    assert f"dtec: cannot write {locked}: " in result.stderr
    assert locked.read_text() == MESSY and other.read_text() == CLEAN
    assert "1 file reformatted, 1 file failed to reformat" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.twin", "b.twin"]  # no temporary file


def _calls_to_format(n: int) -> int:
    """Count the Python and C function calls that formatting `n` commented one-line attributes makes.

    One aligned run of `n` attributes, each with a comment, then `n / 10` suppressed pairs.
    """
    run = "".join(f"  key{i} = {i}  # note {i}\n" for i in range(n))
    pairs = "".join(f"  a{i} = [{i}], b = 2  # dtec: ignore[DT213]\n" for i in range(n // 10))
    text = f"x {{\n{run}}}\ny {{\n{pairs}}}\n"
    source = Source("x.twin", text)
    calls = 0

    def count(frame: object, event: str, arg: object) -> None:
        nonlocal calls
        calls += event in {"call", "c_call"}

    sys.setprofile(count)
    try:
        format_source(source)
    finally:
        sys.setprofile(None)
    return calls


def test_work_grows_linearly_with_attributes() -> None:
    # Counting calls, not time: the padding of an aligned run and the placing of each comment
    # once took work proportional to the run's length per attribute (20,000 attributes: 44 s).
    small, large = _calls_to_format(500), _calls_to_format(1000)
    assert large < 2.2 * small, (small, large)
