"""Experiment tracking: `monitor { track }` in MLflow (a real server, the file store) and
TensorBoard, read back with their own readers and held to metrics.jsonl; `dtec export mlflow`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dtec.compiler import compile_blueprint
from dtec.lint import analyse
from dtec.tracking import export_mlflow, tracked_values

BLUEPRINT = """\
twin "tracked" {{ description = "tracking test" }}
data "d" {{
  source = synthetic(samples = 256, shape = [8], targets = 1)
  batch = 16
}}
model "net" {{
  arch = mlp(input = 8, output = 1)
  input = data.d
}}
train {{
  loss = mse
  epochs = 2
  export = none
}}
strategy {{
  kind = ddp
  procs_per_node = 2
}}
monitor {{
  log_every = 2
  {track}
}}
"""


def bundle(folder: Path, track: str, run_id: str = "run-1") -> Path:
    """Compile the blueprint with `track` into `folder`, with a run record as `dtec run` keeps."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "bp.twin").write_text(BLUEPRINT.format(track=track))
    built, found = compile_blueprint(folder / "bp.twin", "local", environ={})
    assert built is not None, found
    for name, text in built.files.items():
        (folder / name).write_text(text)
    (folder / "run").mkdir()
    (folder / "run" / "run.json").write_text(json.dumps({"id": run_id, "target": "local", "sets": ["train.seed=7"]}))
    return folder / "train.py"


def torchrun(script: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")}
    env.update(OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", DTEC_DATA_ROOT=".")
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script),
         "--run-dir", str(script.parent / "run"), *args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300, env=env,
    )
    assert result.returncode == 0, result.stdout[-6000:]
    return result.stdout


def expected_series(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every series metrics.jsonl holds, as the trackers name them: (step, value) in order."""
    series: dict[str, list[tuple[int, float]]] = {}
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        step, _, values = tracked_values()(json.loads(line))
        for key, value in values.items():
            series.setdefault(key, []).append((step, value))
    return series


def mlflow_series(client, run_id: str, keys) -> dict[str, list[tuple[int, float]]]:
    found = {}
    for key in keys:
        history = sorted(client.get_metric_history(run_id, key), key=lambda m: (m.timestamp, m.step))
        found[key] = [(m.step, m.value) for m in history]
    return found


# ----------------------------------------------------------------------------- no tracking
def test_untracked_script_imports_neither_library(tmp_path: Path) -> None:
    untracked = bundle(tmp_path / "a", "timing = true").read_text()
    assert "mlflow" not in untracked and "tensorboard" not in untracked
    assert '"track"' not in (tmp_path / "a" / "ir.json").read_text()  # the IR as before tracking
    tracked = bundle(tmp_path / "b", "track = [mlflow(), tensorboard()]")
    requires = json.loads((tmp_path / "b" / "manifest.json").read_text())["requires"]
    assert {"mlflow", "tensorboard"} <= set(requires)
    assert "import mlflow" in tracked.read_text()


def test_a_tracker_list_lints_clean_and_a_bad_uri_is_pointed_at(tmp_path: Path) -> None:
    path = tmp_path / "bp.twin"
    path.write_text(BLUEPRINT.format(track='track = [mlflow(uri = "http://127.0.0.1:5000", experiment = "e"), tensorboard()]'))
    assert [d.code for d in analyse(path, environ={}).diagnostics] == []
    path.write_text(BLUEPRINT.format(track='track = [tensorboard(), mlflow(uri = "ftp://host/x")]'))
    found = analyse(path, environ={}).diagnostics
    assert [d.code for d in found] == ["DT370"]
    assert found[0].span.source.text[found[0].span.start:found[0].span.end] == '"ftp://host/x"'


def test_tracked_values_name_and_step_each_record() -> None:
    step = {"kind": "step", "time": 1.5, "step": 4, "epoch": 1, "loss": 0.5, "lr": 0.001}
    assert tracked_values()(step) == (4, 1500, {"step/epoch": 1.0, "step/loss": 0.5, "step/lr": 0.001})
    epoch = {"kind": "epoch", "time": 2.0, "epoch": 2, "val_loss": 0.25, "val_mae_targets": [0.1],
             "energy": {"available": False, "reason": "off"}}
    assert tracked_values()(epoch) == (2, 2000, {"epoch/val_loss": 0.25, "epoch/val_mae_targets.0": 0.1})


# ----------------------------------------------------------------------------- real runs
@pytest.mark.slow
def test_two_ranks_log_to_a_server_and_tensorboard_as_metrics_jsonl(tmp_path: Path, mlflow_server: str) -> None:
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import (
        STORE_EVERYTHING_SIZE_GUIDANCE, EventAccumulator,
    )

    track = f'track = [mlflow(uri = "{mlflow_server}", experiment = "live"), tensorboard()]'
    script = bundle(tmp_path, track, run_id="live-1")
    torchrun(script)
    run_dir = tmp_path / "run"
    expected = expected_series(run_dir)
    assert "step/loss" in expected and "epoch/val_loss" in expected
    assert [s for s, _ in expected["epoch/val_loss"]] == [1, 2]

    client = MlflowClient(mlflow_server)
    experiment = client.get_experiment_by_name("live")
    (run,) = client.search_runs([experiment.experiment_id], "tags.`dtec.run_id` = 'live-1'")
    assert run.info.status == "FINISHED"
    assert json.loads((run_dir / "tracking.json").read_text())["mlflow_run_id"] == run.info.run_id
    assert mlflow_series(client, run.info.run_id, expected) == expected
    params = run.data.params
    assert (params["train.epochs"], params["strategy.kind"], params["dtec.sets"]) == ("2", "ddp", "train.seed=7")
    assert params["decision.ranks"] == "1 × 2"
    assert params["dtec.target"] == "local"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"final_model.pt", "summary.json"} <= artifacts

    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance=STORE_EVERYTHING_SIZE_GUIDANCE).Reload()
    assert set(events.Tags()["scalars"]) == set(expected)
    for key, series in expected.items():
        logged = events.Scalars(key)
        assert [e.step for e in logged] == [step for step, _ in series]
        assert [e.value for e in logged] == pytest.approx([v for _, v in series], rel=1e-6)  # float32 there


@pytest.mark.slow
def test_file_store_run_resumes_into_the_same_mlflow_run_and_exports_once(tmp_path: Path, mlflow_server: str,
                                                                        monkeypatch) -> None:
    from mlflow.tracking import MlflowClient

    script = bundle(tmp_path / "offline", 'track = mlflow(uri = "mlruns", experiment = "offline")', run_id="offline-1")
    run_dir = script.parent / "run"
    torchrun(script, "--max-steps", "10")  # stops in epoch 1 of 2: resumable, like a pre-empted run
    first = json.loads((run_dir / "tracking.json").read_text())["mlflow_run_id"]
    torchrun(script)  # resumes from its checkpoint
    assert json.loads((run_dir / "tracking.json").read_text())["mlflow_run_id"] == first

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    store = MlflowClient((run_dir / "mlruns").as_uri())
    (run,) = store.search_runs([store.get_experiment_by_name("offline").experiment_id])
    assert (run.info.run_id, run.info.status) == (first, "FINISHED")  # one run, continued
    expected = expected_series(run_dir)
    assert mlflow_series(store, first, expected) == expected

    monkeypatch.chdir(tmp_path)
    pushed = export_mlflow([str(script.parent)], mlflow_server, "pushed")
    assert pushed.diagnostics == [] and pushed.pushed[0]["pushed"] == "now"
    again = export_mlflow([str(script.parent)], mlflow_server, "pushed")
    assert again.pushed[0] == {**pushed.pushed[0], "pushed": "already there"}
    server = MlflowClient(mlflow_server)
    (remote,) = server.search_runs([server.get_experiment_by_name("pushed").experiment_id])
    assert remote.info.status == "FINISHED"
    assert mlflow_series(server, remote.info.run_id, expected) == expected
    history = server.get_metric_history(remote.info.run_id, "epoch/val_loss")
    times = [json.loads(line)["time"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()
             if json.loads(line)["kind"] == "epoch"]
    assert sorted(m.timestamp for m in history) == [round(t * 1000) for t in times]
    assert {a.path for a in server.list_artifacts(remote.info.run_id)} >= {"final_model.pt", "summary.json"}


def test_export_refuses_an_unfinished_run_and_a_bad_uri(tmp_path: Path, monkeypatch) -> None:
    bundle(tmp_path / "r", "track = mlflow()")
    monkeypatch.chdir(tmp_path)
    found = export_mlflow(["r"], "http://127.0.0.1:9").diagnostics
    assert [d.code for d in found] == ["DT373"] and "has not finished" in found[0].message
    bad = export_mlflow(["r"], "s3://bucket").diagnostics
    assert [d.code for d in bad] == ["DT373"] and bad[0].span.source.text[bad[0].span.start:] == "s3://bucket"


# ----------------------------------------------------------------------------- studies and sweeps
STUDY = BLUEPRINT.replace("""  kind = ddp
  procs_per_node = 2
}}""", """  kind = ddp
}}
scaling {{
  ranks = [1, 2]
  steps = 6
  warmup = 2
}}""")
SWEEP = BLUEPRINT.replace("epochs = 2", "epochs = 1").replace("""  kind = ddp
  procs_per_node = 2
}}""", """  kind = ddp
  procs_per_node = 1
}}
sweep {{
  trials = 2
  parallel = 1
  seed = 1
  space = [loguniform("train.optimizer.lr", 1e-4, 1e-2)]
}}""")
REPO = Path(__file__).resolve().parent.parent


def dtec_run(cwd: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")}
    env.update(PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", DTEC_DATA_ROOT=".")
    result = subprocess.run([sys.executable, "-m", "dtec", "run", *args], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=900)
    assert result.returncode == 0, result.stdout[-6000:]
    return result.stdout


def nested(client, experiment: str, kind: str):
    """The one parent run of `kind` in the experiment, and the runs that name it their parent."""
    found = client.get_experiment_by_name(experiment)
    everything = client.search_runs([found.experiment_id])
    (parent,) = [r for r in everything if r.data.tags.get("dtec.kind") == kind]
    children = [r for r in everything if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(everything) == 1 + len(children)  # nothing outside the nesting
    return parent, {r.data.tags["dtec.run_id"]: r for r in children}


def test_a_study_folder_opens_its_parent_run_once(tmp_path: Path, monkeypatch) -> None:
    from mlflow.tracking import MlflowClient

    from dtec.parent_run import child_link, start_parent

    built, found = compile_blueprint(_write(tmp_path / "bp.twin", SWEEP.format(
        track='track = [mlflow(uri = "mlruns", experiment = "e"), tensorboard()]')), "local", environ={})
    assert built is not None, found
    monkeypatch.chdir(tmp_path)
    folder = Path("sweep-x")  # relative, as dtec's runs/ folders are: the link is absolute all the same
    folder.mkdir()
    (folder / "study.json").write_text(json.dumps({"id": "sweep-x", "sweep": {"trials": 2}, "sets": []}))
    link = start_parent("sweep", folder, built.files["ir.json"])
    assert start_parent("sweep", folder, built.files["ir.json"]) == link  # a rerun continues it
    assert link["mlflow_uri"] == (tmp_path / folder / "mlruns").as_uri()
    assert child_link(link, "trial-0003")["tensorboard"] == str(tmp_path / folder / "tensorboard" / "trial-0003")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    client = MlflowClient(link["mlflow_uri"])
    (run,) = client.search_runs([link["experiment_id"]])
    assert run.info.run_id == link["mlflow_run_id"] and run.data.tags["dtec.kind"] == "sweep"
    assert run.data.params["sweep.trials"] == "2" and run.data.params["train.epochs"] == "1"
    offline, _ = compile_blueprint(_write(tmp_path / "off.twin", SWEEP.format(track="track = mlflow()")), "local", environ={})
    (tmp_path / "sweep-y").mkdir()
    (tmp_path / "sweep-y" / "study.json").write_text((folder / "study.json").read_text())
    link = start_parent("sweep", Path("sweep-y"), offline.files["ir.json"])  # the default store, in the study folder
    assert link["mlflow_uri"] == "sqlite:///" + str(tmp_path / "sweep-y" / "mlflow" / "mlflow.db") and "tensorboard" not in link


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.slow
def test_a_study_nests_its_points_live_and_when_exported(tmp_path: Path, mlflow_server: str) -> None:
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    track = f'track = [mlflow(uri = "{mlflow_server}", experiment = "study"), tensorboard()]'
    _write(tmp_path / "s.twin", STUDY.format(track=track))
    dtec_run(tmp_path, "s.twin")
    [study] = [p for p in (tmp_path / "runs" / "tracked" / "local").iterdir() if not p.is_symlink()]
    client = MlflowClient(mlflow_server)
    parent, children = nested(client, "study", "study")
    assert parent.info.status == "FINISHED" and parent.data.params["scaling.ranks"] == "[1, 2]"
    assert sorted(children) == sorted(f"{study.name}-{n}" for n in ("r1", "r2"))
    for name in ("r1", "r2"):
        expected = expected_series(study / "points" / name / "run")
        assert mlflow_series(client, children[f"{study.name}-{name}"].info.run_id, expected) == expected
        events = EventAccumulator(str(study / "run" / "tensorboard" / name)).Reload()
        assert set(events.Tags()["scalars"]) == set(expected)  # side by side under the study's log dir
    efficiency = client.get_metric_history(parent.info.run_id, "scaling/efficiency")
    assert sorted(m.step for m in efficiency) == [1, 2]
    # The study's report, where dtec run wrote one (matplotlib installed), goes with its data.
    report = {"report.html", "report.md"} if (study / "report" / "report.html").is_file() else set()
    assert {a.path for a in client.list_artifacts(parent.info.run_id)} == {"scaling.json"} | report

    pushed = export_mlflow([str(study)], mlflow_server, "study-pushed")
    assert pushed.diagnostics == [] and [r["pushed"] for r in pushed.pushed] == ["now"] * 3
    again = export_mlflow([str(study)], mlflow_server, "study-pushed")
    assert [r["pushed"] for r in again.pushed] == ["already there"] * 3
    parent, children = nested(client, "study-pushed", "study")
    assert len(children) == 2 and parent.info.status == "FINISHED"
    for run in children.values():
        name = run.data.tags["dtec.run_id"].rsplit("-", 1)[1]
        expected = expected_series(study / "points" / name / "run")
        assert mlflow_series(client, run.info.run_id, expected) == expected


@pytest.mark.slow
def test_a_sweep_nests_its_trials_in_the_file_store_and_a_rerun_keeps_one_parent(tmp_path: Path, monkeypatch) -> None:
    import csv

    from mlflow.tracking import MlflowClient

    _write(tmp_path / "s.twin", SWEEP.format(track='track = mlflow(uri = "mlruns", experiment = "sweep")'))
    dtec_run(tmp_path, "s.twin")
    [folder] = (tmp_path / "runs" / "tracked" / "local").glob("sweep-*")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    client = MlflowClient((folder / "mlruns").as_uri())
    parent, children = nested(client, "sweep", "sweep")
    trials = list(csv.DictReader((folder / "trials.csv").open()))
    assert sorted(children) == sorted(t["run"] for t in trials) and len(trials) == 2
    for t in trials:
        expected = expected_series(folder / f"trial-{int(t['number']):04d}" / "run")
        assert mlflow_series(client, children[t["run"]].info.run_id, expected) == expected
    best = client.get_metric_history(parent.info.run_id, "sweep/best_value")
    assert [m.value for m in best] == [min(float(t["value"]) for t in trials)]
    assert {a.path for a in client.list_artifacts(parent.info.run_id)} == {"trials.csv", "best.twin"}

    dtec_run(tmp_path, "s.twin")  # the study is complete: no new trial, the same parent
    again, children_again = nested(client, "sweep", "sweep")
    assert again.info.run_id == parent.info.run_id and children_again.keys() == children.keys()
    assert again.info.status == "FINISHED"
