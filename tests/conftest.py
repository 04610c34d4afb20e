"""Shared fixtures: paths into the checkout, the local Slurm cluster, golden-file updates.

Test files never import each other: CI runs pytest with `--import-mode=importlib` against the
installed dtec (see scripts/test.sh). They share code through fixtures here, or through plain
modules in tests/helpers/ (on sys.path through pyproject.toml's `pythonpath`; the repository root
stays off it), and share blueprint texts as files in tests/fixtures/.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() == "true"
# Debian's postgresql package puts its programs here (scripts/install-deps.sh installs it).
POSTGRES_BIN = "/usr/lib/postgresql/*/bin"
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


_SLURM_HINT = "start it with `sudo bash scripts/slurm-local.sh start` (scripts/test.sh does)"


def _unavailable(reason: str, hint: str = _SLURM_HINT) -> None:
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


@pytest.fixture(scope="session")
def textmate(repo_root: Path):
    """Tokenize files with VS Code's TextMate engine: `textmate(grammar, files)` returns token dicts."""
    harness = repo_root / "tests" / "textmate"
    if not shutil.which("node") or not (harness / "node_modules" / "vscode-textmate").is_dir():
        _unavailable("node or the TextMate test harness is missing",
                     "run `npm ci --prefix tests/textmate` (scripts/install-deps.sh does)")

    def tokenize(grammar: Path, files: list[Path]) -> list[dict]:
        done = subprocess.run(["node", str(harness / "tokenize.mjs"), str(grammar), *map(str, files)],
                              capture_output=True, text=True, check=True, timeout=120)
        return [json.loads(line) for line in done.stdout.splitlines()]

    return tokenize


def _postgres_program(name: str) -> str:
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"{POSTGRES_BIN}/{name}"), reverse=True)), None)
    if found is None:
        _unavailable(f"PostgreSQL's `{name}` is not installed", "scripts/install-deps.sh installs Debian's postgresql")
    return found


@pytest.fixture
def postgres() -> Iterator[str]:
    """A PostgreSQL server of its own: a temporary data folder, a free port, a socket folder; its URL."""
    initdb, pg_ctl = _postgres_program("initdb"), _postgres_program("pg_ctl")
    # PostgreSQL refuses to run as root: as root, its programs run as the `postgres` user.
    owner = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    home = Path(tempfile.mkdtemp(prefix="dtec-pg-"))
    if owner:
        shutil.chown(home, "postgres")
    port = _free_port()
    data = home / "data"
    subprocess.run([*owner, initdb, "-D", str(data), "-U", "dtec", "--auth=trust", "-E", "UTF8"],
                   check=True, capture_output=True, timeout=120)
    options = f"-p {port} -k {home} -c listen_addresses=127.0.0.1"
    subprocess.run([*owner, pg_ctl, "-D", str(data), "-o", options, "-l", str(home / "log"), "-w", "start"],
                   check=True, capture_output=True, timeout=120)
    try:
        yield f"postgresql+psycopg2://dtec@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*owner, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True, timeout=120)
        shutil.rmtree(home, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """A real `mlflow server` with its SQLite backend on localhost, torn down after the session."""
    folder = tmp_path_factory.mktemp("mlflow-server")
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{folder}/mlflow.db",
         "--artifacts-destination", str(folder / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1"],
        stdout=open(folder / "server.log", "w"), stderr=subprocess.STDOUT, start_new_session=True,
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300  # its first start creates the tables: slow on a loaded machine
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                assert server.poll() is None, (folder / "server.log").read_text()[-3000:]
                time.sleep(0.5)
        else:
            pytest.fail("mlflow server did not answer: " + (folder / "server.log").read_text()[-3000:])
        yield uri
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:  # its workers linger on a SIGTERM now and then
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=30)


@pytest.fixture(scope="session")
def browser_renders():
    """Return `check(page, shot)`: headless Chromium opens the page offline, logs no console error,
    and paints figures (a screenshot of more than a few colours). Chromium is missing: skipped,
    except in CI, where that fails the test (scripts/install-deps.sh installs it)."""

    def check(page: Path, shot: Path) -> None:
        chromium = shutil.which("chromium") or shutil.which("chromium-browser")
        if chromium is None:
            _unavailable("chromium is not installed", "scripts/install-deps.sh installs it")
        result = subprocess.run(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0",
             f"--screenshot={shot}", "--window-size=1000,3000", page.as_uri()],
            capture_output=True, text=True, timeout=120,
        )
        assert shot.is_file(), result.stderr[-3000:]
        assert "Uncaught" not in result.stderr and "CONSOLE" not in result.stderr.upper().replace("CONSOLE_", "")
        from PIL import Image

        with Image.open(shot) as image:
            colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
        assert colours is not None and len(colours) > 50  # text and plotted figures, not a blank page

    return check
