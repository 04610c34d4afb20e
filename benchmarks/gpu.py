"""GPU: the transformer blueprint's generated script against the hand-written loop, bf16, with MFU.

    python -m benchmarks.gpu [--size large|shipped] [--rounds 3] [--out DIR]
    python -m benchmarks.gpu --dry-run      # the same logic at toy sizes, fp32, on the CPU

Workload: `blueprints/pulsar-classification.twin` (a transformer encoder classifier) compiled for
`local` on the GPU machine, one rank per GPU (`single` on one GPU, DDP on several), precision bf16.
`--size large` (default) widens it to fill a modern GPU (dim 1024, 8 layers, 16 heads, 256 tokens,
batch 64: about 100 M parameters); `--size shipped` keeps the blueprint's own small model
(dim 128, 4 layers, 64 tokens, batch 128), which is launch-bound on a large GPU. Variants: `hand`
(`handwritten/ddp.py`) and `dtec`, run one after the other, alternating, `--rounds` times; both
synchronise the GPU once at the start and once at the end of the measured window (`--sync-at` in
the harness) and nowhere else beyond what their own code does.

MFU (model FLOPs utilisation) = samples/s x training FLOPs per sample / the card's peak dense bf16
FLOP/s. FLOPs per sample = 6 x (weights of the matrix products) x tokens + 12 x layers x tokens^2
x dim (attention scores and values, forward and backward); dropout, norms and softmax are not
counted. Peak from the table below by device name, or `BENCH_PEAK_TFLOPS`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from benchmarks import training  # noqa: E402
from benchmarks.common import BLUEPRINTS, ROOT, log, machine, target  # noqa: E402

BLUEPRINT = BLUEPRINTS / "pulsar-classification.twin"
# Dense bf16 tensor-core peak, TFLOP/s, by a substring of torch.cuda.get_device_name() (first match).
PEAK_TFLOPS = [
    ("H200", 989.0),
    ("H100 PCIe", 756.0),
    ("H100", 989.0),
    ("GH200", 989.0),
    ("B200", 2250.0),
    ("A100", 312.0),
    ("L40S", 362.0),
    ("L40", 181.0),
    ("A40", 150.0),
    ("A10", 125.0),
    ("L4", 121.0),
    ("V100", 125.0),
    ("MI300X", 1307.0),
    ("MI250X", 383.0),
]
SIZES = {
    # name: (arch, shape, batch, precision)
    "large": (
        "transformer(input = 16, dim = 1024, heads = 16, layers = 8, output = 2)",
        [256, 16],
        64,
        "bf16",
    ),
    "shipped": (
        "transformer(input = 16, dim = 128, heads = 8, layers = 4, output = 2)",
        [64, 16],
        128,
        "bf16",
    ),
    "dry-run": (
        "transformer(input = 16, dim = 32, heads = 2, layers = 1, output = 2)",
        [16, 16],
        8,
        "fp32",
    ),
}


def workload(size: str, ranks: int, warmup: int, steps: int) -> list[str]:
    arch, shape, batch, precision = SIZES[size]
    samples = max(1024, int((warmup + steps + 2) * batch * ranks / 0.85) + 1024)
    return [
        f"model.classifier.arch={arch}",
        f"data.candidates.source=synthetic(samples = {samples}, shape = {shape}, classes = 2, seed = 99)",
        f"data.candidates.batch={batch}",
        f"train.precision={precision}",
        f"strategy.kind={'single' if ranks == 1 else 'ddp'}",
    ]


def flops_per_sample(bundle_dir: Path) -> dict:
    """Training FLOPs per sample of the bundle's transformer (see the module docstring)."""
    import torch

    sys.path.insert(0, str(training.HANDWRITTEN))
    from _workload import load_bundle

    module = load_bundle(bundle_dir)
    shape = tuple(module.DATA["source"]["shape"])
    with torch.device("meta"):
        model = module.build_model(shape)
    params = sum(p.numel() for p in model.parameters())
    matmul = sum(
        p.numel()
        for name, p in model.named_parameters()
        if p.dim() >= 2 and "positions" not in name
    )
    tokens = shape[0]
    p = module.MODEL["params"]
    attention = 12 * p["layers"] * tokens**2 * p["dim"]
    return {
        "parameters": params,
        "matmul_weights": matmul,
        "tokens": tokens,
        "flops_per_sample": 6 * matmul * tokens + attention,
    }


def peak_flops() -> tuple[float | None, str]:
    try:
        import torch

        if not torch.cuda.is_available():
            return None, "cpu"
        name = torch.cuda.get_device_name(0)
    except ImportError:  # pragma: no cover
        return None, "unknown"
    if os.environ.get("BENCH_PEAK_TFLOPS"):
        return float(os.environ["BENCH_PEAK_TFLOPS"]) * 1e12, name
    for key, tflops in PEAK_TFLOPS:
        if key in name:
            return tflops * 1e12, name
    return None, name


def run(
    out: Path,
    *,
    size: str = "large",
    rounds: int = 3,
    warmup: int = 30,
    steps: int = 300,
    ranks: int | None = None,
) -> dict:
    import torch

    ranks = ranks or max(1, torch.cuda.device_count())
    strategy = "single" if ranks == 1 else "ddp"
    log(
        f"gpu: {size}, {ranks} rank(s), {strategy}, {rounds} rounds of {steps} steps after {warmup}"
    )
    result = training.run(
        out,
        strategies=[strategy],
        rounds=rounds,
        warmup=warmup,
        steps=steps,
        ranks=ranks,
        instrumentation=[],
        blueprint=BLUEPRINT,
        extra_sets=workload(size, ranks, warmup, steps),
        interleave=None,
        cuda_sync=torch.cuda.is_available(),
    )
    entry = result["strategies"][strategy]
    flops = flops_per_sample(out / "bundles" / strategy / "dtec")
    peak, device = peak_flops()
    result.update(
        device=device, size=size, flops=flops, peak_flops=peak, ratio=entry["ratio"]["value"]
    )
    for variant in ("hand", "dtec"):
        rate = entry["samples_per_s"][variant]["median"]
        result[f"mfu_{variant}"] = (
            rate * flops["flops_per_sample"] / (peak * ranks) if peak and rate else None
        )
    result["targets"] = [
        target(
            f"GPU generated/hand-written throughput ({device}, {size}, bf16)",
            entry["ratio"]["value"]["median"],
            0.98,
            "ratio",
            "higher",
            note=training._spread(entry["ratio"]["value"]),
        )
    ]
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", choices=["large", "shipped"], default="large")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument(
        "--dry-run", action="store_true", help="toy sizes, fp32, CPU: checks the logic only"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "gpu")
    args = parser.parse_args(argv)
    started = time.time()
    if args.dry_run:
        result = run(args.out / "work", size="dry-run", rounds=1, warmup=3, steps=6, ranks=1)
    else:
        result = run(
            args.out / "work",
            size=args.size,
            rounds=args.rounds,
            warmup=args.warmup,
            steps=args.steps,
        )
    result["machine"] = machine()
    result["seconds"] = round(time.time() - started, 1)
    result["dry_run"] = args.dry_run
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu.json").write_text(json.dumps(result, indent=1) + "\n")
    e = next(iter(result["strategies"].values()))
    fmt = lambda v: "n/a" if v is None else f"{100 * v:.1f} %"  # noqa: E731
    print(
        f"device {result['device']}: generated/hand-written {result['ratio']['median']:.3f} "
        f"({result['ratio']['min']:.3f}-{result['ratio']['max']:.3f}), "
        f"samples/s hand {e['samples_per_s']['hand']['median']:.0f}, dtec {e['samples_per_s']['dtec']['median']:.0f}; "
        f"MFU hand {fmt(result['mfu_hand'])}, dtec {fmt(result['mfu_dtec'])}; "
        f"{result['flops']['parameters'] / 1e6:.1f} M parameters; {result['seconds']} s; {args.out / 'gpu.json'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
