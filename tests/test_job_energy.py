"""Slurm's ConsumedEnergy from sacct, read from recorded outputs (tests/fixtures/sacct/README.md)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from dtec.jobenergy import sacct_joules, slurm_energy
from dtec.report import load_point

SACCT = Path(__file__).resolve().parent / "fixtures" / "sacct"


def replay(sacct: str, config: str, code: int = 0):
    """A `tool` that answers sacct and scontrol with the recorded files."""
    def tool(command: list[str]) -> subprocess.CompletedProcess:
        if command[0] == "scontrol":
            return subprocess.CompletedProcess(command, 0, (SACCT / config).read_text(), "")
        text = (SACCT / sacct).read_text()
        return subprocess.CompletedProcess(command, code, "" if code else text, text if code else "")
    return tool


def test_the_allocation_line_gives_the_jobs_joules() -> None:
    text = (SACCT / "energy.out").read_text()
    assert sacct_joules("4711", text) == 153249.0
    assert sacct_joules("4712", (SACCT / "unrecorded.out").read_text()) is None
    assert sacct_joules("4711", "4711||\n") is None
    said = slurm_energy(["4711"], replay("energy.out", "config-energy.out"))
    assert said == {"available": True, "joules": 153249.0, "jobs": ["4711"],
                    "method": "Slurm ConsumedEnergy (sacct) of the whole job"}


def test_no_energy_says_why() -> None:
    off = slurm_energy(["186"], replay("disabled.err", "config-local.out", code=1))
    assert off == {"available": False, "reason": "sacct: Slurm accounting storage is disabled; Slurm's energy "
                   "accounting is off here (AcctGatherEnergyType = acct_gather_energy/none)"}
    zero = slurm_energy(["4712"], replay("unrecorded.out", "config-energy.out"))
    assert not zero["available"] and zero["reason"].startswith("Slurm recorded no energy for job 4712: the nodes")


def test_a_point_without_measured_energy_takes_slurms(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "run.json").write_text(json.dumps({"id": "p", "launches": [{"kind": "slurm", "job_id": "4711"}]}))
    (tmp_path / "run" / "summary.json").write_text(json.dumps({"steps": 35}))
    (tmp_path / "run" / "scaling.json").write_text(json.dumps(
        {"ranks": 2, "global_batch": 16, "step_time_s": 0.02, "energy": {"available": False, "reason": "no RAPL"}}))
    monkeypatch.setattr("dtec.runs._tool", replay("energy.out", "config-energy.out"))
    energy = load_point(tmp_path)["energy"]
    assert energy["available"] and energy["joules"] == 153249.0
    assert energy["samples_per_joule"] == 35 * 16 / 153249.0
    monkeypatch.setattr("dtec.runs._tool", replay("disabled.err", "config-local.out", code=1))
    assert load_point(tmp_path)["energy"]["reason"].startswith("no RAPL; sacct: Slurm accounting storage is disabled")
