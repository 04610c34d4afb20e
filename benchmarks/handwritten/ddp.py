"""A minimal hand-written DistributedDataParallel loop: the reference the generated script is held to.

    torchrun --nproc_per_node=2 ddp.py --bundle BUNDLE --steps 200

What an expert writes for a throughput run: process group, DistributedSampler, DataLoader, DDP,
optimizer and schedule, the step loop; no logging, metrics, checkpoints or pre-emption handling.
The model, data, loss and hyper-parameters come from BUNDLE (see `_workload.py`). For a bundle
whose strategy is `single` it trains the plain model in one process, without DDP.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.optim.lr_scheduler import LambdaLR
from torch.utils.data import DataLoader, DistributedSampler

from _workload import amp_dtype, load_bundle, lr_factor, make_optimizer, parse_args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv, __doc__.split("\n")[0])
    bundle = load_bundle(args.bundle)
    DATA, TRAIN = bundle.DATA, bundle.TRAIN
    assert TRAIN["grad_accum"] == 1, "the benchmark workloads use grad_accum = 1"
    distributed = bundle.STRATEGY["kind"] == "ddp"

    cuda = torch.cuda.is_available()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if cuda:
        torch.cuda.set_device(local_rank)
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    if distributed:
        dist.init_process_group("nccl" if cuda else "gloo")
    rank = dist.get_rank() if distributed else 0
    world_size = dist.get_world_size() if distributed else 1

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
    if distributed:
        model = DDP(model, device_ids=[local_rank] if cuda else None)
    optimizer = make_optimizer(model.parameters(), TRAIN["optimizer"])
    factor = lr_factor(TRAIN["scheduler"], args.steps, len(loader))
    scheduler = LambdaLR(optimizer, factor) if factor else None
    dtype = amp_dtype(TRAIN)

    model.train()
    step, epoch = 0, 0
    while step < args.steps:
        sampler.set_epoch(epoch)
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                pred = model(x)
            loss = bundle.loss_fn(pred.float(), y)
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

    if args.save and rank == 0:
        torch.save((model.module if distributed else model).state_dict(), args.save)
    if distributed:
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
