"""Machine profiles: shipped data, schema, loader, overrides, local detection, import weight."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from dataclasses import fields, replace
from pathlib import Path

import jsonschema
import pytest
from hypothesis import given
from fake_tools import fake_tool
from hypothesis import strategies as st

from dtec.machines import (
    OVERRIDE_KEYS, Comm, GpuRequest, Kube, Launch, MachineError, Node, Rules, Software,
    detect_local, from_dict, load_machines, summary_rows,
)
from dtec.lang.schema import MACHINE_OVERRIDES
from dtec.machines.check import machine_schema, problems
from dtec.machines.load import shipped_dir
from dtec.machines.model import check_setting
from dtec.machines.overrides import _NODE, _OTHER, _PARTITION, apply_overrides
from dtec.units import (
    DURATION_PATTERN, GIB, format_duration, parse_duration, parse_size, whole_units,
)

SHIPPED = sorted(shipped_dir().glob("*.toml"))
NAMES = {
    "lumi", "juwels-booster", "jureca-dc", "vega", "deucalion", "deucalion-gpu", "leonardo",
    "marenostrum5", "karolina", "meluxina", "local", "slurm", "kubernetes", "kubeflow", "kubeflow-v1", "interlink",
}


@pytest.fixture(autouse=True)
def _fresh_catalog(monkeypatch):
    monkeypatch.delenv("DTEC_MACHINES", raising=False)
    load_machines.cache_clear()
    yield
    load_machines.cache_clear()


@pytest.fixture
def catalog():
    return load_machines()


def validator():
    return jsonschema.Draft202012Validator(machine_schema())


# ---- shipped profiles ---------------------------------------------------------------------------


def test_every_machine_ships_and_loads(catalog):
    assert set(catalog.names()) == NAMES
    assert catalog.names() == sorted(catalog.names())
    assert [m.name for m in catalog] == catalog.names()  # reads every profile
    assert catalog.errors == []


def test_schema_is_a_strict_draft_2020_12_schema():
    schema = machine_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$id"] == "https://dtec.dev/schema/machine/1.json"
    assert schema["version"] == 1
    assert schema["additionalProperties"] is False


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_file_validates_against_schema(path):
    data = tomllib.loads(path.read_text())
    assert list(validator().iter_errors(data)) == []
    assert problems(data) == []


@pytest.mark.parametrize("name", sorted(NAMES))
def test_to_dict_is_valid_json_and_round_trips(catalog, name):
    machine = catalog.get(name)
    data = machine.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert list(validator().iter_errors(data)) == []
    assert from_dict(data, machine.source) == machine
    assert list(data) == list(machine.to_dict())


_TAG = re.compile(r"\[(V|S|U)\]|\bdtec:")
_SOURCE = re.compile(r"https?://\S+|\b[\w.-]+/[\w.-]+:[\w./{},-]+|\b[\w.-]+/[\w.-]+\b|\bdtec:")


def _split_comment(line: str) -> tuple[str, str]:
    quote = None
    escaped = False
    for i, ch in enumerate(line):
        if quote == '"' and ch == "\\" and not escaped:
            escaped = True
            continue
        if ch in "\"'" and not escaped:
            quote = None if quote == ch else (quote or ch)
        elif ch == "#" and quote is None:
            return line[:i], line[i + 1 :]
        escaped = False
    return line, ""


def _sourced(comment: str) -> bool:
    return bool(_TAG.search(comment) and _SOURCE.search(comment))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_every_value_names_its_source_and_confidence(path):
    """A value line carries a tag and a source itself, or sits under a comment that does."""
    lines = path.read_text().splitlines()
    missing = []
    for number, line in enumerate(lines, 1):
        code, comment = _split_comment(line)
        if not re.match(r"\s*[\"A-Za-z0-9_.-]+\s*=", code) or _sourced(comment):
            continue
        above = lines[: number - 1]
        covered = False
        for prev in reversed(above):
            if not prev.strip():
                break
            prev_code, prev_comment = _split_comment(prev)
            if not prev_code.strip() and _TAG.search(prev_comment):
                covered = _sourced(prev_comment)  # the nearest tagged comment decides
                break
        if not covered:
            missing.append(f"{path.name}:{number}: {line.strip()}")
    assert missing == []


def test_lumi(catalog):
    m = catalog.get("lumi")
    assert (m.node.gpus, m.node.usable_cpus, m.node.cpus_per_gpu) == (8, 56, 7)
    assert m.node.gpu_vendor == "amd" and m.node.bf16 and not m.node.tf32
    assert m.gpu_flag(8) == "--gpus-per-node=8"
    std = m.partition()
    assert std.name == "standard-g" and std.whole_node and std.max_nodes == 1024
    assert std.max_walltime_s == 2 * 86400
    assert m.partition("dev-g").max_jobs == 1 and m.partition("dev-g").debug
    assert m.launch.pattern == "srun-per-gpu" and "mask_cpu=" in m.launch.cpu_bind
    assert m.memory_flag(m.node.requestable_memory_gb) == "--mem=480G"
    # The user guide's PyTorch page, as of 2024-10 (the AI guide's scripts set none since 2026-05).
    assert (m.comm.env["NCCL_SOCKET_IFNAME"], m.comm.env["NCCL_NET_GDR_LEVEL"]) == ("hsn", "3")
    assert m.account_problem("project_465000001") is None
    assert "project_<id>" in m.account_problem("myproject")
    assert "needs an account" in m.account_problem(None)


def test_jsc_machines(catalog):
    for name in ("juwels-booster", "jureca-dc"):
        m = catalog.get(name)
        assert m.gpu_flag(4) == "--gres=gpu:4"
        assert m.launch.master_addr_suffix == "i"
        assert m.launch.torchrun == "torchrun_jsc"
        assert m.comm.env["NCCL_SOCKET_IFNAME"] == "ib0"
    assert catalog.get("juwels-booster").node.cpus_per_gpu == 12
    assert catalog.get("juwels-booster").partition("develbooster").debug


def test_deucalion_arm_is_cpu_only(catalog):
    m = catalog.get("deucalion")
    assert m.node.gpus == 0 and m.node.gpu_vendor == "none" and m.node.cpu_arch == "aarch64"
    assert not (m.node.bf16 or m.node.fp16)
    assert m.backend() == "gloo" and m.gpu_flag(1) is None
    assert m.account_problem("proj123a") is None and m.account_problem("proj123g")
    dev = m.partition("dev-arm")
    assert m.internet(dev) and "HF_HUB_OFFLINE" not in m.environment(dev)
    assert m.environment(m.partition())["HF_HUB_OFFLINE"] == "1"


def test_deucalion_gpu_node_kinds(catalog):
    m = catalog.get("deucalion-gpu")
    assert m.partition("normal-a100-40").node.gpu_memory_gb == 40
    big = m.partition("normal-a100-80")
    assert big.node.gpu_memory_gb == 80 and big.node.gpus == 4 and big.node.cpus == 128
    assert m.gpu_flag(4, nodes=2) == "--gpus=8"


def test_marenostrum5_selects_by_qos(catalog):
    m = catalog.get("marenostrum5")
    acc = m.partition()
    assert acc.qos == "acc_ehpc" and acc.flags() == ["--qos=acc_ehpc"]
    assert m.memory_flag(500) is None
    assert m.node.cpus_per_gpu == 20 and m.node.fp8
    assert m.partition("acc_debug").max_jobs == 1
    assert catalog.get("mn5") is m


def test_leonardo_and_meluxina_qos_flags(catalog):
    leo = catalog.get("leonardo")
    assert leo.partition("boost_qos_dbg").flags() == [
        "--partition=boost_usr_prod", "--qos=boost_qos_dbg"]
    assert leo.partition("boost_qos_dbg").max_walltime_s == 1800
    mel = catalog.get("meluxina")
    assert mel.partition("test").name == "gpu-test"  # found by QoS name
    assert mel.partition("test").flags() == ["--partition=gpu", "--qos=test"]


def test_karolina_and_vega(catalog):
    k = catalog.get("karolina")
    assert k.node.gpus == 8 and k.node.cpus_per_gpu == 16 and k.launch.gpu_bind == "single:1"
    assert k.account_problem("OPEN-30-19") is None
    v = catalog.get("vega")
    assert v.gpu_request.required and v.gpu_flag(4) == "--gpus-per-node=4"


def test_kubernetes_kinds(catalog):
    kube = catalog.get("kubernetes").kube
    assert kube.workload == "indexed-job" and kube.gpu_resource == "nvidia.com/gpu"
    flow = catalog.get("kubeflow")
    assert flow.kube.workload == "trainjob" and flow.kube.runtime == "torch-distributed"
    assert flow.kube.container_name == "node" and flow.launch.rendezvous == "env"
    v1 = catalog.get("pytorchjob")
    assert v1.name == "kubeflow-v1" and v1.kube.workload == "pytorchjob" and v1.kube.container_name == "pytorch"
    il = catalog.get("interlink")
    assert not il.kube.pod_to_pod and il.kube.shm_size_gb == 0 and il.kube.limits_required
    assert il.launch.rendezvous == "standalone" and il.gpu_flag(4) == "--gres=gpu:4"
    keys = [t["key"] for t in il.kube.tolerations]
    assert "virtual-node.interlink/no-schedule" in keys
    assert il.kube.node_selector["virtual-node.interlink/type"] == "virtual-kubelet"
    assert catalog.get("lumi").kube is None


# ---- user folders -------------------------------------------------------------------------------

SITE = """
format = 1
name = "{name}"
title = "{title}"
scheduler = "slurm"
[node]
cpus = 64
memory_gb = 256
gpus = 2
gpu_vendor = "nvidia"
[[partitions]]
name = "gpu"
max_walltime = "12h"
"""


def _site(tmp_path: Path) -> Path:
    folder = tmp_path / "site"
    folder.mkdir()
    (folder / "mycluster.toml").write_text(SITE.format(name="mycluster", title="Ours"))
    (folder / "lumi.toml").write_text(SITE.format(name="lumi", title="Our LUMI"))
    return folder


def test_user_folder_adds_and_replaces(tmp_path, catalog):
    folder = _site(tmp_path)
    merged = load_machines([folder])
    assert merged.errors == []
    assert "mycluster" in merged.names() and merged.get("mycluster").partition().name == "gpu"
    assert merged.get("lumi").title == "Our LUMI"
    assert merged.get("lumi").source == folder / "lumi.toml"
    assert merged.replaced("lumi") == (shipped_dir() / "lumi.toml",)
    assert catalog.get("lumi").title.startswith("LUMI-G")  # the cached shipped catalog is untouched


def test_env_var_folders_load_before_extra_dirs(tmp_path, monkeypatch):
    folder = _site(tmp_path)
    later = tmp_path / "later"
    later.mkdir()
    (later / "lumi.toml").write_text(SITE.format(name="lumi", title="Later LUMI"))
    monkeypatch.setenv("DTEC_MACHINES", os.pathsep.join([str(folder), str(tmp_path / "none")]))
    via_env = load_machines()
    assert via_env.get("lumi").title == "Our LUMI" and "mycluster" in via_env
    assert [e.path for e in via_env.errors] == [tmp_path / "none"]
    assert load_machines([later]).get("lumi").title == "Later LUMI"


def test_broken_user_profiles_are_reported_not_raised(tmp_path):
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "lumi.toml").write_text("name = 'lumi'\n[node\n")
    (folder / "typo.toml").write_text(
        SITE.format(name="typo", title="T").replace("gpus = 2", "gpu = 2"))
    (folder / "other.toml").write_text(SITE.format(name="wrong", title="T"))
    catalog = load_machines([folder])
    by_file = {e.path.name: e for e in catalog.errors}
    assert set(by_file) == {"lumi.toml", "typo.toml", "other.toml"}
    bad_toml = str(by_file["lumi.toml"])
    assert "not valid TOML" in bad_toml and str(folder) in bad_toml
    typo = by_file["typo.toml"]
    assert any("node.gpus: missing required key" in p for p in typo.problems)
    assert any("unknown key `gpu`; did you mean `gpus`?" in p for p in typo.problems)
    assert "must match the file name" in by_file["other.toml"].message
    assert catalog.get("lumi").source == shipped_dir() / "lumi.toml"


def test_suggest_and_aliases(catalog):
    assert catalog.suggest("lumì") == "lumi"
    assert catalog.suggest("lumii") == "lumi"
    assert catalog.suggest("LUMI") == "lumi"
    assert catalog.suggest("juwels-boster") == "juwels-booster"
    assert catalog.suggest("mn5-acc") == "marenostrum5"
    assert catalog.suggest("zzzzzz") is None
    assert catalog.get("k8s").name == "kubernetes" and "deucalion-arm" in catalog


def test_summary_rows(catalog):
    rows = {r["name"]: r for r in summary_rows(catalog)}
    assert list(rows) == catalog.names()
    assert rows["lumi"]["gpus_per_node"] == 8 and rows["lumi"]["cpus_per_node"] == 56
    assert rows["lumi"]["partitions"][0] == "standard-g"
    assert rows["lumi"]["source"].endswith("lumi.toml")
    json.dumps(rows)


# ---- overrides ----------------------------------------------------------------------------------


def test_generic_slurm_takes_partition_and_sizes_from_target(catalog):
    target = {"partition": "debug", "account": "ignored",
              "machine": {"cpus": 2, "gpus": 0, "memory": 4 * 2**30, "max_nodes": 1,
                          "max_walltime": 3600}}
    m = apply_overrides(catalog.get("slurm"), target)
    p = m.partition()
    assert p.name == "debug" and p.flags() == ["--partition=debug"]
    assert (p.node.cpus, p.node.gpus, p.node.memory_gb) == (2, 0, 4)
    assert (p.max_nodes, p.max_walltime_s) == (1, 3600)
    assert m.backend(p) == "gloo" and m.gpu_flag(p.node.gpus) is None
    assert m.partition("default") is not None and not m.partition("default").default
    assert catalog.get("slurm").partition().name == "default"  # the original is unchanged
    flat = apply_overrides(catalog.get("slurm"), {"partition": "debug", "cpus": 2, "gpus": 0})
    assert flat.partition().node.cpus == 2


def test_overrides_on_a_named_machine(catalog):
    lumi = apply_overrides(catalog.get("lumi"), {"partition": "dev-g",
                                               "machine": {"max_walltime": "1h", "bf16": False}})
    dev = lumi.partition()
    assert dev.name == "dev-g" and dev.max_walltime_s == 3600 and not dev.node.bf16
    assert [p.name for p in lumi.partitions if p.default] == ["dev-g"]
    leo = apply_overrides(catalog.get("leonardo"), {"partition": "boost_qos_dbg"})
    assert leo.partition().qos == "boost_qos_dbg"
    lprod = apply_overrides(catalog.get("leonardo"), {"partition": "boost_usr_prod",
                                                    "qos": "boost_qos_lprod"})
    assert lprod.partition().name == "boost_qos_lprod"
    assert lprod.partition().max_walltime_s == 4 * 86400
    custom = apply_overrides(catalog.get("leonardo"), {"qos": "special", "max_nodes": 5})
    assert custom.partition().flags() == ["--partition=boost_usr_prod", "--qos=special"]
    assert custom.partition().max_nodes == 5
    env = apply_overrides(catalog.get("vega"), {"env": ["NCCL_DEBUG=INFO"], "internet": True})
    assert env.environment()["NCCL_DEBUG"] == "INFO" and "HF_HUB_OFFLINE" not in env.environment()
    big = apply_overrides(catalog.get("deucalion-gpu"), {"gpu_memory": "80GiB"})
    assert big.partition("normal-a100-40").node.gpu_memory_gb == 80
    assert big.to_dict()["node"]["gpu_memory_gb"] == 80


@pytest.mark.parametrize(("overrides", "message"), [
    ({"partition": "standrd-g"}, "did you mean `standard-g`?"),
    ({"machine": {"gpu": 4}}, "did you mean `gpus`?"),
    ({"machine": {"cpus": "many"}}, "expected an integer"),
    ({"machine": {"max_walltime": "2 weeks"}}, "expected a duration"),
    ({"machine": {"launch": "mpirun"}}, "expected one of"),
    ({"machine": {"cpus": 8}}, "cpus_per_gpu 7 × 8 GPUs exceeds"),
    ({"machine": {"namespace": "ml"}}, "Kubernetes kinds only"),
    ({"machine": {"gpu_flag": "--gres=gpu:{n}\ntouch PWNED"}}, "holds a line break"),
    ({"machine": {"memory_flag": "--mem={gb}G\ntouch PWNED"}}, "holds a line break"),
    ({"machine": {"gpu_flag": "{x}"}}, "`{x}` is not a placeholder; use `{n}` or `{total}`"),
    ({"machine": {"memory_flag": "--mem={GB}G"}}, "`{GB}` is not a placeholder"),
    ({"machine": {"gpu_flag": "${IFS}"}}, "holds `$`"),
    ({"machine": {"torchrun": "torch'run"}}, "`torchrun`: is not a command line (no closing"),
    ({"machine": {"torchrun": "torchrun\\"}}, "`torchrun`: is not a command line (no escaped"),
    ({"machine": {"cpus": 0}}, "must be at least 1"),
    ({"machine": {"gpu_flag": "--gpus"}}, "{n}"),
    ({"machine": {"env": ["NO_EQUALS"]}}, "expected `NAME=value`"),
    ({"machine": {"env": ["1X=2"]}}, "`1X` is not an environment variable name"),
])
def test_bad_overrides_raise_clear_errors(catalog, overrides, message):
    with pytest.raises(MachineError, match=re.escape(message)) as raised:
        apply_overrides(catalog.get("lumi"), overrides)
    assert raised.value.path is None  # the target's values are at fault, not the shipped profile


@pytest.mark.parametrize(("key", "value", "problem"), [
    ("gpu_flag", "--gres=gpu:{n}", None),
    ("gpu_flag", "--gpus={total}", None),
    ("gpu_flag", "", None),
    ("memory_flag", "--mem={mb}M", None),
    ("torchrun", "python -m torch.distributed.run", None),
    ("cpu_bind", "$(anything: quoted where it is used)", None),
    ("gpu_flag", "--gpus=4", "needs `{n}` or `{total}`"),
    ("gpu_flag", "gpu:{n}", "must be an sbatch option starting with `-`"),
    ("gpu_flag", "--gres=gpu:{n} --exclusive", "holds a space"),
    ("gpu_flag", "--gres=gpu:{n}\\", "holds `\\`"),
    ("gpu_flag", "--gres=gpu:{n\r}", "the control character U+000D"),
    ("gpu_flag", "--gres=gpu:{n", "unmatched `{` or `}`"),
    ("gpu_flag", "--gres=gpu:{}", "`{}` is not a placeholder"),
    ("gpu_flag", "--gres=gpu:{n:3}", "`{n:3}` is not a placeholder"),
    ("gpu_flag", "--x={gb}", "`{gb}` is not a placeholder; use `{n}` or `{total}`"),
    ("memory_flag", "--mem={n}G", "`{n}` is not a placeholder; use `{gb}` or `{mb}`"),
    ("memory_flag", "--mem=0", "needs `{gb}` or `{mb}`"),
    ("torchrun", " ", "names no command"),
    ("torchrun", "torchrun\n", "a line break"),
])
def test_check_setting(key, value, problem):
    found = check_setting(key, value)
    assert found is None if problem is None else problem in (found or ""), found


@pytest.mark.parametrize(("section", "key", "value", "message"), [
    ("gpu_request", "flag", "--gres=gpu:{n}\ntouch PWNED", "gpu_request.flag: holds a line break"),
    ("launch", "memory_flag", "--mem={GB}G", "launch.memory_flag: `{GB}` is not a placeholder"),
    ("launch", "torchrun", "torch'run", "launch.torchrun: is not a command line"),
    ("software", "container_command", "run\\", "software.container_command: is not a command"),
])
def test_profiles_with_unsafe_launcher_settings_are_refused(section, key, value, message):
    data = _valid()
    data[section] = {key: value}
    with pytest.raises(MachineError, match=re.escape(message)):
        from_dict(data)


def test_memory_flag_rounds_up_and_never_asks_for_zero(catalog):
    leo = catalog.get("leonardo")  # --mem={gb}G
    assert leo.memory_flag(0.477) == "--mem=1G"  # 512MB: 0G would be the whole node
    assert leo.memory_flag(0) == "--mem=1G"
    assert leo.memory_flag(120.2) == "--mem=121G"
    assert leo.memory_flag(480 / 3) == "--mem=160G"  # float noise does not round up
    assert leo.memory_flag(14.9012, most_gib=14.9012) == "--mem=14G"  # never above the node
    mb = apply_overrides(leo, {"memory_flag": "--mem={mb}M"})
    assert mb.memory_flag(0.4771) == "--mem=489M" and mb.memory_flag(1e-9) == "--mem=1M"
    assert whole_units(0.5, 1, most_gib=0.5) == 1


def test_override_keys_are_documented_and_handled():
    assert set(OVERRIDE_KEYS.values()) <= {"int", "bool", "size", "duration", "str", "list[str]"}
    handled = set(_NODE) | set(_PARTITION) | set(_OTHER) | {"partition", "env"}
    assert handled == set(OVERRIDE_KEYS)
    # docs/machines.md's table of `machine { }` keys is exactly what the block accepts; the
    # other override keys are named as target keys.
    section = DOCS.read_text().split("## Target-block overrides", 1)[1].split("\n## ", 1)[0]
    table = set(re.findall(r"^\| `(\w+)` \|", section, re.M))
    assert table == set(MACHINE_OVERRIDES)
    target_keys = set(OVERRIDE_KEYS) - set(MACHINE_OVERRIDES)
    named = section.split("written in the target block itself", 1)[0]
    assert target_keys and all(f"`{key}`" in named for key in target_keys)


DOCS = Path(__file__).resolve().parents[1] / "docs" / "machines.md"


def _schema_keys(schema: dict) -> set[str]:
    keys = set()
    for value in schema.values() if isinstance(schema, dict) else schema:
        if isinstance(value, (dict, list)):
            keys |= _schema_keys(value)
    if isinstance(schema, dict) and isinstance(schema.get("properties"), dict):
        keys |= set(schema["properties"])
    return keys


def test_docs_describe_every_key_and_machine(catalog):
    text = DOCS.read_text()
    assert {k for k in _schema_keys(machine_schema()) if f"`{k}`" not in text} == set()
    table = text.split("## Shipped machines", 1)[1]
    assert {n for n in catalog.names() if f"| `{n}` |" not in table} == set()
    for m in catalog:
        if m.scheduler == "slurm" and m.node.gpus:
            assert f"| `{m.name}` | slurm | {m.node.gpus}" in table


def test_docs_minimal_profile_loads():
    block = DOCS.read_text().split("## Adding a machine at a site", 1)[1].split("```toml\n", 1)[1].split("```", 1)[0]
    machine = from_dict(tomllib.loads(block))
    assert machine.name == "mycluster" and machine.partition().max_walltime_s == 86400
    juwels = apply_overrides(load_machines().get("juwels-booster"), {"memory": "256GiB"})
    assert juwels.node.requestable_memory_gb == 236


# ---- checker, schema defaults, units ------------------------------------------------------------


def _valid() -> dict:
    return tomllib.loads(SITE.format(name="x", title="X"))


BROKEN = [
    lambda d: d.pop("format"),
    lambda d: d.update(format=2),
    lambda d: d.update(scheduler="pbs"),
    lambda d: d["node"].update(gpus="4"),
    lambda d: d["node"].update(gpus=True),
    lambda d: d["node"].update(memory_gb=0),
    lambda d: d["node"].update(gpu_vendor="nvdia"),
    lambda d: d["partitions"][0].update(max_walltime="2 days"),
    lambda d: d["partitions"][0].update(max_walltime=-1),
    lambda d: d.update(partitions=[]),
    lambda d: d.update(kube={"workload": "indexed-job"}),
    lambda d: d.update(scheduler="kubernetes"),
    lambda d: d.update(launch={"master_port": 70000}),
    lambda d: d.update(gpu_request={"flag": "--gpus"}),
    lambda d: d.update(comm={"env": {"1BAD": "x"}}),
    lambda d: d.update(comm={"env": {"GOOD": 1}}),
    lambda d: d.update(extra=1),
    lambda d: d.update(name="Has Caps"),
]


@pytest.mark.parametrize("breaks", BROKEN)
def test_checker_agrees_with_jsonschema(breaks):
    data = _valid()
    assert problems(data) == [] and validator().is_valid(data)
    breaks(data)
    assert problems(data) != []
    assert not validator().is_valid(data)


def test_schema_defaults_match_the_dataclasses():
    defs = machine_schema()["$defs"]
    sections = {"nodeFields": Node, "gpuRequest": GpuRequest, "launch": Launch, "comm": Comm,
                "software": Software, "rules": Rules, "kube": Kube}
    for name, cls in sections.items():
        props = defs[name]["properties"]
        assert {f.name for f in fields(cls)} == set(props), name
        for f in fields(cls):
            if "default" in props[f.name]:
                default = f.default_factory() if callable(f.default_factory) else f.default
                expected = props[f.name]["default"]
                assert json.loads(json.dumps(default, default=list)) == expected or (
                    str(default) == str(expected)), (name, f.name)


@given(st.integers(min_value=0, max_value=10**9))
def test_durations_round_trip(seconds):
    assert parse_duration(format_duration(seconds)) == seconds


def test_units():
    assert parse_duration("30min") == 1800 and parse_duration("2d") == 172800
    assert parse_duration("2000ms") == 2
    assert parse_size("16GB") == 16 * 10**9 and parse_size("480GiB") == parse_size("480Gi") == 480 * GIB
    for bad in ("30m", "1.5h", True, "h", "1500ms"):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_profile_durations_take_the_units_of_a_blueprint():
    pattern = machine_schema()["$defs"]["duration"]["anyOf"][1]["pattern"]
    assert pattern == DURATION_PATTERN  # built from the one table, dtec.units.DURATIONS
    assert from_dict(_walltime_profile("7200000ms")).partition().max_walltime_s == 7200
    with pytest.raises(MachineError, match="max_walltime: durations are whole seconds"):
        from_dict(_walltime_profile("1500ms"))


def _walltime_profile(walltime: str) -> dict:
    return {"format": 1, "name": "w", "title": "W", "scheduler": "slurm",
            "node": {"cpus": 2, "memory_gb": 4, "gpus": 0},
            "partitions": [{"name": "p", "max_walltime": walltime}]}


# ---- this computer ------------------------------------------------------------------------------


def test_detect_local_here():
    m = detect_local()
    assert m.name == "local" and m.node.cpus >= 1 and m.node.memory_gb > 0
    assert m.partition().node == m.node
    if not any(Path(d, tool).exists() for d in os.environ.get("PATH", "").split(os.pathsep)
               for tool in ("nvidia-smi", "rocm-smi")):
        assert m.node.gpus == 0 and m.backend() == "gloo"


def test_detect_local_reads_nvidia_smi(tmp_path, monkeypatch):
    row = "NVIDIA A100-SXM4-40GB, 40960, 8.0"
    fake_tool(tmp_path, "nvidia-smi", f'for i in 0 1 2 3; do echo "{row}"; done\n')
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    node = detect_local().node
    assert (node.gpus, node.gpu_vendor, node.gpu_memory_gb) == (4, "nvidia", 40)
    assert node.bf16 and node.tf32 and not node.fp8
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    assert detect_local().node.gpus == 2
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert detect_local().node.gpus == 0


def test_detect_local_reads_rocm_smi(tmp_path, monkeypatch):
    fake_tool(tmp_path, "nvidia-smi", "exit 9\n")
    fake_tool(tmp_path, "rocm-smi", 'echo "GPU[0]  : Card series:  AMD Instinct MI250X"\n'
                                     'echo "GPU[1]  : Card series:  AMD Instinct MI250X"\n')
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    for var in ("ROCR_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES"):
        monkeypatch.delenv(var, raising=False)
    node = detect_local().node
    assert (node.gpus, node.gpu_vendor, node.gpu_model) == (2, "amd", "AMD Instinct MI250X")


def test_import_is_light():
    code = ("import sys, dtec.machines; heavy = {'pydantic', 'jsonschema', 'networkx', 'jinja2', "
            "'torch', 'lark', 'yaml'}; print(sorted(heavy & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-X", "importtime", "-c", code], capture_output=True,
                         text=True, check=True, cwd=shipped_dir().parents[1])
    assert out.stdout.strip() == "[]"


# ---- site profiles that extend shipped ones; `dtec targets` ---------------------------------------
def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dtec", *args], capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), **(env or {})},
    )


EXTENDED = """format = 1
extends = "juwels-booster"

[rules]
account_pattern = "ourproj[0-9]*"
"""


def test_a_site_profile_extends_a_shipped_one(tmp_path):
    (tmp_path / "our-juwels.toml").write_text(EXTENDED)
    catalog = load_machines((tmp_path,))
    ours, shipped = catalog.get("our-juwels"), catalog.get("juwels-booster")
    assert catalog.errors == []
    assert ours.rules.account_pattern == "ourproj[0-9]*"
    assert replace(ours, name=shipped.name, aliases=shipped.aliases, rules=shipped.rules) == shipped
    assert ours.aliases == () and catalog.get("juwels").name == "juwels-booster"


def test_an_extended_profile_is_checked_with_its_base(tmp_path):
    (tmp_path / "a.toml").write_text('format = 1\nextends = "juwels-boster"\n')
    (tmp_path / "b.toml").write_text(EXTENDED.replace('[rules]', '[node]\ncpus = 8\n\n[rules]'))
    errors = {e.path.name: e for e in load_machines((tmp_path,)).errors}
    assert errors["a.toml"].located() == [
        f"{tmp_path / 'a.toml'}:2: extends: no profile `juwels-boster` was read before this one "
        "(shipped, or in an earlier folder)"
    ]
    # 48 usable cores inherited, 8 given: the conflict is shown at the value the file sets.
    assert errors["b.toml"].lines[0] == 5 and "usable_cpus 48 exceeds cpus 8" in errors["b.toml"].problems[0]


BROKEN_PROFILE = """format = 1
name = "broken"
title = "Broken"
scheduler = "slurm"

[node]
cpus = 8
memory_gb = 16
gpus = "4"

[[partitions]]
name = "a"

[[partitions]]
name = "b"
typo = 1
"""


def test_targets_check_prints_every_problem_with_its_line(tmp_path):
    (tmp_path / "broken.toml").write_text(BROKEN_PROFILE)
    (tmp_path / "our-juwels.toml").write_text(EXTENDED)
    run = _cli("targets", "check", str(tmp_path))
    assert run.returncode == 1
    assert run.stdout.splitlines() == [
        f"{tmp_path / 'broken.toml'}:9: node.gpus: expected an integer, got string `\"4\"`",
        f"{tmp_path / 'broken.toml'}:16: partitions[1].typo: unknown key `typo`",
    ]
    (tmp_path / "broken.toml").unlink()
    run = _cli("targets", "check", str(tmp_path))
    assert (run.returncode, run.stdout) == (0, "1 profile(s) checked, no problems\n")


def test_targets_table_fits_80_columns_and_names_machines_in_full(catalog):
    run = _cli("targets", env={"COLUMNS": "80"})
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert max(map(len, lines)) <= 80
    names = [line.split()[0] for line in lines[2:] if line[:1].strip()]  # wrapped cells start blank
    assert names == catalog.names()
    assert "[" not in run.stdout and "'" not in run.stdout  # no Python list reprs
    juwels = next(line for line in lines if line.startswith("juwels-booster "))
    assert "booster*, develbooster," in juwels  # the default partition starred, no list repr
    bad = _cli("targets", "--format", "yaml")
    assert bad.returncode == 2 and "choose table or json" in bad.stderr


def test_local_row_describes_this_computer():
    run = _cli("targets", "--format", "json")
    row = next(r for r in json.loads(run.stdout) if r["name"] == "local")
    assert row["cpus_per_node"] == len(os.sched_getaffinity(0))
    with open("/proc/meminfo") as f:
        total_kib = int(next(line for line in f if line.startswith("MemTotal:")).split()[1])
    assert abs(row["memory_gb"] - total_kib / 2**20) < 1
