"""Where `dtec compile` and `dtec run` write: one line for a failed write, no user file overwritten."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dtec.cli import app

TINY = Path(__file__).resolve().parent / "backends" / "tiny.twin"
BUNDLE = ["ir.json", "manifest.json", "predict.py", "run.sh", "train.py"]


def dtec(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dtec", *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def compile_(*args: str) -> subprocess.CompletedProcess:
    return CliRunner().invoke(app, ["compile", str(TINY), "-t", "local", *args])


def one_line(stderr: str, start: str) -> str:
    """The whole of stderr, which must be a single line starting with `start`."""
    assert "internal error" not in stderr and "Traceback" not in stderr, stderr
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(start), stderr
    return lines[0]


def files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize(
    ("where", "reason"),
    [
        (lambda tmp: tmp / "file", "not a folder"),
        (lambda tmp: tmp / "file" / "sub", "Not a directory"),
        (lambda tmp: Path("/proc/dtec-out"), "No such file or directory"),
        (lambda tmp: tmp / ("x" * 300), "File name too long"),
    ],
    ids=["existing-file", "under-a-file", "proc", "name-too-long"],
)
def test_an_unwritable_output_is_one_line(tmp_path: Path, where, reason: str) -> None:
    (tmp_path / "file").write_text("mine\n")
    result = dtec("compile", str(TINY), "-t", "local", "-o", str(where(tmp_path)), cwd=tmp_path)
    assert result.returncode == 1
    assert reason in one_line(result.stderr, "dtec: cannot write ")
    assert (tmp_path / "file").read_text() == "mine\n"


def test_a_read_only_folder_is_one_line_and_left_clean(tmp_path: Path, read_only) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    read_only(folder)
    for out in (folder, folder / "sub"):
        result = compile_("-o", str(out))
        assert result.exit_code == 1
        one_line(result.stderr, f"dtec: cannot write {out}")
    assert files(folder) == []


def test_emit_ir_into_an_existing_folder_is_refused_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    result = compile_("--emit", "ir", "-o", str(tmp_path / "d"))
    assert result.exit_code == 1
    assert "give -o a file name" in one_line(result.stderr, f"dtec: cannot write {tmp_path / 'd'}: ")
    assert files(tmp_path) == ["d"] and files(tmp_path / "d") == []


def test_emit_ir_writes_the_named_file(tmp_path: Path) -> None:
    result = compile_("--emit", "ir", "-o", str(tmp_path / "new" / "ir.json"))
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "new" / "ir.json").read_text())["twin"]["name"] == "tiny-mlp"
    assert files(tmp_path / "new") == ["ir.json"]


def test_a_long_twin_name_gives_a_short_deterministic_default_folder(tmp_path: Path) -> None:
    text = TINY.read_text()
    for tail in ("a", "b"):
        name = "é" * 200 + tail  # 401 bytes: too long for any file system, cut at a character boundary
        (tmp_path / f"{tail}.twin").write_text(text.replace('twin "tiny-mlp"', f'twin "{name}"'))
        for _ in range(2):  # the same folder again: a rewrite of its own bundle
            result = dtec("compile", f"{tail}.twin", "-t", "local", cwd=tmp_path)
            assert result.returncode == 0, result.stderr
    folders = files(tmp_path / "build")
    assert len(folders) == 2, folders
    for folder in folders:
        assert folder.startswith("é") and folder.endswith("-local") and len(folder.encode()) <= 129
        assert files(tmp_path / "build" / folder) == BUNDLE


def test_compile_refuses_a_folder_with_the_users_files_unless_forced(tmp_path: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "train.py").write_text("print('my own training script')\n")
    result = compile_("-o", str(out))
    assert result.exit_code == 1
    assert "not a dtec bundle" in one_line(result.stderr, f"dtec: cannot write {out}: ")
    assert "--force" in result.stderr
    assert files(out) == ["train.py"] and "my own" in (out / "train.py").read_text()
    forced = compile_("-o", str(out), "--force")
    assert forced.exit_code == 0, forced.output
    assert files(out) == BUNDLE and "my own" not in (out / "train.py").read_text()


def test_a_bundle_is_replaced_keeping_stray_files_and_dropping_its_stale_ones(tmp_path: Path) -> None:
    out = tmp_path / "b"
    assert CliRunner().invoke(app, ["compile", str(TINY), "-t", "slurm", "-o", str(out)]).exit_code == 0
    (out / "notes.txt").write_text("mine\n")
    (out / "run").mkdir()
    (out / "run" / "summary.json").write_text("{}\n")
    result = compile_("-o", str(out))
    assert result.exit_code == 0, result.output
    # job.sbatch was the old bundle's and unchanged: it goes; logs/, run/ and notes.txt stay.
    assert files(out) == ["ir.json", "logs", "manifest.json", "notes.txt", "predict.py", "run", "run.sh", "train.py"]
    assert json.loads((out / "manifest.json").read_text())["target"] == "local"


def test_a_changed_bundle_file_is_not_overwritten_unless_forced(tmp_path: Path) -> None:
    out = tmp_path / "b"
    assert compile_("-o", str(out)).exit_code == 0
    (out / "train.py").write_text((out / "train.py").read_text() + "# my tweak\n")
    result = compile_("-o", str(out), "--set", "train.epochs=2")
    assert result.exit_code == 1
    assert "changed since dtec wrote it" in one_line(result.stderr, f"dtec: cannot write {out / 'train.py'}: ")
    assert (out / "train.py").read_text().endswith("# my tweak\n")
    assert compile_("-o", str(out), "--set", "train.epochs=2", "--force").exit_code == 0
    assert not (out / "train.py").read_text().endswith("# my tweak\n")


def test_a_manifest_naming_files_outside_its_folder_is_not_a_bundle(tmp_path: Path) -> None:
    out, victim = tmp_path / "b", tmp_path / "victim.txt"
    victim.write_text("keep me\n")
    out.mkdir()
    digest = __import__("hashlib").sha256(b"keep me\n").hexdigest()
    manifest = {"dtec_version": "0", "files": {"../victim.txt": {"sha256": digest}}}
    (out / "manifest.json").write_text(json.dumps(manifest))
    result = compile_("-o", str(out))
    assert result.exit_code == 1 and "not a dtec bundle" in result.stderr
    assert victim.read_text() == "keep me\n"


def test_dry_run_refuses_a_folder_with_the_users_files(tmp_path: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "train.py").write_text("mine\n")
    result = dtec("run", str(TINY), "-o", str(out), "--dry-run", cwd=tmp_path)
    assert result.returncode == 1
    assert "not a dtec bundle" in one_line(result.stderr, f"dtec: cannot write {out}: ")
    assert result.stdout == "" and files(out) == ["train.py"]


def test_run_refuses_a_folder_whose_run_completed(tmp_path: Path) -> None:
    out = tmp_path / "r"
    assert compile_("-o", str(out)).exit_code == 0
    (out / "run").mkdir()
    summary = json.dumps({"status": "completed", "final": {"val_loss": 0.1}})
    (out / "run" / "summary.json").write_text(summary)
    before = {name: (out / name).read_bytes() for name in BUNDLE}
    result = dtec("run", str(TINY), "-o", str(out), "--set", "train.epochs=2", cwd=tmp_path)
    assert result.returncode == 1
    assert "its run completed" in one_line(result.stderr, f"dtec: cannot write {out}: ")
    assert (out / "run" / "summary.json").read_text() == summary
    assert {name: (out / name).read_bytes() for name in BUNDLE} == before
    forced = dtec("run", str(TINY), "-o", str(out), "--dry-run", "--force", cwd=tmp_path)
    assert forced.returncode == 1 and "its run completed" in forced.stderr  # --force or not


def test_run_refuses_a_folder_holding_an_interrupted_run_and_says_how_to_resume(tmp_path: Path) -> None:
    out = tmp_path / "r"
    assert compile_("-o", str(out)).exit_code == 0
    (out / "run" / "checkpoints").mkdir(parents=True)
    (out / "run" / "checkpoints" / "step-00000003.pt").write_bytes(b"weights")
    result = dtec("run", str(TINY), "-o", str(out), cwd=tmp_path)
    assert result.returncode == 1
    line = one_line(result.stderr, f"dtec: cannot write {out}: ")
    assert "it holds a run" in line and f"--resume {out}" in line
    assert sorted(p.name for p in (out / "run").rglob("*")) == ["checkpoints", "step-00000003.pt"]
