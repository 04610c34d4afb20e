"""Every custom resource dtec generates validates against its CRD's pinned schema, strictly."""

from __future__ import annotations

import copy
import functools
import json
import re
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from jsonschema import Draft7Validator

from dtec.analysis import analyse
from dtec.compiler import generate as compile_generate
from dtec.ir import build_ir
from dtec.machines import load_machines

HERE = Path(__file__).resolve().parent
SCHEMAS = HERE / "schemas"
# (apiVersion, kind) -> the pinned schema (tests/schemas/README.md says where each comes from)
PINNED = {
    ("trainer.kubeflow.org/v1alpha1", "TrainJob"): "trainjob-v1alpha1.json",
    ("kubeflow.org/v1", "PyTorchJob"): "pytorchjob-v1.json",
}
BUILT_IN = {"v1", "batch/v1"}
K8S_VERSION = "1.30.0"
LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
KUBE_MACHINES = sorted(m.name for m in load_machines() if m.is_kube)


def strict(schema: dict) -> dict:
    """Return `schema` refusing fields it does not declare.

    CRD schemas leave `additionalProperties` open (the API server prunes unknown fields
    silently); every object that lists its properties, and keeps no unknown fields on purpose,
    gets `additionalProperties: false`, as kubeconform's openapi2jsonschema does.
    """

    def walk(node):
        if isinstance(node, list):
            return [walk(v) for v in node]
        if not isinstance(node, dict):
            return node
        out = {k: walk(v) for k, v in node.items()}
        if (
            "properties" in out
            and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out

    return walk(schema)


@functools.cache
def validator(api_version: str, kind: str) -> Draft7Validator:
    schema = strict(json.loads((SCHEMAS / PINNED[(api_version, kind)]).read_text()))
    Draft7Validator.check_schema(schema)
    return Draft7Validator(schema)


def problems(doc: dict) -> list[str]:
    """What the pinned schema refuses in a custom resource, one line each."""
    found = validator(doc["apiVersion"], doc["kind"]).iter_errors(doc)
    return sorted(f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in found)


def generated(blueprint: Path, target: str) -> list[dict]:
    result = analyse(blueprint, environ={}, targets=[target])
    assert result.ok, [(d.code, d.message) for d in result.diagnostics]
    plan = result.plans[target]
    files = compile_generate(build_ir(result.blueprint, plan), plan)
    return list(yaml.safe_load_all(files["job.yaml"]))


def kube_cases() -> list[tuple[Path, str]]:
    """Every test case and shipped blueprint with a target on a Kubernetes kind."""
    paths = sorted((HERE / "backends").glob("*.twin")) + sorted((HERE.parent / "blueprints").glob("*.twin"))
    cases = []
    for path in paths:
        blueprint = analyse(path, environ={}, targets=[]).blueprint
        for target, settings in (blueprint.get("target") or {}).items():
            if ((settings or {}).get("profile") or target) in KUBE_MACHINES:
                cases.append((path, target))
    return cases


CASES = kube_cases()


def test_cases_cover_every_kind() -> None:
    kinds = {doc["kind"] for path, target in CASES for doc in generated(path, target)}
    assert {"TrainJob", "PyTorchJob", "Job", "Service", "ConfigMap"} <= kinds


def assert_valid(doc: dict) -> None:
    """The object validates strictly: a built-in against Kubernetes', a custom one against its CRD's."""
    labels = doc["metadata"].get("labels") or {}
    assert all(LABEL_VALUE.fullmatch(v) and len(v) <= 63 for v in labels.values()), labels
    if doc["apiVersion"] in BUILT_IN:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        return
    assert problems(doc) == [], doc["kind"]
    # The CRD schema leaves metadata open: the core ObjectMeta schema checks it.
    probe = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": doc["metadata"]}
    kubernetes_validate.validate(probe, K8S_VERSION, strict=True)


@pytest.mark.parametrize(("blueprint", "target"), CASES, ids=lambda v: getattr(v, "name", v))
def test_generated_resources_validate(blueprint: Path, target: str) -> None:
    for doc in generated(blueprint, target):
        assert_valid(doc)


@pytest.mark.parametrize("target", KUBE_MACHINES)
def test_a_study_compiles_one_valid_workload_of_its_own_per_point(target: str) -> None:
    from dtec.compiler import compile_blueprint
    from dtec.scaling import plan

    study = HERE / "fixtures" / "study.twin"
    # 8 ranks a node: 16 is two nodes; strong mode gives each point its own share of the batch of 16.
    sets = ["scaling.ranks=[1, 8, 16]", "scaling.repeats=2"]
    bundle, diagnostics = compile_blueprint(study, target, sets=sets, environ={})
    assert bundle is not None, [(d.code, d.message) for d in diagnostics]
    planned = plan(bundle, study, sets, [], "20261130-120000-ab12")
    assert planned is not None and [p.name for p in planned] == ["r1", "r1-2", "r8", "r8-2", "r16", "r16-2"]
    names = set()
    for item in planned:
        docs = list(yaml.safe_load_all(item.bundle.files["job.yaml"]))
        for doc in docs:
            assert_valid(doc)
        workload = docs[-1]["metadata"]["name"]
        assert workload == f"t-ab12-{item.name}" and workload not in names
        names.add(workload)
        assert json.loads(item.bundle.files["ir.json"])["scaling"]["ranks"] == [item.point.ranks]


def trainjob() -> dict:
    return next(d for d in generated(HERE / "backends" / "kube.twin", "kubeflow") if d["kind"] == "TrainJob")


def test_the_strict_check_refuses_fields_the_schema_lacks() -> None:
    job = trainjob()
    assert problems(job) == []
    # v2.1's pod override API, gone in v2.2; numProcPerNode as the v1 string.
    old = copy.deepcopy(job)
    old["spec"]["podTemplateOverrides"] = []
    assert problems(old) == ["spec: Additional properties are not allowed ('podTemplateOverrides' was unexpected)"]
    typo = copy.deepcopy(job)
    typo["spec"]["trainer"]["numProcPerNode"] = "2"
    assert problems(typo) == ["spec.trainer.numProcPerNode: '2' is not of type 'integer'"]
    deep = copy.deepcopy(job)
    pod = deep["spec"]["runtimePatches"][0]["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"][0]
    pod["template"]["spec"]["template"]["spec"]["containers"][0]["workingDir"] = "/dtec/run"
    assert len(problems(deep)) == 1 and "'workingDir' was unexpected" in problems(deep)[0]


def test_pytorchjob_schema_wants_nproc_per_node_as_a_string() -> None:
    doc = next(d for d in generated(HERE / "backends" / "kube.twin", "kubeflow-v1") if d["kind"] == "PyTorchJob")
    assert problems(doc) == []
    doc["spec"]["nprocPerNode"] = 2
    assert problems(doc) == ["spec.nprocPerNode: 2 is not of type 'string'"]
