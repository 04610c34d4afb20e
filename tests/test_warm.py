"""Warm trial starts: ranks forked from a single-threaded zygote get what run.sh and torchrun give them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

RUN_SH = """#!/usr/bin/env bash
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
export FROM_RUN_SH="a b"
export OMP_NUM_THREADS=1
exec "${PYTHON:-python}" -m torch.distributed.run --standalone --nnodes=1 --nproc_per_node=2 train.py --run-dir "${RUN_DIR:-run}" "$@"
"""

TRAIN_PY = """import json, os, sys, torch
import torch.distributed as dist
dist.init_process_group("gloo")
total = torch.tensor([dist.get_rank() + 1])
dist.all_reduce(total)
out = {k: os.environ.get(k) for k in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "FROM_RUN_SH", "DTEC_PREEMPTED_EXIT", "CUDA_VISIBLE_DEVICES")}
out |= {"argv": sys.argv, "sum": int(total), "cwd": os.getcwd(), "main": __name__, "pid": os.getpid()}
print(json.dumps(out), flush=True)
sys.exit(int(os.environ.get("EXIT_WITH", "0")) if dist.get_rank() == 1 else 0)
"""

# In a fresh interpreter (a worker: no thread yet): a zygote, the count of its threads, a trial run through it.
SCRIPT = """
import json, os, sys
from pathlib import Path
from types import SimpleNamespace as NS
from dtec.warm import Zygote

folder = Path(sys.argv[1])
zygote = Zygote(folder)
bundle = NS(ir=NS(target=NS(scheduler="local", data_root=None)), plan=NS(settings={}), blueprint=None)
run = NS(folder=folder, outputs=folder / "run")
start = zygote.start(bundle, run, json.loads(os.environ.get("TRIAL_ENV", "{}")))
if start is None:  # run.sh must start it
    sys.exit(print(json.dumps({"start": None})))
leaders = []
code = zygote.run(start, leaders.append)
threads = len(os.listdir(f"/proc/{zygote.pid}/task"))  # after torch's import and a trial
zygote.close()
print(json.dumps({"code": code, "leader": leaders[0], "zygote": zygote.pid, "threads": threads,
                  "reaped": not os.path.exists(f"/proc/{zygote.pid}")}))
"""


def _trial(tmp_path: Path, run_sh: str = RUN_SH, **env: str) -> tuple[dict, list[dict]]:
    (tmp_path / "run.sh").write_text(run_sh, encoding="utf-8")
    (tmp_path / "train.py").write_text(TRAIN_PY, encoding="utf-8")
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO), **env})
    assert done.returncode == 0, done.stderr
    log_file = tmp_path / "run" / "logs" / "launcher.log"
    log = log_file.read_text(encoding="utf-8") if log_file.exists() else ""
    ranks = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    return json.loads(done.stdout.splitlines()[-1]), sorted(ranks, key=lambda r: r["RANK"])


def test_ranks_are_forked_from_a_single_threaded_zygote_with_run_sh_and_torchrun_environment(tmp_path: Path) -> None:
    result, ranks = _trial(tmp_path)
    assert result["code"] == 0 and result["threads"] == 1 and result["reaped"]  # closed: no zombie left
    assert [(r["RANK"], r["LOCAL_RANK"], r["WORLD_SIZE"]) for r in ranks] == [("0", "0", "2"), ("1", "1", "2")]
    assert all(r["sum"] == 3 for r in ranks)  # the two joined one process group
    assert all(r["FROM_RUN_SH"] == "a b" and r["DTEC_PREEMPTED_EXIT"] == "0" for r in ranks)
    assert all(r["argv"] == ["train.py", "--run-dir", "run", "--resume", "never"] for r in ranks)
    assert all(r["cwd"] == str(tmp_path) and r["main"] == "__main__" for r in ranks)


def test_a_worker_gives_its_trials_its_own_gpus(tmp_path: Path) -> None:
    result, ranks = _trial(tmp_path, TRIAL_ENV='{"CUDA_VISIBLE_DEVICES": "2,3"}', CUDA_VISIBLE_DEVICES="0,1,2,3")
    assert result["code"] == 0 and [r["CUDA_VISIBLE_DEVICES"] for r in ranks] == ["2,3", "2,3"]


def test_a_failing_rank_fails_the_trial(tmp_path: Path) -> None:
    result, _ = _trial(tmp_path, EXIT_WITH="3")
    assert result["code"] == 3


def test_a_launch_the_zygote_cannot_stand_in_for_goes_through_run_sh(tmp_path: Path) -> None:
    deepspeed = RUN_SH.replace("-m torch.distributed.run --standalone", "-m deepspeed.launcher.runner --standalone")
    result, ranks = _trial(tmp_path, deepspeed)
    assert result == {"start": None} and ranks == []
