"""The parameter names of the built-in architectures, as `named_parameters()` gives them.

Known without torch (`dtec lint` stays light), so that `freeze` prefixes are checked at lint time;
tests hold this table to the models the training script builds.
"""

from __future__ import annotations

from typing import Any

_WEIGHT_BIAS = ("weight", "bias")
# Two (convolution without bias, batch norm) pairs: train/model/unet.py.jinja's DoubleConv.
_DOUBLE_CONV = ("0.weight", "1.weight", "1.bias", "3.weight", "4.weight", "4.bias")
_ENCODER_LAYER = (
    "self_attn.in_proj_weight", "self_attn.in_proj_bias", "self_attn.out_proj.weight",
    "self_attn.out_proj.bias", "linear1.weight", "linear1.bias", "linear2.weight", "linear2.bias",
    "norm1.weight", "norm1.bias", "norm2.weight", "norm2.bias",
)


def parameter_names(arch: dict[str, Any]) -> list[str] | None:
    """The parameter names of a built-in architecture with these arguments (None: not known)."""
    fn = arch.get("fn")
    if fn == "mlp":  # Flatten, then (Linear, GELU) per hidden layer, then the output Linear
        return _linear(f"layers.{2 * i + 1}" for i in range(len(arch["hidden"]) + 1))
    if fn == "lstm":
        cells = [f"lstm.{kind}_{gate}_l{k}" for k in range(arch["layers"])
                 for kind in ("weight", "bias") for gate in ("ih", "hh")]
        return cells + _linear(["head"])
    if fn == "cnn":  # (Conv2d without bias, BatchNorm2d, ReLU, MaxPool2d) per width
        blocks = [f"features.{i}.{p}" for i in range(len(arch["widths"]))
                  for p in ("0.weight", "1.weight", "1.bias")]
        return blocks + _linear(["head"])
    if fn == "unet":
        depth = arch["depth"]
        names = [f"down.{i}.{p}" for i in range(depth) for p in _DOUBLE_CONV]
        names += [f"bottom.{p}" for p in _DOUBLE_CONV]
        names += _linear(f"up.{i}" for i in range(depth))
        names += [f"merge.{i}.{p}" for i in range(depth) for p in _DOUBLE_CONV]
        return names + _linear(["head"])
    if fn == "transformer":
        layers = [f"encoder.layers.{i}.{p}" for i in range(arch["layers"]) for p in _ENCODER_LAYER]
        return ["positions", *_linear(["embed"]), *layers, *_linear(["head"])]  # its own first
    return None  # python(): the user's class, known once built (`dtec check`, the first step)


def matches(prefix: str, name: str) -> bool:
    """Whether a `freeze` prefix names a parameter: the name itself or a module above it."""
    return name == prefix or name.startswith(prefix + ".")


def _linear(modules) -> list[str]:
    return [f"{module}.{p}" for module in modules for p in _WEIGHT_BIAS]
