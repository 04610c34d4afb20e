"""The four output formats on fixed diagnostics (golden files), and `dtec lint` end to end."""

from __future__ import annotations

import concurrent.futures
import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

import dtec
from dtec.cli import app
from dtec.diagnostics import Diagnostic, Related, diag
from dtec.render import FORMATS, render, summary
from dtec.render.github import escape_data, escape_property
from dtec.render.json import to_dict
from dtec.rules import RULES, Rule
from dtec.source import Source, Span

GOLDEN = Path(__file__).resolve().parent / "golden" / "render"

TEXT = (
    'twin "日本" {\n'  # 1: wide characters in a label
    '\tdescripton = "x"\n'  # 2: a tab before the span
    '  tag = "日本語" junk\n'  # 3: a span after wide characters
    '  note = "cafe\u0301" oops\n'  # 4: a combining accent before the span
    "}\n"
    "train {\n"
    "  loss = [1,\n"  # 7: a value over two lines
    "    2]\n"
    "}\n"
    "train {\n"  # 10: the duplicate
    "}\n"
)
SOURCE = Source("bp.twin", TEXT)


def at(line: int, needle: str, length: int | None = None) -> Span:
    """Return the span of `needle` on `line` (or `length` characters from it)."""
    start = sum(len(x) + 1 for x in TEXT.split("\n")[: line - 1]) + TEXT.split("\n")[
        line - 1
    ].index(needle)
    return Span(SOURCE, start, start + (len(needle) if length is None else length))


INFO = Rule("DT999", "test-info", "info", "An info-level rule used only by the tests")


def diagnostics() -> list[Diagnostic]:
    """A fixed set covering every renderer feature."""
    multi = at(7, "[1,")
    multi = Span(SOURCE, multi.start, TEXT.index("2]") + 2)
    return [
        diag("DT001", "cannot read `missing.twin`: file not found", None, "check the path"),
        diag(
            "DT101",
            'unknown attribute `descripton` in `twin "日本"`',
            at(2, "descripton"),
            "did you mean `description`?",
        ),
        diag(
            "DT002",
            "unexpected `junk`",
            at(3, "junk"),
            "put each attribute on its own line, or separate them with `,`",
        ),
        diag("DT002", "unexpected `oops`", at(4, "oops")),
        diag("DT105", "expected an integer, found a list", multi, "use an integer"),
        diag(
            "DT110",
            "`train` is defined twice",
            at(10, "train"),
            "keep one of them",
            [Related(at(6, "train"), "first defined here")],
        ),
        diag("DT115", '`twin "日本"` is never used', at(1, 'twin "日本"')),
        Diagnostic(
            INFO, "100% done, then: more\r\nand a new line", at(1, "{"), "a help, with: commas"
        ),
    ]


def redact_sarif(text: str) -> str:
    """Redact the version and the rule texts (checked in test_sarif_rules), keeping the layout."""
    log = json.loads(text)
    # Re-serialising gives the same bytes, so comparing the redacted text still pins the layout.
    assert json.dumps(log, indent=2, ensure_ascii=False) + "\n" == text
    driver = log["runs"][0]["tool"]["driver"]
    driver["version"] = "[VERSION]"
    driver["rules"] = [f"[{r['id']}: see test_sarif_rules]" for r in driver["rules"]]
    return json.dumps(log, indent=2, ensure_ascii=False) + "\n"


# ---- golden files ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "fmt", "color"),
    [
        ("text.txt", "text", False),
        ("text-color.txt", "text", True),
        ("json.json", "json", False),
        ("github.txt", "github", False),
        ("sarif.json", "sarif", False),
    ],
)
def test_golden(
    name: str, fmt: str, color: bool, golden, monkeypatch, tmp_path
) -> None:
    monkeypatch.chdir(tmp_path)  # relative paths stay relative: `bp.twin` is below the cwd
    out = render(diagnostics(), fmt, color=color, files=["bp.twin", "missing.twin"])
    assert out == render(diagnostics(), fmt, color=color, files=["bp.twin", "missing.twin"])
    golden(GOLDEN / name, redact_sarif(out) if fmt == "sarif" else out)


# ---- text --------------------------------------------------------------------------------------


def text_of(d: Diagnostic, **kwargs) -> list[str]:
    return render([d], "text", **kwargs).splitlines()


def caret_column(lines: list[str], source_line: int) -> int:
    """Return the display column (0-based, after the gutter) of the caret under `source_line`."""
    row = next(i for i, line in enumerate(lines) if re.match(rf"\s*{source_line} \| ", line))
    gutter = lines[row].index("| ") + 2
    return len(lines[row + 1]) - len(lines[row + 1][gutter:].lstrip(" ")) - gutter


def test_text_shape() -> None:
    lines = text_of(diagnostics()[1])
    assert lines == [
        'error[DT101]: unknown attribute `descripton` in `twin "日本"`',
        " --> bp.twin:2:2",
        "  |",
        '2 |     descripton = "x"',  # the tab is expanded to the next stop of 4
        "  |     ^^^^^^^^^^",
        "  |",
        "  = help: did you mean `description`?",
    ]


def test_text_caret_under_wide_characters() -> None:
    lines = text_of(diagnostics()[2])
    # `  tag = "日本語" ` is 14 code points but 17 columns wide: each CJK character takes two.
    assert lines[1] == " --> bp.twin:3:15"
    assert caret_column(lines, 3) == 17
    assert "^^^^" in lines[4] and "^^^^^" not in lines[4]


def test_text_caret_after_combining_character() -> None:
    lines = text_of(diagnostics()[3])
    # `  note = "café" ` written with a combining accent: 17 code points, 16 columns.
    assert lines[1] == " --> bp.twin:4:18"
    assert caret_column(lines, 4) == 16


def test_text_multiline_span_underlines_first_line_and_names_the_end() -> None:
    lines = text_of(diagnostics()[4])
    assert lines[3] == "7 |   loss = [1,"
    assert lines[4] == "  |          ^^^ …to 8:7"


def test_text_related_is_a_note_with_its_own_excerpt() -> None:
    lines = text_of(diagnostics()[5])
    assert "note: first defined here" in lines
    note = lines.index("note: first defined here")
    assert lines[note + 1].strip() == "--> bp.twin:6:1"
    assert lines[note + 4].strip() == "| -----"
    assert lines[-1].strip() == "= help: keep one of them"


def test_text_without_span_has_no_excerpt() -> None:
    assert text_of(diagnostics()[0]) == [
        "error[DT001]: cannot read `missing.twin`: file not found",
        "  = help: check the path",
    ]


def test_text_colour_only_when_asked() -> None:
    plain = render(diagnostics(), "text")
    assert "\x1b" not in plain
    coloured = render(diagnostics(), "text", color=True)
    assert "\x1b[1;31merror\x1b[0m\x1b[1m[DT101]\x1b[0m" in coloured
    assert "\x1b[1;33mwarning\x1b[0m" in coloured
    assert "\x1b[1;36minfo\x1b[0m" in coloured
    assert re.sub(r"\x1b\[[0-9;]*m", "", coloured) == plain


def test_text_control_characters_cannot_reach_the_terminal() -> None:
    source = Source("esc.twin", 'twin "x" {\n  description = "\x1b[31mred"\n}\n')
    span = Span(source, source.text.index("\x1b"), source.text.index("red") + 3)
    out = render([diag("DT004", "odd \x1b[2J string", span)], "text")
    assert "\x1b" not in out
    assert "\u241b" in out  # ␛, the control picture for ESC


def test_text_empty_span_at_end_of_file() -> None:
    source = Source("eof.twin", "train {\n")
    out = text_of(diag("DT002", "`{` is never closed", Span(source, 8, 8)))
    assert out[3:5] == ["2 |", "  | ^"]


def test_text_no_diagnostics_is_empty() -> None:
    assert render([], "text") == ""


# ---- json --------------------------------------------------------------------------------------


def test_json_keys_positions_and_nulls() -> None:
    data = json.loads(render(diagnostics(), "json"))
    keys = [
        "code",
        "name",
        "severity",
        "message",
        "file",
        "line",
        "column",
        "end_line",
        "end_column",
        "help",
        "related",
    ]
    assert all(list(item) == keys for item in data)
    assert data[0]["file"] is None and data[0]["line"] is None and data[0]["end_column"] is None
    junk = data[2]
    # Columns count code points (as lark does), not bytes or display cells; the end is exclusive.
    assert (junk["line"], junk["column"], junk["end_line"], junk["end_column"]) == (3, 15, 3, 19)
    assert data[4]["line"] == 7 and data[4]["end_line"] == 8
    assert data[5]["related"] == [
        {
            "file": "bp.twin",
            "line": 6,
            "column": 1,
            "end_line": 6,
            "end_column": 6,
            "message": "first defined here",
        }
    ]


def test_json_is_indented_with_trailing_newline() -> None:
    out = render(diagnostics()[:1], "json")
    assert out.startswith('[\n  {\n    "code"') and out.endswith("]\n")
    assert render([], "json") == "[]\n"


def test_json_to_dict_matches_render() -> None:
    assert json.loads(render(diagnostics(), "json")) == [to_dict(d) for d in diagnostics()]


# ---- github ------------------------------------------------------------------------------------


def test_github_escaping() -> None:
    assert escape_data("100%\r\nx") == "100%25%0D%0Ax"
    assert escape_property("a,b:c%\n") == "a%2Cb%3Ac%25%0A"


def test_github_commands() -> None:
    lines = render(diagnostics(), "github").splitlines()
    assert lines[0] == (
        "::error title=DT001 unreadable-file::"
        "cannot read `missing.twin`: file not found%0Ahelp: check the path"
    )
    assert lines[2].startswith(
        "::error file=bp.twin,line=3,col=15,endLine=3,endColumn=19,title=DT002 syntax-error::"
    )
    # Columns are left out when the annotation spans lines.
    assert lines[4].startswith("::error file=bp.twin,line=7,endLine=8,title=DT105 type-mismatch::")
    assert lines[6].startswith("::warning file=bp.twin,")
    assert lines[7] == (
        "::notice file=bp.twin,line=1,col=11,endLine=1,endColumn=12,title=DT999 test-info::"
        "100%25 done, then: more%0D%0Aand a new line%0Ahelp: a help, with: commas"
    )


def test_github_property_escaping_in_paths() -> None:
    source = Source("dir,x/a:b.twin", "train {\n}\n")
    out = render([diag("DT108", "the blueprint has no `twin` block", Span(source, 0, 0))], "github")
    assert out.startswith("::error file=dir%2Cx/a%3Ab.twin,line=1,col=1,")


# ---- sarif -------------------------------------------------------------------------------------

# A compact structural check of what SARIF 2.1.0 requires of the parts dtec writes, expressed as a
# JSON Schema subset. The official schema cannot be downloaded here (no network), so this is
# written from the specification: required properties, enums and minimums of sarifLog, run,
# toolComponent, reportingDescriptor, result, location, physicalLocation, artifactLocation, region.
_MESSAGE = {"type": "object", "required": ["text"], "properties": {"text": {"type": "string"}}}
_REGION = {
    "type": "object",
    "properties": {
        k: {"type": "integer", "minimum": 1}
        for k in ("startLine", "startColumn", "endLine", "endColumn")
    },
    "required": ["startLine", "startColumn", "endLine", "endColumn"],
}
_ARTIFACT_LOCATION = {
    "type": "object",
    "required": ["uri"],
    "properties": {
        "uri": {"type": "string", "format": "uri-reference"},
        "uriBaseId": {"type": "string"},
        "index": {"type": "integer", "minimum": -1},
    },
}
_LOCATION = {
    "type": "object",
    "required": ["physicalLocation"],
    "properties": {
        "id": {"type": "integer", "minimum": -1},
        "physicalLocation": {
            "type": "object",
            "required": ["artifactLocation", "region"],
            "properties": {"artifactLocation": _ARTIFACT_LOCATION, "region": _REGION},
        },
        "message": _MESSAGE,
    },
}
_LEVEL = {"enum": ["none", "note", "warning", "error"]}
SARIF_SUBSET = {
    "type": "object",
    "required": ["$schema", "version", "runs"],
    "properties": {
        "version": {"const": "2.1.0"},
        "runs": {
            "type": "array",
            "minItems": 1,
            "maxItems": 1,
            "items": {
                "type": "object",
                "required": ["tool", "results", "columnKind"],
                "properties": {
                    "columnKind": {"const": "unicodeCodePoints"},
                    "tool": {
                        "type": "object",
                        "required": ["driver"],
                        "properties": {
                            "driver": {
                                "type": "object",
                                "required": ["name", "version", "informationUri", "rules"],
                                "properties": {
                                    "name": {"const": "dtec"},
                                    "rules": {
                                        "type": "array",
                                        "items": {
                                            "type": "object",
                                            "required": [
                                                "id",
                                                "name",
                                                "shortDescription",
                                                "fullDescription",
                                                "help",
                                                "defaultConfiguration",
                                            ],
                                            "properties": {
                                                "id": {"type": "string"},
                                                "shortDescription": _MESSAGE,
                                                "fullDescription": _MESSAGE,
                                                "help": _MESSAGE,
                                                "defaultConfiguration": {
                                                    "type": "object",
                                                    "properties": {"level": _LEVEL},
                                                },
                                            },
                                        },
                                    },
                                },
                            }
                        },
                    },
                    "artifacts": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["location"],
                            "properties": {"location": _ARTIFACT_LOCATION},
                        },
                    },
                    "results": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["ruleId", "level", "message"],
                            "properties": {
                                "ruleId": {"type": "string"},
                                "ruleIndex": {"type": "integer", "minimum": -1},
                                "level": _LEVEL,
                                "message": _MESSAGE,
                                "locations": {"type": "array", "items": _LOCATION},
                                "relatedLocations": {"type": "array", "items": _LOCATION},
                            },
                        },
                    },
                },
            },
        },
    },
}


def check_sarif(text: str) -> dict:
    """Validate a SARIF log against the subset above plus cross-references; return it."""
    import jsonschema

    log = json.loads(text)
    jsonschema.validate(log, SARIF_SUBSET)
    run = log["runs"][0]
    rules = run["tool"]["driver"]["rules"]
    uris = [a["location"]["uri"] for a in run.get("artifacts", [])]
    for result in run["results"]:
        if "ruleIndex" in result:
            assert rules[result["ruleIndex"]]["id"] == result["ruleId"]
        for loc in [*result.get("locations", []), *result.get("relatedLocations", [])]:
            artifact = loc["physicalLocation"]["artifactLocation"]
            assert uris[artifact["index"]] == artifact["uri"]
            region = loc["physicalLocation"]["region"]
            assert (region["endLine"], region["endColumn"]) >= (
                region["startLine"],
                region["startColumn"],
            )
        ids = [r["id"] for r in result.get("relatedLocations", [])]
        assert len(ids) == len(set(ids))
    return log


def test_sarif_structure(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    log = check_sarif(render(diagnostics(), "sarif", files=["bp.twin"]))
    run = log["runs"][0]
    assert log["$schema"].endswith("sarif-schema-2.1.0.json")
    assert run["tool"]["driver"]["version"] == dtec.__version__
    assert run["artifacts"] == [{"location": {"uri": "bp.twin", "uriBaseId": "%SRCROOT%"}}]
    first = run["results"][0]
    assert "locations" not in first  # DT001 has no span
    dup = next(r for r in run["results"] if r["ruleId"] == "DT110")
    assert dup["relatedLocations"][0]["message"] == {"text": "first defined here"}
    assert dup["message"]["text"] == "`train` is defined twice\nhelp: keep one of them"
    assert next(r for r in run["results"] if r["ruleId"] == "DT999")["level"] == "note"


def test_sarif_rules(tmp_path) -> None:
    log = check_sarif(render([], "sarif"))
    rules = log["runs"][0]["tool"]["driver"]["rules"]
    assert [r["id"] for r in rules] == list(RULES)
    for r in rules:
        rule = RULES[r["id"]]
        assert r["name"] == rule.name
        assert r["shortDescription"]["text"] == rule.summary
        assert r["fullDescription"]["text"] == rule.doc == r["help"]["markdown"]
        level = {"error": "error", "warning": "warning", "info": "note"}[rule.severity]
        assert r["defaultConfiguration"]["level"] == level


def test_sarif_uris(tmp_path, monkeypatch) -> None:
    inside = tmp_path / "sub dir" / "a.twin"
    outside = Path("/elsewhere/b.twin")
    spans = [Span(Source(str(p), "train {}\n"), 0, 5) for p in (inside, outside)]
    out = render([diag("DT108", "x", s) for s in spans], "sarif", files=[inside], root=tmp_path)
    run = check_sarif(out)["runs"][0]
    assert [a["location"] for a in run["artifacts"]] == [
        {"uri": "sub%20dir/a.twin", "uriBaseId": "%SRCROOT%"},
        {"uri": "file:///elsewhere/b.twin"},
    ]
    assert "timestamp" not in out and "startTimeUtc" not in out


# ---- summary -----------------------------------------------------------------------------------


def test_summary() -> None:
    ds = diagnostics()
    assert summary(ds, 3) == "6 errors, 1 warning, 1 info in 3 files"
    assert summary(ds[6:7], 1) == "1 warning in 1 file"
    assert summary([], 3) == "All checks passed (3 files)"
    assert summary([], 1) == "All checks passed (1 file)"
    assert summary([], 1, color=True) == "\x1b[32;1mAll checks passed (1 file)\x1b[0m"


def test_render_unknown_format() -> None:
    with pytest.raises(ValueError):
        render([], "xml")


# ---- dtec lint end to end ----------------------------------------------------------------------

CLEAN = """twin "flood" {
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
}
"""
BROKEN = CLEAN.replace("  loss = mse", "  loss = msa\n  epoch = 3").replace(
    'twin "flood"', 'twin "日本"'
)
SPARE = """
data "spare" {
  source = synthetic(samples = 64, shape = [8], targets = 1)
  batch = 16
}
"""
WARNING = CLEAN + SPARE


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DTEC_MACHINES", raising=False)
    (tmp_path / "clean.twin").write_text(CLEAN, encoding="utf-8")
    (tmp_path / "broken.twin").write_text(BROKEN, encoding="utf-8")
    (tmp_path / "warning.twin").write_text(WARNING, encoding="utf-8")
    return tmp_path


def lint(*args: str):
    return CliRunner().invoke(app, ["lint", *args])


def test_lint_clean_exits_0(project) -> None:
    result = lint("clean.twin")
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert result.stderr == "All checks passed (1 file)\n"


def test_lint_errors_exit_1(project) -> None:
    result = lint("clean.twin", "broken.twin")
    assert result.exit_code == 1
    assert "error[DT103]: unknown function `msa`" in result.stdout
    assert result.stderr == "2 errors in 2 files\n"


def test_lint_warnings_pass_unless_strict(project) -> None:
    assert lint("warning.twin").exit_code == 0
    result = lint("--strict", "warning.twin")
    assert result.exit_code == 1
    assert result.stderr == "1 warning in 1 file\n"


def test_lint_missing_file_is_dt001_exit_1(project) -> None:
    result = lint("nope.twin")
    assert result.exit_code == 1
    assert result.stdout.startswith("error[DT001]: cannot read `nope.twin`: file not found")


def test_lint_usage_errors_exit_2(project) -> None:
    result = lint("--format", "xml", "clean.twin")
    assert result.exit_code == 2
    assert "unknown format `xml`" in result.stderr
    assert lint().exit_code == 2  # no path at all


def test_lint_folder_is_searched(project) -> None:
    result = lint(".")
    assert result.exit_code == 1
    assert result.stderr.endswith("in 3 files\n")


@pytest.mark.parametrize("fmt", FORMATS)
def test_lint_formats_on_a_broken_file(fmt: str, project, golden) -> None:
    result = lint("--format", fmt, "broken.twin")
    assert result.exit_code == 1
    assert result.stderr == "2 errors in 1 file\n"
    out = result.stdout
    assert "Traceback" not in out + result.stderr
    if fmt == "json":
        assert [d["code"] for d in json.loads(out)] == ["DT103", "DT101"]
    elif fmt == "sarif":
        run = check_sarif(out)["runs"][0]
        assert [r["ruleId"] for r in run["results"]] == ["DT103", "DT101"]
        assert run["artifacts"] == [{"location": {"uri": "broken.twin", "uriBaseId": "%SRCROOT%"}}]
        out = redact_sarif(out)
    elif fmt == "github":
        assert all(line.startswith("::error file=broken.twin,") for line in out.splitlines())
    ext = "json" if fmt in ("json", "sarif") else "txt"
    golden(GOLDEN / f"lint-broken-{fmt}.{ext}", out)


def test_lint_many_files_in_processes_reports_as_one(project, monkeypatch) -> None:
    texts = [CLEAN, BROKEN, WARNING, "twin {\n", BROKEN.replace("msa", "mae")]
    for i in range(60):  # past the size where a pool is used
        (project / f"many-{i:02}.twin").write_text(texts[i % len(texts)], encoding="utf-8")
    pools = []

    class Pool(concurrent.futures.ProcessPoolExecutor):
        def __init__(self, *args, **kwargs) -> None:
            pools.append(args)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(concurrent.futures, "ProcessPoolExecutor", Pool)
    alone = lint("--jobs", "1", "--format", "json", ".")
    assert pools == []
    pooled = lint("--jobs", "2", "--format", "json", ".")
    assert pools == [(2,)]
    assert alone.exit_code == pooled.exit_code == 1
    assert pooled.stdout == alone.stdout
    assert pooled.stderr == alone.stderr == "50 errors, 13 warnings in 63 files\n"
