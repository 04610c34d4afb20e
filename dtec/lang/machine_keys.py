"""The keys a target's `machine { }` block may set, by kind: one list for lang/ and machines/."""

# The one list of keys a target's `machine { }` block (or the target itself) may set: key → type.
# Sizes arrive in bytes and durations in seconds; strings such as "16GB" or "1h" are also taken.
OVERRIDE_KEYS: dict[str, str] = {
    # where the job goes
    "partition": "str",
    "qos": "str",
    "max_nodes": "int",
    "max_walltime": "duration",
    "whole_node": "bool",
    # the node
    "cpus": "int",
    "usable_cpus": "int",
    "threads_per_core": "int",
    "memory": "size",
    "requestable_memory": "size",
    "gpus": "int",
    "gpu_model": "str",
    "gpu_vendor": "str",
    "gpu_memory": "size",
    "bf16": "bool",
    "fp16": "bool",
    "tf32": "bool",
    "fp8": "bool",
    "cpus_per_gpu": "int",
    # requests and launch
    "gpu_flag": "str",
    "memory_flag": "str",
    "launch": "str",
    "cpu_bind": "str",
    "torchrun": "str",
    "master_addr_suffix": "str",
    "master_port": "int",
    # communication and software
    "backend": "str",
    "env": "list[str]",
    "module_use": "list[str]",
    "modules": "list[str]",
    "container": "str",
    "image": "str",
    # site rules
    "internet": "bool",
    "exclusive": "bool",
    # Kubernetes kinds
    "namespace": "str",
    "gpu_resource": "str",
    "shm_size": "size",
}

# Settings only a Slurm job script reads (or `dtec env`, which is for Slurm machines): on another
# kind of machine they would be accepted and do nothing, so the planner refuses them there.
SLURM_ONLY_KEYS = frozenset(
    {"memory_flag", "launch", "cpu_bind", "master_addr_suffix", "master_port", "module_use", "modules", "container"}
)
# What each other kind does not read either: interLink's Slurm flags carry the GPU request, the
# Kubernetes pods start torchrun, and run.sh starts torch.distributed.run itself.
UNUSED_KEYS = {
    "interlink": SLURM_ONLY_KEYS,
    "kubernetes": SLURM_ONLY_KEYS | {"gpu_flag"},
    "kubeflow": SLURM_ONLY_KEYS | {"gpu_flag"},
    "local": SLURM_ONLY_KEYS | {"gpu_flag", "torchrun"},
}
