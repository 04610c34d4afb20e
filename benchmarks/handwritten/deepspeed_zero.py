"""A minimal hand-written DeepSpeed ZeRO loop: the reference for the generated DeepSpeed script.

    DS_ACCELERATOR=cpu torchrun --nproc_per_node=2 deepspeed_zero.py --bundle BUNDLE --steps 200

`deepspeed.initialize` with the torch optimizer and schedule and a config of the same batch,
accumulation, ZeRO stage (the bundle's), clipping and precision; DistributedSampler and DataLoader;
`engine.backward`, `engine.step`. No logging, metrics, checkpoints or pre-emption handling.
Workload from BUNDLE (`_workload.py`). (Not named `deepspeed.py`: that would shadow the package.)
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch.optim.lr_scheduler import LambdaLR
from torch.utils.data import DataLoader, DistributedSampler

from _workload import amp_dtype, load_bundle, lr_factor, make_optimizer, parse_args

if not torch.cuda.is_available():
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
import deepspeed  # noqa: E402


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
    deepspeed.init_distributed("nccl" if cuda else "gloo")
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
    model = bundle.build_model(tuple(train_set[0][0].shape))
    optimizer = make_optimizer(model.parameters(), TRAIN["optimizer"])
    factor = lr_factor(TRAIN["scheduler"], args.steps, len(loader))
    config = {
        "train_micro_batch_size_per_gpu": DATA["batch"],
        "gradient_accumulation_steps": 1,
        "zero_optimization": {"stage": bundle.STRATEGY["zero"]},
        "gradient_clipping": TRAIN["clip_grad"] or 0.0,
        "steps_per_print": 2**31 - 1,
    }
    if amp_dtype(TRAIN) == torch.bfloat16:
        config["bf16"] = {"enabled": True}
    engine, _, _, _ = deepspeed.initialize(
        model=model,
        optimizer=optimizer,
        config=config,
        lr_scheduler=LambdaLR(optimizer, factor) if factor else None,
    )

    engine.train()
    step, epoch = 0, 0
    while step < args.steps:
        sampler.set_epoch(epoch)
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            loss = bundle.loss_fn(engine(x).float(), y)
            engine.backward(loss)
            engine.step()
            step += 1
            if step == args.steps:
                break
        epoch += 1

    parameters = list(engine.module.parameters())
    with deepspeed.zero.GatheredParameters(parameters, modifier_rank=None):  # ZeRO-3: all ranks
        if args.save and rank == 0:
            weights = {k: v.detach().cpu().clone() for k, v in engine.module.state_dict().items()}
            torch.save(weights, args.save)
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
