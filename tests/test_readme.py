"""The README's first command, exactly as written, in a fresh virtual environment on a fresh copy."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def readme_commands(repo_root: Path) -> list[str]:
    """Return the lines of the README's first code block: the set-up commands."""
    text = (repo_root / "README.md").read_text(encoding="utf-8")
    block = re.search(r"```bash\n(.*?)```", text, re.S)
    assert block is not None, "README.md starts without a bash block of set-up commands"
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_the_readme_starts_with_the_two_set_up_commands(repo_root: Path) -> None:
    first, second = readme_commands(repo_root)
    assert "dtec run" in first and "pip install" in first
    assert second == "bash scripts/test.sh"


@pytest.mark.slow
def test_the_first_readme_command_trains_the_quickstart_in_a_clean_venv(repo_root: Path, tmp_path: Path) -> None:
    """Nothing but the venv's own packages: a dependency only the test set-up brings is a bug."""
    clone = tmp_path / "clone"
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=repo_root, capture_output=True, check=True).stdout
    for name in filter(None, tracked.decode().split("\0")):
        source = repo_root / name
        if source.is_file():
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, clone / name)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    first = readme_commands(repo_root)[0]
    script = f". {venv}/bin/activate && {first}"
    # The machine's own settings (its package index) stay; nothing of this Python or checkout leaks in.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHON") and not k.startswith("DTEC_")}
    result = subprocess.run(["bash", "-c", script], cwd=clone, env=env, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    [summary_path] = clone.glob("**/run/summary.json")
    summary = json.loads(summary_path.read_text())
    assert summary["status"] == "completed"
    metrics = [json.loads(line) for line in (summary_path.parent / "metrics.jsonl").read_text().splitlines()]
    losses = [m["train_loss"] for m in metrics if m.get("kind") == "epoch"]
    assert len(losses) == 3 and losses[-1] < losses[0], losses
