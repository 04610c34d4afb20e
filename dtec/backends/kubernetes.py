"""Kubernetes backend: `job.yaml` for plain Kubernetes, Kubeflow and interLink (docs/backends.md).

The objects are built as dicts and dumped with yaml.safe_dump_all: no YAML is templated as text.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping
from typing import Any

import yaml

from dtec.backends.checks import INTERLINK_FLAG_UNSAFE
from dtec.backends.slurm import CPU_MALLOC_ENV
from dtec.ir import IR
from dtec.machines.model import Kube, Machine
from dtec.units import whole_units
from dtec.plan import Plan

JOB_FILE = "job.yaml"
BUNDLE_MOUNT = "/opt/dtec"  # the ConfigMap with train.py, ir.json and the user's code (read-only)
RUN_MOUNT = "/dtec/run"  # the run folder: metrics, checkpoints, summary
_NAME_MAX = 40  # leaves room for "-bundle", "-master-0" and the Indexed Job's "-<index>" suffixes
_LABEL = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
_PART_OF = "dtec"
_INDEX_FIELD = "metadata.annotations['batch.kubernetes.io/job-completion-index']"


def generate(ir: IR, plan: Plan, shared: Mapping[str, str], name: str | None = None) -> dict[str, str]:
    """Return `{"job.yaml": text}`: a ConfigMap with `shared` (train.py, ir.json), then the workload.

    `name`: the objects' (workload_name); default: the twin's.
    """
    kube = plan.machine.kube
    assert kube is not None, "the profile schema requires [kube] for Kubernetes kinds"
    name = name or workload_name(ir.twin.name)
    namespace = ir.target.namespace or kube.namespace  # a Kubernetes name: dtec.backends.checks
    shape = {
        "indexed-job": _indexed_job,
        "trainjob": _trainjob,
        "pytorchjob": _pytorchjob,
        "interlink-job": _interlink_job,
    }
    workload = shape[kube.workload](ir, plan, name, namespace, shared)
    # A JSON round trip unshares repeated dicts (Master and Worker templates): no YAML aliases.
    objects = json.loads(json.dumps([_configmap(ir, name, namespace, shared), *workload]))
    return {JOB_FILE: dump_yaml(objects)}


def dump_yaml(objects: list[dict]) -> str:
    """The YAML text of `objects`, one document each, keys in their order, no line wrapping."""
    return yaml.dump_all(
        objects, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=4096
    )


class _Dumper(getattr(yaml, "CSafeDumper", yaml.SafeDumper)):  # libyaml's where installed: faster
    """yaml.safe_dump's dumper, writing multi-line strings (train.py) as literal blocks."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


# ---- names -------------------------------------------------------------------------------
def dns1035(text: str, limit: int = _NAME_MAX) -> str:
    """Return a DNS-1035 label (a-z, 0-9 and `-`, starting with a letter) made from `text`."""
    name = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    name = re.sub(r"^[0-9-]+", "", name)
    name = name[:limit].rstrip("-")
    return name or "dtec-job"


def workload_name(twin: str, run_id: str | None = None) -> str:
    """The objects' name: the twin's, then the run's id where there is one (20 characters from
    dtec.runs.new_id, or a study's point), the twin's part shortened so that the whole stays
    within _NAME_MAX."""
    suffix = re.sub(r"[^a-z0-9]+", "-", (run_id or "").lower()).strip("-")[-(_NAME_MAX // 2):].strip("-")
    return f"{dns1035(twin, _NAME_MAX - len(suffix) - 1)}-{suffix}" if suffix else dns1035(twin)


def _label(text: str) -> str:
    """Return `text` as a label value: <= 63 of [A-Za-z0-9-_.], alphanumeric at both ends."""
    value = re.sub(r"[^A-Za-z0-9_.-]+", "-", text)[:63].strip("-_.")
    return value if _LABEL.fullmatch(value) else ""


# ---- shared pieces -----------------------------------------------------------------------
def _configmap(ir: IR, name: str, namespace: str, shared: Mapping[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": f"{name}-bundle", "namespace": namespace, "labels": _labels(ir)},
        "data": {key: shared[path] for key, path in _bundle_keys(shared).items()},
    }


def _bundle_keys(shared: Mapping[str, str]) -> dict[str, str]:
    """Return the ConfigMap key of each bundle file (train.py, ir.json, code/<name>/...) → its path.

    Keys cannot hold `/`: a code file's key is its path with `.` for `/`, made unique.
    """
    keys: dict[str, str] = {}
    for path in shared:
        key = re.sub(r"[^-._a-zA-Z0-9]", "_", path.replace("/", "."))
        while key in keys:
            key += "_"
        keys[key] = path
    return keys


def _labels(ir: IR) -> dict[str, str]:
    labels = {"app.kubernetes.io/part-of": _PART_OF}
    twin = _label(ir.twin.name)
    if twin:
        labels["app.kubernetes.io/name"] = twin
    return labels


def _workload_labels(ir: IR) -> dict[str, str]:
    """The workload's labels: dtec's, and the Kueue queue and priority class where the target names them.

    Kueue reads both from the labels of the Job, TrainJob or PyTorchJob itself
    (kubernetes-sigs/kueue:pkg/controller/jobframework/utils.go, v0.19.2).
    """
    labels = _labels(ir)
    if ir.target.queue:
        labels["kueue.x-k8s.io/queue-name"] = ir.target.queue
    if ir.target.priority_class:
        labels["kueue.x-k8s.io/priority-class"] = ir.target.priority_class
    return labels


def _image(ir: IR, plan: Plan, kube: Kube) -> str:
    image = ir.target.image or plan.machine.software.image or ""
    if image and kube.image_prefix and "://" not in image and not image.startswith("/"):
        image = kube.image_prefix + image
    return image


def _env(ir: IR, plan: Plan, escape: bool) -> list[dict[str, Any]]:
    """Return the container's env: the site's, dtec's, then the blueprint's (last one wins)."""
    values = dict(plan.machine.environment(plan.partition))
    values["OMP_NUM_THREADS"] = str(plan.cpus_per_rank)
    if ir.target.data_root:  # a path in the container: the image's, or a volume the cluster mounts
        values["DTEC_DATA_ROOT"] = ir.target.data_root
    if plan.device == "cpu":  # as in the CPU launchers: a profile's or the blueprint's value wins
        for name, value in CPU_MALLOC_ENV:
            values.setdefault(name, str(value))
    values.update(ir.target.env)
    # Kubernetes expands $(VAR) in env values; `$$(` keeps a blueprint's text as written.
    return [
        {"name": k, "value": v.replace("$(", "$$(") if escape else v} for k, v in values.items()
    ]


def _quantity(gib: float) -> str:
    """Return a memory quantity for `gib` GiB (Slurm's G): whole Gi, else Mi rounded up, never 0."""
    return f"{int(gib)}Gi" if gib >= 1 and float(gib).is_integer() else f"{whole_units(gib, 1024)}Mi"


def _resources(plan: Plan, kube: Kube, requests: bool = True) -> dict[str, Any]:
    node = plan.node
    cpu = str(plan.cpus_per_rank * plan.ranks_per_node)
    memory = _quantity(node.requestable_memory_gb)
    limits: dict[str, Any] = {"cpu": cpu, "memory": memory}
    if plan.gpus_per_node and kube.gpu_resource:
        limits[kube.gpu_resource] = plan.gpus_per_node  # extended resources: limits only, integers
    out: dict[str, Any] = {"limits": limits}
    if requests:
        out["requests"] = {"cpu": cpu, "memory": memory}
    return out


def _volumes(name: str, kube: Kube, shm: bool, shared: Mapping[str, str]) -> tuple[list[dict], list[dict]]:
    mounts = [
        {"name": "bundle", "mountPath": BUNDLE_MOUNT, "readOnly": True},
        {"name": "run", "mountPath": RUN_MOUNT},
    ]
    bundle: dict[str, Any] = {"name": f"{name}-bundle"}
    if any("/" in path for path in shared):  # the user's code: each file at its path in the bundle
        bundle["items"] = [{"key": key, "path": path} for key, path in _bundle_keys(shared).items()]
    volumes: list[dict[str, Any]] = [
        {"name": "bundle", "configMap": bundle},
        {"name": "run", "emptyDir": {}},
    ]
    if shm and kube.shm_size_gb > 0:
        # DataLoader workers pass batches through /dev/shm; the container default is 64 MiB.
        mounts.append({"name": "dshm", "mountPath": "/dev/shm"})
        volumes.append(
            {
                "name": "dshm",
                "emptyDir": {"medium": "Memory", "sizeLimit": _quantity(kube.shm_size_gb)},
            }
        )
    return mounts, volumes


def _container(
    ir: IR,
    plan: Plan,
    kube: Kube,
    command: list[str],
    args: list[str],
    mounts: list[dict],
    port: bool = False,
) -> dict[str, Any]:
    # interLink's plugin neither expands $(VAR) nor documents workingDir: its command does both.
    interlink = kube.workload == "interlink-job"
    container: dict[str, Any] = {
        "name": kube.container_name,
        "image": _image(ir, plan, kube),
        "command": command,
        "args": args,
    }
    if not interlink:
        container["workingDir"] = RUN_MOUNT
    container["env"] = _env(ir, plan, not interlink)
    if port:
        container["ports"] = [{"name": "c10d", "containerPort": kube.port}]
    container["resources"] = _resources(plan, kube)
    container["volumeMounts"] = mounts
    return container


def _script_args() -> list[str]:
    return [f"{BUNDLE_MOUNT}/train.py", f"--run-dir={RUN_MOUNT}", "--resume=auto"]


def torchrun(machine: Machine) -> list[str]:
    return shlex.split(machine.launch.torchrun)


# ---- (a) headless Service + Indexed Job --------------------------------------------------
def _indexed_job(ir: IR, plan: Plan, name: str, namespace: str, shared: Mapping[str, str]) -> list[dict]:
    kube = plan.machine.kube
    assert kube is not None
    port = kube.port
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace, "labels": _labels(ir)},
        "spec": {
            "clusterIP": "None",
            # Rank 0's DNS name must resolve before the pods are ready (as JobSet does).
            "publishNotReadyAddresses": True,
            "selector": {"job-name": name},
            "ports": [{"name": "c10d", "port": port, "targetPort": port}],
        },
    }
    args = [
        f"--nnodes={plan.nodes}",
        f"--nproc_per_node={plan.ranks_per_node}",
        "--node_rank=$(JOB_COMPLETION_INDEX)",  # expanded by Kubernetes from the env below
        f"--master_addr={name}-0.{name}",
        f"--master_port={port}",
        *plan.machine.launch.torchrun_args,
        *_script_args(),
    ]
    mounts, volumes = _volumes(name, kube, shm=True, shared=shared)
    container = _container(ir, plan, kube, torchrun(plan.machine), args, mounts, port=True)
    container["env"].insert(
        0, {"name": "JOB_COMPLETION_INDEX", "valueFrom": {"fieldRef": {"fieldPath": _INDEX_FIELD}}}
    )
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": namespace, "labels": _workload_labels(ir)},
        "spec": {
            "completionMode": "Indexed",
            "completions": plan.nodes,
            "parallelism": plan.nodes,
            "backoffLimit": kube.backoff_limit,
            "activeDeadlineSeconds": ir.target.walltime_s,
            "ttlSecondsAfterFinished": kube.ttl_seconds,
            "template": {
                "metadata": {"labels": _labels(ir)},
                "spec": {
                    "subdomain": name,
                    "restartPolicy": kube.restart_policy,
                    **_placement(kube),
                    "containers": [container],
                    "volumes": volumes,
                },
            },
        },
    }
    return [service, job]


def _placement(kube: Kube) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if kube.node_selector:
        out["nodeSelector"] = dict(kube.node_selector)
    if kube.tolerations:
        out["tolerations"] = [_toleration(t) for t in kube.tolerations]
    return out


def _toleration(t: Any) -> dict[str, Any]:
    """Return a toleration with Kubernetes' field names (profiles write toleration_seconds)."""
    keys = {"toleration_seconds": "tolerationSeconds"}
    return {keys.get(k, k): v for k, v in t.items()}


# ---- (b) Kubeflow Trainer v2 TrainJob ---------------------------------------------------
TRAINER_JOB = "node"  # the torch runtimes' replicated job and container (kubeflow/trainer constants.Node)
_PATCH_MANAGER = "dtec"


def _trainjob(ir: IR, plan: Plan, name: str, namespace: str, shared: Mapping[str, str]) -> list[dict]:
    """A TrainJob on a ClusterTrainingRuntime (Kubeflow Trainer v2.2 and later).

    The trainer takes image, command, env, node count, processes per node and resources; the
    rest (volumes and their mounts, placement, pod labels) goes into a runtime patch of the
    runtime's `node` job, as v2.2's `runtimePatches` allow.
    """
    kube = plan.machine.kube
    assert kube is not None
    mounts, volumes = _volumes(name, kube, shm=True, shared=shared)
    # The Torch plugin sets PET_NNODES, PET_NPROC_PER_NODE (from numProcPerNode), PET_NODE_RANK
    # and PET_MASTER_ADDR/PORT, which torchrun reads as the defaults of its flags. A runtime
    # patch cannot set workingDir: train.py is given its run folder instead.
    command = [*torchrun(plan.machine), *plan.machine.launch.torchrun_args, *_script_args()]
    pod: dict[str, Any] = {
        **_placement(kube),
        "volumes": volumes,
        "containers": [{"name": TRAINER_JOB, "volumeMounts": mounts}],
    }
    spec: dict[str, Any] = {
        "runtimeRef": {
            "apiGroup": "trainer.kubeflow.org",
            "kind": "ClusterTrainingRuntime",
            "name": ir.target.runtime or kube.runtime,
        },
        "trainer": {
            "image": _image(ir, plan, kube),
            "command": command,
            "env": _env(ir, plan, True),
            "numNodes": plan.nodes,
            # Without it the plugin starts one process per CPU on CPU-only nodes.
            "numProcPerNode": plan.ranks_per_node,
            "resourcesPerNode": _resources(plan, kube),
        },
        "runtimePatches": [
            {
                "manager": _PATCH_MANAGER,
                "trainingRuntimeSpec": {
                    "template": {
                        "spec": {
                            "replicatedJobs": [
                                {
                                    "name": TRAINER_JOB,
                                    "template": {
                                        "spec": {
                                            "template": {
                                                "metadata": {"labels": _labels(ir)},
                                                "spec": pod,
                                            }
                                        }
                                    },
                                }
                            ]
                        }
                    }
                },
            }
        ],
        "activeDeadlineSeconds": ir.target.walltime_s,
    }
    job = {
        "apiVersion": "trainer.kubeflow.org/v1alpha1",
        "kind": "TrainJob",
        "metadata": {"name": name, "namespace": namespace, "labels": _workload_labels(ir)},
        "spec": spec,
    }
    return [job]


# ---- (c) Kubeflow Training Operator v1 PyTorchJob -----------------------------------------
def _pytorchjob(ir: IR, plan: Plan, name: str, namespace: str, shared: Mapping[str, str]) -> list[dict]:
    kube = plan.machine.kube
    assert kube is not None
    mounts, volumes = _volumes(name, kube, shm=True, shared=shared)
    # The operator sets MASTER_ADDR/PORT and PET_NNODES, PET_NPROC_PER_NODE, PET_NODE_RANK,
    # which torchrun reads as the defaults of its flags.
    args = [*plan.machine.launch.torchrun_args, *_script_args()]
    container = _container(ir, plan, kube, torchrun(plan.machine), args, mounts)
    container["name"] = "pytorch"  # the operator's webhook requires this name

    def replica(count: int) -> dict[str, Any]:
        return {
            "replicas": count,
            # The operator's code defaults to OnFailure, whatever the CRD text says.
            "restartPolicy": kube.restart_policy,
            "template": {
                "metadata": {"labels": _labels(ir)},
                "spec": {**_placement(kube), "containers": [container], "volumes": volumes},
            },
        }

    specs = {"Master": replica(1)}
    if plan.nodes > 1:
        specs["Worker"] = replica(plan.nodes - 1)
    job = {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "metadata": {"name": name, "namespace": namespace, "labels": _workload_labels(ir)},
        "spec": {
            "nprocPerNode": str(plan.ranks_per_node),  # a string in the CRD
            "runPolicy": {
                "cleanPodPolicy": "None",
                "backoffLimit": kube.backoff_limit,
                "activeDeadlineSeconds": ir.target.walltime_s,
                "ttlSecondsAfterFinished": kube.ttl_seconds,
            },
            "pytorchReplicaSpecs": specs,
        },
    }
    return [job]


# ---- (d) interLink: one pod = one sbatch job ---------------------------------------------
def _interlink_job(ir: IR, plan: Plan, name: str, namespace: str, shared: Mapping[str, str]) -> list[dict]:
    kube = plan.machine.kube
    assert kube is not None
    flags = _interlink_flags(ir, plan)  # one node, flags without whitespace: dtec.backends.checks
    launcher = " ".join(shlex.quote(w) for w in torchrun(plan.machine))
    # The plugin does not expand $(VAR) in args, so the command runs under bash -c.
    command = " ".join(
        [
            "cd",
            RUN_MOUNT,
            "&&",
            launcher,
            "--standalone",
            "--nnodes=1",
            f"--nproc_per_node={plan.ranks_per_node}",
            *(shlex.quote(a) for a in plan.machine.launch.torchrun_args),
            *(shlex.quote(a) for a in _script_args()),
        ]
    )
    mounts, volumes = _volumes(name, kube, shm=False, shared=shared)  # emptyDir media are ignored there
    container = _container(ir, plan, kube, ["/bin/bash", "-c"], [command], mounts)
    annotations = {**dict(kube.annotations), "slurm-job.vk.io/flags": " ".join(flags)}
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": namespace, "labels": _workload_labels(ir)},
        "spec": {
            "completions": 1,
            "parallelism": 1,
            "backoffLimit": kube.backoff_limit,
            "ttlSecondsAfterFinished": kube.ttl_seconds,
            "template": {
                "metadata": {"labels": _labels(ir), "annotations": annotations},
                "spec": {
                    **_placement(kube),
                    "automountServiceAccountToken": False,
                    "restartPolicy": kube.restart_policy,
                    "containers": [container],
                    "volumes": volumes,
                },
            },
        },
    }
    return [job]


def _interlink_flags(ir: IR, plan: Plan) -> list[str]:
    """Return the sbatch flags for the annotation; CPUs and memory come from the pod's limits."""
    from dtec.backends.slurm import slurm_time

    flags = []
    for key in ("partition", "qos", "account", "reservation"):
        value = getattr(ir.target, key)
        if value and INTERLINK_FLAG_UNSAFE.search(value):  # the planner reported it (DT215)
            raise ValueError(f"{value!r} cannot stand in interLink's flags")
        if value:
            flags.append(f"--{key}={shlex.quote(value)}")
    flags += [f"--time={slurm_time(ir.target.walltime_s)}", "--nodes=1", "--ntasks-per-node=1"]
    gpu = plan.machine.gpu_flag(plan.gpus_per_node, 1)
    if gpu:
        flags.append(gpu)
    if ir.target.exclusive:
        flags.append("--exclusive")
    return flags


# ---- a sweep's workers: one Indexed Job of worker pods, whatever the workload kind -----------
STORAGE_ENV = "DTEC_SWEEP_STORAGE"  # the study's storage URL in a worker pod, from its Secret
WORKER_FAILED_EXIT = 2  # a worker that cannot start (its storage unset or unreachable): no retry helps


def sweep_workers(ir: IR, plan: Plan, name: str, count: int, files: Mapping[str, str],
                  secret: str | None, retries: int) -> str:
    """Return the `workers.yaml` of a sweep (docs/sweeps.md): a ConfigMap with the study's files,
    and an Indexed Job of `count` pods, each a worker (`python -m dtec.study --pod`) that runs its
    trials' training in its own pod with one node's ranks.

    Every workload kind gets a plain batch/v1 Job: its pods are not a distributed training job
    but workers of one study. interLink's pods keep its annotations (one Slurm job each).
    `secret` (`<secret>/<key>`) gives the pods the storage URL from a Secret, never as text.
    """
    kube = plan.machine.kube
    assert kube is not None
    namespace = ir.target.namespace or kube.namespace
    interlink = kube.workload == "interlink-job"
    mounts, volumes = _volumes(name, kube, shm=not interlink, shared=files)
    container = _container(ir, plan, kube, ["python", "-m", "dtec.study"], ["--pod", BUNDLE_MOUNT, RUN_MOUNT], mounts)
    env = container["env"]
    if not interlink:  # its plugin does not read the downward API: Kubernetes' own variable serves
        env.insert(0, {"name": "JOB_COMPLETION_INDEX", "valueFrom": {"fieldRef": {"fieldPath": _INDEX_FIELD}}})
    if secret is not None:
        secret_name, _, key = secret.partition("/")
        env.append({"name": STORAGE_ENV, "valueFrom": {"secretKeyRef": {"name": secret_name, "key": key}}})
    template: dict[str, Any] = {"metadata": {"labels": _labels(ir)}, "spec": {}}
    pod = template["spec"]
    if interlink:
        template["metadata"]["annotations"] = {**dict(kube.annotations), "slurm-job.vk.io/flags": " ".join(_interlink_flags(ir, plan))}
        pod["automountServiceAccountToken"] = False
    pod.update({**_placement(kube), "restartPolicy": "Never", "containers": [container], "volumes": volumes})
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": namespace, "labels": _workload_labels(ir)},
        "spec": {
            "completionMode": "Indexed",
            "completions": count,
            "parallelism": count,
            # A worker that dies leaves its trial to the heartbeat, which fails it and runs it again;
            # the Job starts another worker in its place, as often as the study retries trials.
            "backoffLimit": retries * count,
            "podFailurePolicy": {
                "rules": [
                    {"action": "FailJob", "onExitCodes": {"containerName": kube.container_name, "operator": "In", "values": [WORKER_FAILED_EXIT]}},
                    {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},  # evicted, pre-empted
                ]
            },
            "ttlSecondsAfterFinished": kube.ttl_seconds,
            "template": template,
        },
    }
    configmap = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": f"{name}-bundle", "namespace": namespace, "labels": _labels(ir)},
        "data": {key: files[path] for key, path in _bundle_keys(files).items()},
    }
    return dump_yaml(json.loads(json.dumps([configmap, job])))
