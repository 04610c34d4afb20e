"""Every shell script of the project passes shellcheck."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = sorted(ROOT.glob("scripts/*.sh")) + [ROOT / ".ci" / "run"]


def test_the_scripts_are_there() -> None:
    assert (ROOT / ".ci" / "run").is_file()
    assert os.access(ROOT / ".ci" / "run", os.X_OK), ".ci/run must be executable"
    assert len(SCRIPTS) >= 4, SCRIPTS


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_shellcheck(script: Path) -> None:
    if not shutil.which("shellcheck"):
        message = "shellcheck is not on PATH; scripts/install-deps.sh installs it"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    run = subprocess.run(
        ["shellcheck", "--format=gcc", str(script)], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stdout + run.stderr
