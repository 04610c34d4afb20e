"""Sweeps on Kubernetes: the workers' Indexed Job (golden, strict validation, no password), lint ==
compile for what a Kubernetes sweep cannot do, and the worker pod's entry point run as two pods
would run it against a real PostgreSQL server (conftest.py's `postgres`; slow: trains)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from dtec.analysis import analyse
from dtec.compiler import compile_blueprint
from dtec.study import _Kube

REPO = Path(__file__).resolve().parent.parent
BLUEPRINT = REPO / "tests" / "fixtures" / "sweep-kube.twin"
KINDS = ["kubernetes", "kubeflow", "kubeflow-v1", "interlink"]
PASSWORD = "hunter2-not-in-any-manifest"
ENV = {"DTEC_SWEEP_DB": f"postgresql://optuna:{PASSWORD}@localhost:5432/sweeps"}


def workers(target: str, submitted: int = 0, environ: dict | None = None) -> str:
    bundle, diagnostics = compile_blueprint(BLUEPRINT, target, environ=environ or ENV)
    assert bundle is not None, [d.message for d in diagnostics]
    sid = "sweep-0123456789ab"
    return _Kube(bundle, BLUEPRINT, [], sid).text(submitted, [])


@pytest.fixture(autouse=True)
def _no_project_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DTEC_PROJECT_ROOT", raising=False)


@pytest.mark.parametrize("target", KINDS)
def test_workers_are_an_indexed_job_that_validates_strictly(target: str, golden) -> None:
    text = workers(target)
    golden(REPO / "tests" / "golden" / "sweeps" / f"workers-{target}.yaml", text)
    assert text == workers(target)  # deterministic
    assert PASSWORD not in text and "optuna:" not in text
    configmap, job = yaml.safe_load_all(text)
    for doc in (configmap, job):
        kubernetes_validate.validate(doc, "1.30.0", strict=True)
    spec = job["spec"]
    assert (spec["completionMode"], spec["completions"], spec["parallelism"]) == ("Indexed", 2, 2)
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"  # podFailurePolicy requires it
    [container] = pod["containers"]
    assert container["command"] + container["args"] == ["python", "-m", "dtec.study", "--pod", "/opt/dtec", "/dtec/run"]
    assert {"name": "DTEC_SWEEP_STORAGE", "valueFrom": {"secretKeyRef": {"name": "optuna-db", "key": "url"}}} in container["env"]
    assert '"storage": null' in configmap["data"]["study.json"]


def test_each_submission_of_a_study_has_its_own_names() -> None:
    first, second = (list(yaml.safe_load_all(workers("kubernetes", n))) for n in (0, 1))
    names = [{d["metadata"]["name"] for d in docs} for docs in (first, second)]
    assert names[0].isdisjoint(names[1]), names
    assert all(len(n) <= 40 for n in names[0] | names[1])


def test_a_url_without_password_and_secret_reaches_the_pods_as_text() -> None:
    text = BLUEPRINT.read_text().replace('storage_secret = "optuna-db/url"', "")
    path = BLUEPRINT.parent / "sweep-kube-open.twin"
    try:
        path.write_text(text)
        bundle, _ = compile_blueprint(path, "kubernetes", environ={"DTEC_SWEEP_DB": "postgresql://optuna@db/sweeps"})
        configmap, job = yaml.safe_load_all(_Kube(bundle, path, [], "sweep-0123456789ab").text(0, []))
    finally:
        path.unlink()
    assert '"storage": "postgresql://optuna@db/sweeps"' in configmap["data"]["study.json"]
    assert "DTEC_SWEEP_STORAGE" not in str(job)


# ---- lint == compile ---------------------------------------------------------------------
CASES = {
    "journal": ('storage = env("DTEC_SWEEP_DB")', 'storage = "journal"', "DT347"),
    "sqlite": ('storage = env("DTEC_SWEEP_DB")', 'storage = "sqlite:///study.db"', "DT347"),
    "two nodes": ("target \"kubernetes\" {", "strategy {\n  kind = ddp\n  nodes = 2\n}\n\ntarget \"kubernetes\" {", "DT348"),
    "password as text": ('storage = env("DTEC_SWEEP_DB")', f'storage = "postgresql://optuna:{PASSWORD}@db/sweeps"', "DT349"),
    "password, no secret": ('storage_secret = "optuna-db/url"', "", "DT349"),
    "bad secret": ('"optuna-db/url"', '"optuna db"', "DT374"),
}


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("target", KINDS)
def test_lint_reports_what_compile_refuses(case: str, target: str, tmp_path: Path) -> None:
    old, new, code = CASES[case]
    if code == "DT348" and target == "interlink":
        code = "DT215"  # interLink runs one node whatever the sweep: its own rule says so first
    path = tmp_path / "bp.twin"
    path.write_text(BLUEPRINT.read_text().replace(old, new))
    linted = [d for d in analyse(path, environ=ENV, targets=[target]).diagnostics if d.severity == "error"]
    bundle, refused = compile_blueprint(path, target, environ=ENV)
    assert bundle is None
    assert {d.code for d in linted} == {code}, [d.message for d in linted]
    assert [(d.code, d.message, d.span) for d in refused if d.severity == "error"] == [(d.code, d.message, d.span) for d in linted]
    assert PASSWORD not in "".join(d.message + (d.help or "") for d in linted)


def test_a_kubernetes_sweep_lints_clean_and_is_not_refused_by_run(tmp_path: Path) -> None:
    assert [d.message for d in analyse(BLUEPRINT, environ=ENV).diagnostics if d.severity == "error"] == []
    done = subprocess.run([sys.executable, "-m", "dtec", "run", str(BLUEPRINT), "-t", "kubernetes", "--dry-run"],
                          cwd=tmp_path, env={**os.environ, **ENV, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "kubectl apply -f workers.yaml" in done.stdout and PASSWORD not in done.stdout + done.stderr
    assert not (tmp_path / "runs").exists()  # a dry run writes nothing


# ---- the worker pods, without a cluster ----------------------------------------------------
def pod_config(text: str, into: Path) -> Path:
    """The worker pods' /opt/dtec: the ConfigMap's files where its volume's items put them."""
    configmap, job = yaml.safe_load_all(text)
    [volume] = [v for v in job["spec"]["template"]["spec"]["volumes"] if "configMap" in v]
    for item in volume["configMap"]["items"]:
        (into / item["path"]).parent.mkdir(parents=True, exist_ok=True)
        (into / item["path"]).write_text(configmap["data"][item["key"]], encoding="utf-8")
    return into


@pytest.mark.slow
def test_two_worker_pods_spend_the_budget_with_no_trial_lost_or_repeated(postgres: str, tmp_path: Path) -> None:
    import optuna

    config = pod_config(workers("kubernetes"), tmp_path / "opt-dtec")
    optuna.storages.RDBStorage(postgres)  # its tables: `dtec run` opens the study before it applies the workers
    pods = []
    for index in (0, 1):
        env = {**os.environ, "PYTHONPATH": str(REPO), "JOB_COMPLETION_INDEX": str(index), "DTEC_SWEEP_STORAGE": postgres}
        env.pop("DTEC_SWEEP_DB", None)
        pods.append(subprocess.Popen([sys.executable, "-m", "dtec.study", "--pod", str(config), str(tmp_path / f"pod-{index}")],
                                     cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outputs = [p.communicate(timeout=900)[0] for p in pods]
    assert [p.returncode for p in pods] == [0, 0], [out[-3000:] for out in outputs]
    [summary] = optuna.get_all_study_summaries(storage=postgres)
    trials = optuna.load_study(study_name=summary.study_name, storage=postgres).trials
    states = sorted(t.state.name for t in trials)
    assert len(trials) == 4 and set(states) <= {"COMPLETE", "PRUNED"}, states
    ran = sorted(p.name for i in (0, 1) for p in (tmp_path / f"pod-{i}").glob("trial-*"))
    assert ran == [f"trial-{t.number:04d}" for t in trials]  # each trial run once, by one pod
    assert {i for i in (0, 1) if list((tmp_path / f"pod-{i}").glob("trial-*"))} == {0, 1}  # both pods worked
    for t in trials:
        assert t.user_attrs["folder"].startswith(str(tmp_path / "pod-"))
    assert all(postgres not in out for out in outputs)


def test_a_pod_without_its_secret_fails_with_the_code_its_job_gives_up_on(tmp_path: Path) -> None:
    config = pod_config(workers("kubernetes"), tmp_path / "opt-dtec")
    env = {k: v for k, v in os.environ.items() if k != "DTEC_SWEEP_STORAGE"} | {"PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-m", "dtec.study", "--pod", str(config), str(tmp_path / "pod")],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "DTEC_SWEEP_STORAGE" in done.stderr, done.stderr


def test_dtec_run_applies_the_workers_and_applies_new_ones_when_the_job_ended_early(postgres: str, tmp_path: Path) -> None:
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    # A kubectl that records what it is told and says every Job has completed.
    (bin_ / "kubectl").write_text('#!/bin/sh\necho "$@" >> "$KUBECTL_LOG"\n'
                                  'if [ "$1" = get ]; then echo \'{"status": {"conditions": [{"type": "Complete", "status": "True"}]}}\'; fi\n')
    (bin_ / "kubectl").chmod(0o755)
    url = postgres.replace("dtec@", f"dtec:{PASSWORD}@")  # the test server trusts any password
    env = {**os.environ, "PYTHONPATH": str(REPO), "PATH": f"{bin_}{os.pathsep}{os.environ['PATH']}",
           "KUBECTL_LOG": str(tmp_path / "kubectl.log"), "DTEC_SWEEP_DB": url}
    runs_ = [subprocess.run([sys.executable, "-m", "dtec", "run", str(BLUEPRINT), "-t", "kubernetes"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=300) for _ in range(2)]
    [folder] = (tmp_path / "runs" / "flood" / "kubernetes").glob("sweep-*")
    said = runs_[0].stderr
    assert runs_[0].returncode == 1 and "ended before the budget was spent" in said, said  # no worker ran a trial
    applied = (tmp_path / "kubectl.log").read_text().splitlines()
    assert [line for line in applied if line.startswith("apply")] == ["apply -f workers.yaml"] * 2
    name = folder.name.removeprefix("sweep-")[:8]
    assert f"get -n ml-team job/flood-{name}-0 -o json" in applied and f"get -n ml-team job/flood-{name}-1 -o json" in applied
    assert f"job.batch/flood-{name}-1" not in said and f"flood-{name}-1" in (folder / "workers.yaml").read_text()
    assert all(PASSWORD not in r.stdout + r.stderr for r in runs_) and PASSWORD not in (folder / "workers.yaml").read_text()
