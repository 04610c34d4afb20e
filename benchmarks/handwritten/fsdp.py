"""A minimal hand-written FSDP2 (`fully_shard`) loop: the reference for the generated FSDP script.

    torchrun --nproc_per_node=2 fsdp.py --bundle BUNDLE --steps 200

Process group, DistributedSampler, DataLoader, `fully_shard` on each unit (the bundle's
`FSDP_UNITS`, e.g. transformer layers) and on the root, optimizer and schedule, the step loop.
No logging, metrics, checkpoints or pre-emption handling. Workload from BUNDLE (`_workload.py`).
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
from torch.optim.lr_scheduler import LambdaLR
from torch.utils.data import DataLoader, DistributedSampler

from _workload import amp_dtype, load_bundle, lr_factor, make_optimizer, parse_args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv, __doc__.split("\n")[0])
    bundle = load_bundle(args.bundle)
    DATA, TRAIN = bundle.DATA, bundle.TRAIN
    assert TRAIN["grad_accum"] == 1, "the benchmark workloads use grad_accum = 1"

    cuda = torch.cuda.is_available()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if cuda:
        torch.cuda.set_device(local_rank)
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    dist.init_process_group("nccl" if cuda else "gloo")
    rank, world_size = dist.get_rank(), dist.get_world_size()

    torch.manual_seed(TRAIN["seed"])
    train_set = bundle.split(bundle.load_dataset(), TRAIN["seed"])[0]
    sampler = DistributedSampler(
        train_set,
        num_replicas=world_size,
        rank=rank,
        shuffle=DATA["shuffle"],
        seed=TRAIN["seed"],
        drop_last=True,
    )
    loader = DataLoader(
        train_set,
        batch_size=DATA["batch"],
        sampler=sampler,
        drop_last=True,
        num_workers=DATA["workers"],
        pin_memory=cuda,
        persistent_workers=DATA["workers"] > 0,
    )
    model = bundle.build_model(tuple(train_set[0][0].shape)).to(device)
    dtype = amp_dtype(TRAIN)
    options = {"mesh": init_device_mesh(device.type, (world_size,))}
    if dtype is not None:
        options["mp_policy"] = MixedPrecisionPolicy(param_dtype=dtype, reduce_dtype=torch.float32)
    for module in model.modules():
        if isinstance(module, bundle.FSDP_UNITS):
            fully_shard(module, **options)
    fully_shard(model, **options)
    optimizer = make_optimizer(model.parameters(), TRAIN["optimizer"])
    factor = lr_factor(TRAIN["scheduler"], args.steps, len(loader))
    scheduler = LambdaLR(optimizer, factor) if factor else None

    model.train()
    step, epoch = 0, 0
    while step < args.steps:
        sampler.set_epoch(epoch)
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            loss = bundle.loss_fn(model(x).float(), y)
            loss.backward()
            if TRAIN["clip_grad"]:
                torch.nn.utils.clip_grad_norm_(model.parameters(), TRAIN["clip_grad"])
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if scheduler is not None:
                scheduler.step()
            step += 1
            if step == args.steps:
                break
        epoch += 1

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    weights = get_model_state_dict(model, options=options)  # collective: every rank calls it
    if args.save and rank == 0:
        torch.save(weights, args.save)
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
