"""A continued study's workers draw new values: their samplers are seeded by what the study holds too."""

from __future__ import annotations

from pathlib import Path

import pytest

from dtec import study as studies


def _spec(tmp_path: Path, worker: int, sampler: str) -> dict:
    tmp_path.mkdir(exist_ok=True)
    sweep = {"seed": 1, "sampler": sampler, "pruner": "none", "retries": 0,
             "space": [{"fn": "uniform", "key": "train.optimizer.lr", "low": 0.0, "high": 1.0}]}
    return {"id": "s", "goal": "minimize", "storage": studies.storage_url(sweep, tmp_path), "sweep": sweep, "worker": worker}


def _draw(tmp_path: Path, worker: int, sampler: str) -> float:
    study = studies._load(_spec(tmp_path, worker, sampler))
    trial = study.ask({d.key: studies._distribution(d) for d in studies.dimensions(_spec(tmp_path, worker, sampler)["sweep"])})
    study.tell(trial, 0.5)
    return trial.params["train.optimizer.lr"]


@pytest.mark.parametrize("sampler", ["random", "tpe"])
def test_a_worker_of_a_continued_study_does_not_repeat_its_predecessor(tmp_path: Path, sampler: str) -> None:
    first = [_draw(tmp_path, worker, sampler) for worker in (0, 1)]
    again = [_draw(tmp_path, worker, sampler) for worker in (0, 1)]  # `dtec run` again: the same workers, numbered alike
    assert len(set(first + again)) == 4


def test_a_new_study_draws_the_same_values_from_the_same_seed(tmp_path: Path) -> None:
    assert _draw(tmp_path / "a", 0, "random") == _draw(tmp_path / "b", 0, "random")
