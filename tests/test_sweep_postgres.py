"""A sweep whose study lives in a real PostgreSQL server, which the test starts (slow: trains)."""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dtec.analysis import analyse

REPO = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() == "true"
# Debian's postgresql package puts its programs here (scripts/install-deps.sh installs it).
DEBIAN_BIN = "/usr/lib/postgresql/*/bin"
# Trials of about 15 s: a worker is killed mid-trial.
BLUEPRINT = (Path(__file__).resolve().parent / "fixtures" / "flood-sweep.twin").read_text()
BLUEPRINT = BLUEPRINT.replace("epochs = 2", "epochs = 150").replace("seed = 1", 'seed = 1\n  storage = "URL"')


def _program(name: str) -> str:
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"{DEBIAN_BIN}/{name}"), reverse=True)), None)
    if found is None:
        message = f"PostgreSQL's `{name}` is not installed; scripts/install-deps.sh installs Debian's postgresql"
        if IN_CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def postgres() -> Iterator[str]:
    """A PostgreSQL server of its own: a temporary data folder, a free port, a socket folder."""
    initdb, pg_ctl = _program("initdb"), _program("pg_ctl")
    # PostgreSQL refuses to run as root: as root, its programs run as the `postgres` user.
    owner = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    home = Path(tempfile.mkdtemp(prefix="dtec-pg-"))
    if owner:
        shutil.chown(home, "postgres")
    data, port = home / "data", _free_port()
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


def dtec(tmp_path: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "dtec", *args], cwd=tmp_path, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def load(url: str):
    import optuna

    [summary] = optuna.get_all_study_summaries(storage=url)
    return optuna.load_study(study_name=summary.study_name, storage=url)


@pytest.mark.slow
def test_a_sweep_in_postgresql_survives_a_killed_worker_by_its_heartbeat(postgres: str, tmp_path: Path) -> None:
    import optuna

    (tmp_path / "bp.twin").write_text(BLUEPRINT.replace("URL", postgres), encoding="utf-8")
    process = dtec(tmp_path, "run", "bp.twin")
    victim = None
    for _ in range(600):
        created = optuna.get_all_study_summaries(storage=postgres)
        running = [t for t in load(postgres).trials if t.state.name == "RUNNING" and "run" in t.user_attrs] if created else []
        if running:
            victim = running[0]
            break
        time.sleep(0.5)
    assert victim is not None, "no trial started"
    os.kill(victim.user_attrs["owner"]["pid"], signal.SIGKILL)
    out, _ = process.communicate(timeout=900)
    assert process.returncode == 0, out
    s = load(postgres)
    # Optuna's heartbeat failed the killed worker's trial, and its callback enqueued it again.
    assert s.trials[victim.number].state.name == "FAIL"
    retried = [t for t in s.trials if optuna.storages.RetryFailedTrialCallback.retried_trial_number(t) == victim.number]
    assert retried and retried[0].params == victim.params, [t.system_attrs for t in s.trials]
    states = [t.state.name for t in s.trials]
    assert states.count("COMPLETE") + states.count("PRUNED") == 4, states
    [folder] = (tmp_path / "runs" / "flood" / "local").glob("sweep-*")
    assert not (folder / "journal.log").exists()
    assert f"lr = {s.best_params['train.optimizer.lr']!r}" in (folder / "best.twin").read_text()
    assert analyse(folder / "best.twin", environ={}).diagnostics == ()
    assert "its worker died (no heartbeat)" in (folder / "trials.csv").read_text()
    again = dtec(tmp_path, "run", "bp.twin")
    again.communicate(timeout=300)
    assert again.returncode == 0 and len(load(postgres).trials) == len(s.trials)
