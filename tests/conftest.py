"""Shared fixtures: paths into the checkout, the local Slurm cluster, golden-file updates.

Test files never import each other: CI runs pytest with `--import-mode=importlib` against the
installed dtec (see scripts/test.sh). They share code through fixtures here, or through plain
modules in tests/helpers/ (on sys.path through pyproject.toml's `pythonpath`; the repository root
stays off it), and share blueprint texts as files in tests/fixtures/.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() == "true"
SLURM_READY = {"idle", "mix", "mixed", "alloc", "allocated", "comp", "completing"}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        default=False,
        help="rewrite golden files from the current output instead of comparing against them",
    )


def pytest_report_header(config: pytest.Config) -> str:
    return f"dtec under test: {_dtec_location()}"


def pytest_sessionstart(session: pytest.Session) -> None:
    # scripts/test.sh tests the installed wheel; make sure the checkout did not shadow it.
    location = _dtec_location()
    if os.environ.get("DTEC_TEST_INSTALLED") == "1" and location.startswith(str(REPO_ROOT / "dtec")):
        pytest.exit(f"dtec was imported from the checkout ({location}), not the installed wheel", 3)


def _dtec_location() -> str:
    try:
        import dtec
    except Exception as exc:  # noqa: BLE001 - a header must not break the run
        return f"not importable ({exc.__class__.__name__}: {exc})"
    return str(Path(dtec.__file__).resolve().parent)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The checkout's root folder (tests read fixtures from it; the code under test is installed)."""
    return REPO_ROOT


@pytest.fixture(scope="session")
def blueprints_dir(repo_root: Path) -> Path:
    """The example `.twin` blueprints shipped in the repository."""
    return repo_root / "blueprints"


@pytest.fixture(scope="session")
def update_golden(request: pytest.FixtureRequest) -> bool:
    """True when run with --update-golden (or DTEC_UPDATE_GOLDEN=1): goldens are rewritten."""
    return bool(request.config.getoption("--update-golden")) or os.environ.get("DTEC_UPDATE_GOLDEN") == "1"


@pytest.fixture(scope="session")
def golden(update_golden: bool):
    """Return `check(path, actual)`: compare text with a golden file byte for byte, or rewrite it."""

    def check(path: Path, actual: str) -> None:
        if update_golden:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(actual.encode("utf-8"))
            return
        assert path.is_file(), f"{path} is missing: run `pytest --update-golden`"
        expected = path.read_bytes().decode("utf-8")
        assert actual == expected, f"{path.name} differs: run `pytest --update-golden` and review"

    return check


@pytest.fixture(scope="session")
def golden_bundle(golden):
    """Return `check(blueprint, target, files)`: a bundle's IR and launcher against their goldens.

    One layout for the suite: tests/golden/bundles/<blueprint's path from the repository root,
    without `.twin`>/<target>/. train.py is not goldened here (test_compile goldens each distinct
    script once, in tests/golden/train/), nor manifest.json, whose hashes are checked against the
    files; job.yaml's ConfigMap, which carries the bundle's files, holds a marker for each.
    """

    def check(blueprint: Path, target: str, files: dict[str, str]) -> None:
        manifest = json.loads(files["manifest.json"])
        assert set(manifest["files"]) == set(files) - {"manifest.json"}
        for name, entry in manifest["files"].items():
            assert hashlib.sha256(files[name].encode()).hexdigest() == entry["sha256"], name
        folder = REPO_ROOT / "tests" / "golden" / "bundles"
        folder = folder / blueprint.resolve().relative_to(REPO_ROOT).with_suffix("") / target
        for name, text in files.items():
            if name not in ("train.py", "manifest.json"):
                golden(folder / name, _with_markers(text, files) if name == "job.yaml" else text)

    return check


def _with_markers(job_yaml: str, files: dict[str, str]) -> str:
    """job.yaml with each file its ConfigMap carries replaced by a marker (after checking it)."""
    from dtec.backends.kubernetes import dump_yaml

    docs = list(yaml.safe_load_all(job_yaml))
    assert dump_yaml(docs) == job_yaml  # so the golden shows the text as written, markers aside
    for doc in docs:
        if doc["kind"] == "ConfigMap":
            for name, text in doc["data"].items():
                assert text == files[name], f"the ConfigMap's {name} is not the bundle's"
                doc["data"][name] = f"<the bundle's {name}>"
    return dump_yaml(docs)


def _unavailable(reason: str) -> None:
    hint = "start it with `sudo bash scripts/slurm-local.sh start` (scripts/test.sh does)"
    if IN_CI:
        pytest.fail(f"{reason}; {hint}", pytrace=False)
    pytest.skip(f"{reason}; {hint}")


@pytest.fixture(scope="session")
def slurm() -> str:
    """The local one-node Slurm cluster, up and taking jobs; returns its partition name.

    Skips the test when the cluster is not there, except in CI (CI=true), where that fails it.
    """
    if not shutil.which("sinfo") or not shutil.which("sbatch"):
        _unavailable("Slurm is not installed (no sinfo/sbatch on PATH)")
    state = ""
    deadline = time.monotonic() + 5
    while True:
        try:
            out = subprocess.run(
                ["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=10
            )
            state = out.stdout.split()[0] if out.returncode == 0 and out.stdout.split() else ""
        except subprocess.TimeoutExpired:
            state = ""
        if state in SLURM_READY or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    if state not in SLURM_READY:
        _unavailable(f"the local Slurm cluster is not up (sinfo -h -o %t says {state or 'nothing'!r})")
    return "debug"


@pytest.fixture
def read_only():
    """Return `lock(path)`: make a file or folder refuse writes, even to root; undone after the test.

    chmod does not stop root, so as root the immutable attribute (`chattr +i`) does it; the test
    is skipped where the file system does not support that.
    """
    locked: list[Path] = []

    def lock(path: Path) -> Path:
        if os.geteuid() != 0:
            path.chmod(0o555 if path.is_dir() else 0o444)
            return path
        done = subprocess.run(["chattr", "+i", str(path)], capture_output=True, text=True) if shutil.which("chattr") else None
        if done is None or done.returncode != 0:
            pytest.skip(f"cannot make {path} read-only as root: {done.stderr.strip() if done else 'no chattr'}")
        locked.append(path)
        return path

    yield lock
    for path in locked:
        subprocess.run(["chattr", "-i", str(path)], check=True)
