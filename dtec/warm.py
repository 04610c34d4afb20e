"""Warm starts for a local sweep's trials: ranks forked from a process that already imported torch.

A trial started through run.sh pays a fresh interpreter and `import torch` per rank (seconds on a
small machine, as much as a short trial trains). A local sweep worker instead starts a *zygote* at
once, before any thread exists: it imports torch, then, for each trial, forks a *leader* (in place
of torchrun: its own process group, signals passed on to the ranks) that forks the ranks, each
running the bundle's train.py as `__main__`. The zygote stays single-threaded, so forking it is
safe, and copy-on-write keeps each trial's ranks as fresh as new processes.

What a rank gets is what run.sh gives it: run.sh itself runs, with $PYTHON a shim that writes its
environment, folder and arguments instead of starting Python. A launch the zygote cannot stand in
for (a walltime's `timeout`, other launcher arguments) returns None, and the caller uses run.sh.
"""

from __future__ import annotations

import ctypes
import json
import os
import runpy
import signal
import socket
import subprocess
import sys
from pathlib import Path

# The shim run.sh starts as $PYTHON: it prints what Python would have been started with.
_SHIM = """#!/bin/sh
exec "$DTEC_WARM_PYTHON" -I -S -c 'import json, os, sys; json.dump({"argv": sys.argv[1:], "env": dict(os.environ), "cwd": os.getcwd()}, sys.stdout)' "$@"
"""
_TORCHRUN = ["-m", "torch.distributed.run", "--standalone", "--nnodes=1"]
_MALLOPT = {"MALLOC_MMAP_THRESHOLD_": -3, "MALLOC_TRIM_THRESHOLD_": -1}  # glibc reads these at start only
_FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)


class Zygote:
    """A child of the worker with torch imported, which starts trials' ranks on request over pipes."""

    def __init__(self, folder: Path) -> None:
        """Fork the zygote; call before the worker starts any thread (fork copies only the caller's)."""
        from dtec.output import write_atomic

        self.shim = (folder / "warm-python").resolve()  # run.sh runs it from the trial's folder
        write_atomic(self.shim, _SHIM, 0o755)  # in one step: the study's other workers may be running it
        asks, self._ask = os.pipe()
        self._answers, answers = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:
            os.close(self._ask)
            os.close(self._answers)
            code = 1
            try:
                _serve(asks, answers)
                code = 0
            finally:
                os._exit(code)
        os.close(asks)
        os.close(answers)
        self._replies = os.fdopen(self._answers, "r")

    def start(self, bundle, run, env: dict[str, str] | None = None) -> dict | None:
        """What the trial's ranks need (run.sh's environment with `env` added, and its arguments), or None: run.sh must run it."""
        from dtec.backends.local import timeout_words
        from dtec.runner import data_root

        if bundle.ir.target.scheduler != "local" or timeout_words(bundle.plan):
            return None
        env = {**os.environ, **data_root(bundle), **(env or {}), "PYTHON": str(self.shim), "DTEC_WARM_PYTHON": sys.executable,
               "DTEC_PREEMPTED_EXIT": "0"}  # as runner.launch: dtec reads a planned stop from summary.json
        done = subprocess.run(["bash", "run.sh", "--resume", "never"], cwd=run.folder, env=env,
                              stdout=subprocess.PIPE, text=True, check=False)
        if done.returncode != 0:
            return None
        seen = json.loads(done.stdout)
        argv, ranks = seen["argv"], 1
        torchrun = argv[:4] == _TORCHRUN and len(argv) > 5 and argv[4].startswith("--nproc_per_node=")
        if torchrun:
            ranks, argv = int(argv[4].split("=", 1)[1]), argv[5:]
        if argv[:1] != ["train.py"]:
            return None  # another launcher (DeepSpeed's, torchrun with more arguments): run.sh starts it
        for name in ("PYTHON", "DTEC_WARM_PYTHON"):
            seen["env"].pop(name, None)
        log = run.outputs / "logs" / "launcher.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        return {"env": seen["env"], "cwd": seen["cwd"], "argv": argv[1:], "ranks": ranks,
                "torchrun": torchrun, "log": str(log)}

    def close(self) -> None:
        """End the zygote and reap it: a worker leaves no zombie behind."""
        os.close(self._ask)  # its loop reads the end of its requests, and it leaves
        os.waitpid(self.pid, 0)

    def run(self, start: dict, started) -> int:
        """Run a trial's ranks; `started(pid)` is told the leader's pid; return the exit code."""
        os.write(self._ask, (json.dumps(start) + "\n").encode())
        pid = int(self._replies.readline())
        started(pid)
        return int(self._replies.readline())


def _serve(asks: int, answers: int) -> None:
    """The zygote: import what train.py imports, then start one trial per request until the worker ends."""
    from dtec.runner import die_with_parent

    die_with_parent()
    # OpenBLAS (numpy's) starts its thread pool at import unless told one thread is enough; the
    # ranks' torch threads are set after the fork.
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch  # noqa: F401
    import torch._dynamo  # noqa: F401 - an optimizer's first construction imports it: seconds
    import torch.distributed  # noqa: F401
    import torch.nn.parallel  # noqa: F401
    import torch.utils.data  # noqa: F401
    from torch.distributed.elastic.multiprocessing import errors  # noqa: F401

    requests = os.fdopen(asks, "r")
    for line in requests:
        start = json.loads(line)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                code = _lead(start)
            finally:
                os._exit(code)
        os.write(answers, f"{pid}\n".encode())
        _, status = os.waitpid(pid, 0)
        os.write(answers, f"{os.waitstatus_to_exitcode(status)}\n".encode())


def _lead(start: dict) -> int:
    """A trial's leader, as torchrun: its own process group, signals passed on, the first failure ends all."""
    from dtec.runner import die_with_parent

    os.setpgid(0, 0)  # as run.sh's launcher: `dtec cancel` and a hard stop reach the group
    die_with_parent()
    log = os.open(start["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    os.environ.clear()
    os.environ.update(start["env"])
    os.chdir(start["cwd"])
    if start["torchrun"]:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()), WORLD_SIZE=str(start["ranks"]),
                          LOCAL_WORLD_SIZE=str(start["ranks"]), GROUP_RANK="0", ROLE_RANK="0", ROLE_NAME="default",
                          ROLE_WORLD_SIZE=str(start["ranks"]), TORCHELASTIC_RESTART_COUNT="0",
                          TORCHELASTIC_MAX_RESTARTS="0", TORCHELASTIC_USE_AGENT_STORE="False")
    ranks = {}
    for rank in range(start["ranks"]):
        pid = os.fork()
        if pid == 0:
            os._exit(_rank(rank, start))
        ranks[pid] = rank

    def forward(signum: int, frame: object) -> None:
        for pid in ranks:
            try:
                os.kill(pid, signum)
            except OSError:
                pass

    for sig in _FORWARDED:
        signal.signal(sig, forward)
    code = 0
    while ranks:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        ranks.pop(pid, None)
        ended = os.waitstatus_to_exitcode(status)
        if ended != 0 and code == 0:
            code = ended if ended > 0 else 128 - ended
            forward(signal.SIGTERM, None)  # as torchrun: the others stop too
    return code


def _rank(rank: int, start: dict) -> int:
    """One rank: torchrun's variables, run.sh's threads and malloc settings, then train.py as `__main__`."""
    for sig in _FORWARDED:
        signal.signal(sig, signal.SIG_DFL)
    if start["torchrun"]:
        os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), ROLE_RANK=str(rank))
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    libc = ctypes.CDLL(None)
    for name, option in _MALLOPT.items():
        if os.environ.get(name, "").isdigit():
            libc.mallopt(option, int(os.environ[name]))
    if os.environ.get("PYTHONUNBUFFERED"):
        sys.stdout = open(1, "w", buffering=1, closefd=False)
        sys.stderr = open(2, "w", buffering=1, closefd=False)
    sys.argv = ["train.py", *start["argv"]]
    sys.path[0] = os.getcwd()
    code: object = 0
    try:
        runpy.run_path("train.py", run_name="__main__")
    except SystemExit as exit_:
        code = exit_.code
    except BaseException:  # noqa: BLE001 - printed as Python would, then the process ends
        import traceback

        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
