"""Static estimates from the blueprint alone: parameter counts and memory per rank."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from math import prod

_OPTIMIZER_STATE_BYTES = {"adamw": 8, "adam": 8, "sgd": 4}  # fp32 states per parameter


def parameter_count(arch: dict, shape: list[int] | None) -> int | None:
    """Count the trainable parameters of a built-in architecture (None for user models)."""
    count = PARAMETER_COUNTS.get(arch.get("fn"))
    return count(arch, shape) if count else None


def activation_bytes(arch: dict, shape: list[int] | None, batch: int, precision: str) -> int:
    """Roughly estimate activation memory per rank for one micro-batch (a scale, not a promise)."""
    size = 2 if precision in ("bf16", "fp16") else 4
    units = ACTIVATION_UNITS.get(arch.get("fn"))
    if shape is None or units is None:
        return 0
    # Forward values are kept for backward: roughly doubled.
    return int(units(arch, shape) * batch * size * 2)


def _mlp_parameters(arch: dict, shape: list[int] | None) -> int:
    widths = [arch["input"], *arch["hidden"], arch["output"]]
    return sum(a * b + b for a, b in zip(widths, widths[1:]))


def _lstm_parameters(arch: dict, shape: list[int] | None) -> int:
    # Four gates per layer, each with input and recurrent weights and two biases; the first
    # layer reads the input, the others the hidden state below (closed form: `layers` is a count).
    h = arch["hidden"]
    gates = 4 * (arch["input"] * h + h * h + 2 * h) + (arch["layers"] - 1) * 4 * (2 * h * h + 2 * h)
    return gates + h * arch["output"] + arch["output"]


def _cnn_parameters(arch: dict, shape: list[int] | None) -> int:
    # Bias-free 3x3 convolutions, each with a batch norm (a weight and a bias per channel).
    widths = [arch["channels"], *arch["widths"]]
    convs = sum(a * b * 9 + 2 * b for a, b in zip(widths, widths[1:]))
    return convs + widths[-1] * arch["output"] + arch["output"]


def _unet_parameters(arch: dict, shape: list[int] | None) -> int:
    # As train/model/unet.py.jinja builds it: each DoubleConv is two bias-free convolutions and two
    # batch norms (a weight and a bias per channel each); the up-sampling is a stride-2 transposed
    # convolution with a bias.
    two_d = shape is not None and len(shape) == 3
    kernel, up_kernel = (9, 4) if two_d else (3, 2)

    def double_conv(c_in: int, c_out: int) -> int:
        return (c_in * c_out + c_out * c_out) * kernel + 4 * c_out

    widths = [arch["width"] * 2**level for level in range(arch["depth"] + 1)]
    total = double_conv(widths[-2] if arch["depth"] else arch["channels"], widths[-1])
    for c_in, c_out in zip([arch["channels"], *widths], widths[:-1]):
        total += double_conv(c_in, c_out)  # down
    for level in range(arch["depth"]):
        total += widths[level + 1] * widths[level] * up_kernel + widths[level]  # up
        total += double_conv(2 * widths[level], widths[level])  # merge
    return total + widths[0] * arch["output"] + arch["output"]


def _transformer_parameters(arch: dict, shape: list[int] | None) -> int:
    d, ffn = arch["dim"], arch.get("ffn") or 4 * arch["dim"]
    steps = shape[0] if shape else 0
    per_layer = 4 * d * d + 4 * d + 2 * d * ffn + ffn + d + 4 * d
    embedding = arch["input"] * d + d + steps * d
    return embedding + arch["layers"] * per_layer + d * arch["output"] + arch["output"]


def _mlp_units(arch: dict, shape: list[int]) -> int:
    return sum(arch["hidden"]) + arch["output"] + prod(shape)


def _lstm_units(arch: dict, shape: list[int]) -> int:
    return shape[0] * arch["hidden"] * arch["layers"] * 8


def _transformer_units(arch: dict, shape: list[int]) -> int:
    d, ffn, steps = arch["dim"], arch.get("ffn") or 4 * arch["dim"], shape[0]
    return arch["layers"] * steps * (10 * d + ffn + arch["heads"] * steps)


def _conv_units(arch: dict, shape: list[int]) -> int:
    area = prod(shape[1:])
    widths = arch.get("widths") or [arch["width"] * 2**i for i in range(arch["depth"])]
    return sum(w * area // 4**i for i, w in enumerate(widths)) * 3


# Per architecture (the `fn` of its call): its parameter count, and the activation values one
# sample keeps for backward. An architecture without an entry has no static estimate.
PARAMETER_COUNTS: dict[str, Callable[[dict, list[int] | None], int]] = {
    "mlp": _mlp_parameters,
    "lstm": _lstm_parameters,
    "cnn": _cnn_parameters,
    "unet": _unet_parameters,
    "transformer": _transformer_parameters,
}
ACTIVATION_UNITS: dict[str, Callable[[dict, list[int]], int]] = {
    "mlp": _mlp_units,
    "lstm": _lstm_units,
    "transformer": _transformer_units,
    "cnn": _conv_units,
    "unet": _conv_units,
}


@dataclass(frozen=True)
class Memory:
    """Bytes per rank for each kind of state, after sharding."""

    parameters: int
    gradients: int
    optimizer: int
    activations: int

    @property
    def total(self) -> int:
        """Return the sum of all parts."""
        return self.parameters + self.gradients + self.optimizer + self.activations


def memory_per_rank(
    params: int, optimizer: str, activations: int, shards: int, stage: int
) -> Memory:
    """Split fp32 parameters, gradients and optimizer states over `shards` ranks per ZeRO `stage`.

    Stage 0 is plain data parallelism; 1 shards optimizer states, 2 also gradients, 3 (and FSDP)
    also parameters.
    """
    def share(nbytes: int, from_stage: int) -> int:
        return nbytes // shards if stage >= from_stage else nbytes

    return Memory(
        parameters=share(4 * params, 3),
        gradients=share(4 * params, 2),
        optimizer=share(_OPTIMIZER_STATE_BYTES.get(optimizer, 8) * params, 1),
        activations=activations,
    )
