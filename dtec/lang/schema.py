"""The .twin vocabulary: which blocks and attributes exist, their types, defaults and docs.

This table is the single source for the checker, `docs/language.md` and the language server of
tomorrow; the grammar stays generic.
"""

from __future__ import annotations

from dtec.lang.machine_keys import OVERRIDE_KEYS
from dtec.lang.types import (
    BlockSpec,
    Bool,
    Call,
    Dict,
    Duration,
    Field,
    Float,
    Function,
    Int,
    ListOf,
    Name,
    OneOf,
    Record,
    Ref,
    Source,
    Size,
    Str,
    Sym,
)

POSITIVE = Int(min=1)
NON_NEGATIVE = Int(min=0)
FRACTION = Float(min=0.0, max=1.0, open_min=True)
# Ten times the deepest published network (DeepNet's 1,000-layer transformer); a typo such as
# `layers = 300000000` is then an error, not a model that fills the memory of the machine linting it.
LAYERS = Int(min=1, max=10_000)


def _f(type_, doc, required=False, default=None):
    return Field(type_, doc, required, default)


_PYTHON_DATA = Function(
    {
        "callable": _f(Str(), "`module:function` returning a torch Dataset, or a (train, val) or (train, val, test) tuple (then `split` is not applied)", True),
        # Declarative: what the checks hold the model and the loss to; never passed to the function.
        "shape": _f(ListOf(POSITIVE, 1), "shape of one input sample, e.g. `[1, 28, 28]` (not passed to the function; the script compares it with the first sample)"),
        "targets": _f(POSITIVE, "regression outputs per sample (not passed to the function)"),
        "classes": _f(Int(min=2), "number of classes for classification (not passed to the function)"),
    },
    "Data from your own Python function. `shape`, `targets` and `classes` declare the data's task "
    "and sizes for the checks and are not passed on; every other keyword argument is passed to the "
    "function as written (a path among them is the function's to resolve: the data root is "
    "`os.environ[\"DTEC_DATA_ROOT\"]`).",
    variadic_kwargs=True,
)

# The arguments of the sources whose samples are windows along a dimension (zarr, netcdf).
_WINDOWED = {
    "inputs": _f(ListOf(Str(), 1), "the input variables, in this order: a sample is `[window, features]`, the variables' other dimensions flattened into the features", True),
    "targets": _f(ListOf(Str(), 1), "the target variables: the `horizon` steps after each window, flattened to `horizon × features` outputs", True),
    "window": _f(POSITIVE, "steps of `dim` in one input sample", True),
    "horizon": _f(POSITIVE, "steps after the window that are the targets", default=1),
    "stride": _f(POSITIVE, "steps between the starts of two windows", default=1),
    "dim": _f(Str(), "the dimension windows run along; every variable has it first", default="time"),
}

DATA_SOURCE = Call(
    {
        "synthetic": Function(
            {
                "samples": _f(POSITIVE, "number of samples", True),
                "shape": _f(ListOf(POSITIVE, 1), "shape of one input sample, e.g. `[30, 8]`", True),
                "targets": _f(POSITIVE, "regression outputs per sample (give this or `classes`)"),
                "classes": _f(Int(min=2), "number of classes for classification"),
                "seed": _f(NON_NEGATIVE, "seed of the generator", default=0),
            },
            "Random, learnable data made on the fly: runs anywhere, needs no files.",
        ),
        "npz": Function(
            {
                "path": _f(Str(), "path of the `.npz` file, relative to the blueprint (where the job runs: to the data root, the target's `data_root`)", True),
                "x": _f(Str(), "array name of the inputs", default="x"),
                "y": _f(Str(), "array name of the targets", default="y"),
                "shape": _f(ListOf(POSITIVE, 1), "shape of one input sample (checked against the file where it is at hand)"),
                "targets": _f(POSITIVE, "regression outputs per sample"),
                "classes": _f(Int(min=2), "number of classes"),
            },
            "Arrays from a NumPy `.npz` file.",
        ),
        "csv": Function(
            {
                "path": _f(Str(), "path of the CSV file, relative to the blueprint (where the job runs: to the data root, the target's `data_root`)", True),
                "target": _f(Str(), "name of the target column", True),
                "features": _f(
                    OneOf((POSITIVE, ListOf(Str(), 1))),
                    "the feature columns by name (`[\"rain\", \"snow\"]`), or their number; default: every column but the target",
                ),
                "classes": _f(Int(min=2), "number of classes, when the target is a class label"),
            },
            "A table with a header line; one column is the target, the features are numbers.",
        ),
        "zarr": Function(
            {
                "path": _f(Str(), "path of the Zarr store (a folder, format v2 or v3), relative to the blueprint (where the job runs: to the data root, the target's `data_root`)", True),
                **_WINDOWED,
            },
            "Windows along `dim` of variables of a Zarr store (read lazily, chunk by chunk).",
        ),
        "netcdf": Function(
            {
                "path": _f(Str(), "a NetCDF file, or a glob of several (`\"data/*.nc\"`) joined along `dim` in the order of their first `dim` value, relative to the blueprint (where the job runs: to the data root)", True),
                **_WINDOWED,
            },
            "Windows along `dim` of variables of one or several NetCDF files (read lazily).",
        ),
        "hdf5": Function(
            {
                "path": _f(Str(), "path of the HDF5 file, relative to the blueprint (where the job runs: to the data root, the target's `data_root`)", True),
                "x": _f(Str(), "dataset of the inputs, one sample per row (`\"/showers\"`)", True),
                "y": _f(Str(), "dataset of the targets, one row per sample (`\"/energy\"`)", True),
                "targets": _f(POSITIVE, "regression outputs per sample (checked against the file)"),
                "classes": _f(Int(min=2), "number of classes, when `y` holds class numbers"),
            },
            "Samples from two HDF5 datasets (rows of `x` and `y`), read lazily per sample.",
        ),
        "python": _PYTHON_DATA,
        "sampler": Function(
            {
                "shape": _f(ListOf(POSITIVE, 1), "shape of one draw, e.g. `[16]` (a lattice of 16 sites)", True),
                "batches": _f(POSITIVE, "batches drawn per epoch on each rank: an epoch is this many micro-batches", True),
                "val_samples": _f(NON_NEGATIVE, "draws in the validation set: drawn once from `seed`, the same every epoch and run, shared out across ranks", default=1024),
                "seed": _f(NON_NEGATIVE, "seed of the draws: the validation set's, and the training batches' (each a function of seed, epoch, rank and batch)", default=0),
            },
            "No data set: every training batch is drawn afresh from the objective's prior "
            "(`reverse_kl(prior = ...)`), each rank its own (docs/custom-training.md).",
        ),
    }
)
# The sources whose samples are windows along a dimension (time): split in time, never shuffled across.
WINDOWED_SOURCES = ("zarr", "netcdf")
# The sources `normalize` applies to: their statistics are streamed over the train split.
NORMALIZED_SOURCES = ("zarr", "netcdf", "hdf5")
NORMALIZATIONS = ("none", "standard", "minmax")

ARCH = Call(
    {
        "mlp": Function(
            {
                "input": _f(POSITIVE, "input features (the sample is flattened)", True),
                "hidden": _f(ListOf(POSITIVE), "widths of the hidden layers", default=[128, 128]),
                "output": _f(POSITIVE, "outputs (targets or classes)", True),
            },
            "A multi-layer perceptron.",
        ),
        "lstm": Function(
            {
                "input": _f(POSITIVE, "features per time step", True),
                "hidden": _f(POSITIVE, "hidden size", True),
                "layers": _f(LAYERS, "stacked LSTM layers", default=1),
                "output": _f(POSITIVE, "outputs (targets or classes)", True),
            },
            "An LSTM over `[steps, features]` sequences that predicts from the last step.",
        ),
        "cnn": Function(
            {
                "channels": _f(POSITIVE, "input channels of `[channels, height, width]` samples", True),
                "output": _f(POSITIVE, "outputs (targets or classes)", True),
                "widths": _f(ListOf(POSITIVE, 1), "channels of the conv blocks", default=[32, 64]),
            },
            "A 2-D convolutional network with global pooling.",
        ),
        "unet": Function(
            {
                "channels": _f(POSITIVE, "input channels", True),
                "output": _f(POSITIVE, "output channels (per position)", True),
                "depth": _f(Int(min=1, max=6), "down/up-sampling levels", default=3),
                "width": _f(POSITIVE, "channels of the first level", default=32),
            },
            "A U-Net over `[channels, length]` (1-D) or `[channels, height, width]` (2-D) samples.",
        ),
        "transformer": Function(
            {
                "input": _f(POSITIVE, "features per token", True),
                "dim": _f(POSITIVE, "model width", True),
                "heads": _f(POSITIVE, "attention heads (must divide `dim`)", True),
                "layers": _f(LAYERS, "encoder layers", True),
                "output": _f(POSITIVE, "outputs (targets or classes)", True),
                "ffn": _f(POSITIVE, "feed-forward width (default 4 × dim)"),
                "dropout": _f(Float(min=0.0, max=1.0), "dropout", default=0.0),
            },
            "A transformer encoder over `[tokens, features]` sequences with mean pooling.",
        ),
        "python": Function(
            {"class": _f(Str(), "`module:Class` of your `torch.nn.Module`", True)},
            "Your own model class; extra keyword arguments go to its constructor.",
            variadic_kwargs=True,
        ),
    }
)

# Where a model's initial weights come from: a finished run, or another blueprint's newest one.
WEIGHTS = Call(
    {
        "from": Function(
            {
                "run": _f(Str(), "a run folder (`runs/<twin>/<target>/<id>`), relative to the blueprint; its `run/final_model.pt`"),
                "blueprint": _f(Str(), "another blueprint of the project, relative to this one: its newest finished run for the same target (`dtec run` runs it first when it has none)"),
                "model": _f(Ref("model", local=False), "the model of that blueprint (default: the one it trains)"),
            },
            "The weights a finished run wrote (`final_model.pt`): give `run` or `blueprint`.",
        ),
    }
)
SPLIT_ORDERS = ("auto", "random", "time")
# How the trained model is exported at the end of a run (docs/training-script.md#export).
EXPORTERS = ("torch_export", "torchscript", "none")

_POSITIVE_NUMBER = Float(min=0.0, open_min=True)
_CLASS_OPTIONS = {
    "weights": _f(ListOf(Float(min=0.0), 1), "one weight per class: the mean is weighted by each target's class"),
    "ignore_index": _f(Int(), "a target value that is no class, left out of the loss (e.g. `-1` or `255`)"),
}
# The loss functions, each on its own or as a term of `sum(...)`.
_LOSS_TERMS = {
    "mse": Function({}, "Mean squared error."),
    "rmse": Function({}, "Root mean squared error: the square root of the batch's mean squared error (in validation, of the whole set's)."),
    "mae": Function({}, "Mean absolute error."),
    "huber": Function(
        {"delta": _f(_POSITIVE_NUMBER, "where the loss turns from squared to linear", default=1.0)},
        "Huber loss: squared for errors below `delta`, linear above.",
    ),
    "mape": Function({}, "Mean absolute percentage error, `|prediction - target| / |target|` as a fraction (targets nearer zero than 1.17e-6 count as 1.17e-6)."),
    "cross_entropy": Function(
        {
            **_CLASS_OPTIONS,
            "label_smoothing": _f(Float(min=0.0, max=1.0), "share of the target's probability spread over all classes", default=0.0),
        },
        "Cross entropy of class scores (logits) against class numbers.",
    ),
    "nll": Function(_CLASS_OPTIONS, "Negative log-likelihood of log-probabilities (a model ending in `log_softmax`) against class numbers."),
    "bce": Function(
        {"pos_weight": _f(OneOf((_POSITIVE_NUMBER, ListOf(_POSITIVE_NUMBER, 1))), "weight of the positive targets: a number, or one per output channel (per class of a multi-label output)")},
        "Binary cross entropy of logits against targets from 0 to 1.",
    ),
    "python": Function(
        {"callable": _f(Str(), "`module:function` called as `function(prediction, target, **arguments)`; returns the batch's mean loss, a scalar tensor", True)},
        "Your own loss function, in a code folder (`path` of `train`, a model or a data set); extra keyword arguments are passed to it on every call.",
        variadic_kwargs=True,
    ),
}
LOSS = Call(
    {
        **_LOSS_TERMS,
        "sum": Function(
            {
                "terms": _f(ListOf(Call(_LOSS_TERMS), 1), "the losses added up (each as it would be written alone)", True),
                "weights": _f(ListOf(Float(min=0.0), 1), "one weight per term (default: 1 each)"),
            },
            "A weighted sum of losses, e.g. `sum(terms = [mse, python(\"losses:kl\")], weights = [1.0, 0.1])`.",
        ),
    }
)
# An extra loss term of a gan: a discriminator output scored against the batch's target.
GAN_TERM = Call(
    {
        "term": Function(
            {
                "loss": _f(Call({name: _LOSS_TERMS[name] for name in ("mse", "mae", "mape", "huber")}), "the regression loss", True),
                "output": _f(Name(), "the discriminator's named output it scores (one of its `outputs` but the first)", True),
                "weight": _f(Float(min=0.0), "its weight in both models' losses", default=1.0),
                "field": _f(Name(), "the batch field it is scored against: `target`, or one of the data's `fields` (3DGAN's `ang`, `ecal`)", default="target"),
            },
            "The loss of a discriminator output against a batch field (the target by default), on real and generated samples alike.",
        ),
    }
)
# The prior of `reverse_kl`: what the `sampler` source draws.
PRIOR = Call(
    {
        "normal": Function(
            {
                "mean": _f(Float(), "mean of every value", default=0.0),
                "std": _f(Float(min=0.0, open_min=True), "standard deviation of every value", default=1.0),
            },
            "Independent normal values.",
        )
    }
)
# The action S(x) of `reverse_kl`: your function of a batch of samples.
ACTION = Call(
    {
        "python": Function(
            {"callable": _f(Str(), "`module:function` called as `function(x, **arguments)`; returns the action of each sample, a tensor of shape [batch]", True)},
            "Your action, in a code folder (`path` of `train`); extra keyword arguments are passed to it.",
            variadic_kwargs=True,
        )
    }
)
# What one training step optimises (docs/custom-training.md): each picks the template
# train/objective/<name>.py.jinja that computes the step's losses.
OBJECTIVE = Call(
    {
        "supervised": Function({}, "The model's prediction scored against the target by `loss` (the default)."),
        "elbo": Function(
            {
                "recon": _f(LOSS, "the reconstruction loss: the model's `recon` output against the target (a regression loss)", default={"fn": "mse"}),
                "kl_weight": _f(Float(min=0.0), "weight of the KL divergence of (`mu`, `logvar`) from a standard normal", default=1.0),
            },
            "The evidence lower bound of a variational autoencoder: `recon` plus `kl_weight` times the "
            "KL divergence; the model returns `outputs = [recon, mu, logvar]`. Validation records "
            "`val_recon`, `val_kl` and `val_loss`.",
        ),
        "gan": Function(
            {
                "generator": _f(Ref("model"), "the model that makes samples: called as `generator(noise, target)`, the target (e.g. a primary energy) being its condition (and each `condition` field after it)", True),
                "discriminator": _f(Ref("model"), "the model that tells real from generated samples: its first output is one logit per sample (real: > 0)", True),
                "latent": _f(POSITIVE, "noise values per sample the generator gets, drawn from a standard normal", default=16),
                "d_steps": _f(POSITIVE, "discriminator updates per training step, each on a real and a generated batch", default=1),
                "g_steps": _f(POSITIVE, "generator updates per training step", default=1),
                "label_flip": _f(Float(min=0.0, max=0.5), "fraction of the discriminator's labels flipped at random in its updates (noisy labels)", default=0.0),
                "extra": _f(ListOf(GAN_TERM), "weighted loss terms on the discriminator's other named outputs, added to both models' losses, e.g. `[term(mape, output = energy, weight = 0.1)]`", default=[]),
                "condition": _f(ListOf(Name()), "batch fields the generator gets after the target, one of the data's `fields` each: `generator(noise, target, *condition)`", default=[]),
            },
            "A generative adversarial network: `d_steps` discriminator updates (binary cross-entropy "
            "on real and generated samples), then `g_steps` generator updates, each model with its "
            "own optimizer. Each epoch records `d_loss`, `g_loss`, `d_real_accuracy`, "
            "`d_fake_accuracy` and each extra term on the training batches (`train_...`) and the "
            "validation set (`val_...`), and `val_loss` (the generator's loss).",
        ),
        "reverse_kl": Function(
            {
                "prior": _f(PRIOR, "the distribution the `sampler` source draws the model's inputs from", default={"fn": "normal", "mean": 0.0, "std": 1.0}),
                "action": _f(ACTION, "the target's action S(x), `python(\"module:function\")` returning one value per sample: the target density is exp(-S(x)) up to a constant", True),
            },
            "A normalizing flow trained without data: the model maps prior draws z to samples x "
            "with `outputs = [x, logdet]`; the loss is mean(log q(x) + S(x)), log q = log prior(z) "
            "- logdet (it can be negative). Validation records `val_loss`, `val_ess` (effective "
            "sample size, 0 to 1), `val_kl` and `val_log_z`. Needs a `sampler(...)` source.",
        ),
        "python": Function(
            {"callable": _f(Str(), "`module:function` called as `function(model, batch, context, **arguments)`; returns a dict of scalar tensors, `loss` among them (the one optimised)", True)},
            "Your own training step, in a code folder (`path` of `train`): every loss it returns is "
            "logged and validated as `val_<name>`; extra keyword arguments are passed to it.",
            variadic_kwargs=True,
        ),
    }
)
# The named outputs each objective needs of the model.
OBJECTIVE_OUTPUTS = {"elbo": ("recon", "mu", "logvar"), "reverse_kl": ("x", "logdet")}
# Objectives that train several models, each with its own optimizer (`optimizer` blocks).
SEVERAL_MODELS = ("gan",)
# The values each objective records besides `val_loss`, and the direction in which each improves.
OBJECTIVE_METRICS = {
    "elbo": {"val_recon": "min", "val_kl": "min"},
    "reverse_kl": {"val_ess": "max", "val_kl": "min"},
    # The discriminator's: its loss falls and its accuracies rise as it wins.
    "gan": {"val_d_loss": "min", "val_g_loss": "min", "val_d_real_accuracy": "max", "val_d_fake_accuracy": "max"},
}
# How a model's weights are initialised before training (`model { init = ... }`).
INIT = Call(
    {
        "normal": Function(
            {
                "mean": _f(Float(), "mean of the weights", default=0.0),
                "std": _f(Float(min=0.0, open_min=True), "standard deviation of the weights", True),
            },
            "Weights of every linear and convolution layer drawn from a normal distribution, biases 0.",
        ),
        "xavier": Function(
            {"gain": _f(Float(min=0.0, open_min=True), "scale factor", default=1.0)},
            "Weights of every linear and convolution layer Xavier-uniform (Glorot), biases 0.",
        ),
        "zeros": Function({}, "Weights and biases of every linear and convolution layer 0."),
    }
)
_FIELD = Function({"name": _f(Str(), "the key in each item's dict", True)}, "The item's value under a key: items are dicts.")
# What a data set's items give the model (`input`) and score it against (`target`).
DATA_INPUT = Call({"field": _FIELD})
DATA_TARGET = Call(
    {
        "field": _FIELD,
        "input": Function({}, "The input itself: the model reconstructs it (autoencoders)."),
        "channels": Function(
            {"index": _f(OneOf((NON_NEGATIVE, ListOf(NON_NEGATIVE, 1))), "the channel, or a list of channels, along the first axis of each sample", True)},
            "A channel split: these channels of each sample (a tensor, or the `input` field) are the target, "
            "keeping their channel axis (`channels(0)` gives `[1, ...]`); the other channels are the input.",
        ),
    }
)
LOSSES = tuple(_LOSS_TERMS)
# What each loss scores its prediction against: class numbers, 0/1 targets, or values (regression).
# A python() loss says nothing: the data's `classes` or `targets` decide.
LOSS_TARGETS = {
    "mse": "values", "rmse": "values", "mae": "values", "huber": "values", "mape": "values",
    "cross_entropy": "classes", "nll": "classes", "bce": "binary", "python": None,
}

# The metrics `train.metrics` may ask for, by task, and the direction in which each improves.
CLASSIFICATION_METRIC_NAMES = ("accuracy", "precision", "recall", "f1")
REGRESSION_METRIC_NAMES = ("mae", "rmse", "r2")
_BETTER = {"accuracy": "max", "precision": "max", "recall": "max", "f1": "max",
           "mae": "min", "rmse": "min", "r2": "max"}
_AVERAGE = _f(
    Sym(("macro", "micro")),
    "`macro`: the mean over the classes that occur; `micro`: over all decisions (equals the accuracy)",
    default="macro",
)
METRIC = Call(
    {
        "accuracy": Function({}, "The fraction of correct decisions (classification; always recorded there)."),
        "precision": Function({"average": _AVERAGE}, "Of the decisions for a class, the fraction that is right (classification)."),
        "recall": Function({"average": _AVERAGE}, "Of a class's samples, the fraction found (classification)."),
        "f1": Function({"average": _AVERAGE}, "The harmonic mean of precision and recall (classification)."),
        "mae": Function({}, "Mean absolute error, per target and their mean (regression)."),
        "rmse": Function({}, "Root mean squared error, per target and their mean (regression)."),
        "r2": Function({}, "Coefficient of determination R², per target and their mean (regression)."),
    }
)


def metric_name(metric: dict) -> str:
    """The name a `train.metrics` entry is recorded under, after `val_`: `f1`, `f1_micro`."""
    return metric["fn"] + ("_micro" if metric.get("average") == "micro" else "")


# The validation metrics `train.metrics` can add, by the name they are recorded under.
_RECORDED = {
    f"val_{fn}{suffix}": fn
    for fn in (*CLASSIFICATION_METRIC_NAMES, *REGRESSION_METRIC_NAMES)
    for suffix in (("", "_micro") if "average" in METRIC.functions[fn].params else ("",))
}
# Every validation metric the script can record, and the direction in which it improves: the
# loss always, the accuracy always for classification, the others when `train.metrics` asks.
METRICS = {"val_loss": "min"} | {name: _BETTER[fn] for name, fn in _RECORDED.items()}
METRICS |= {name: mode for recorded in OBJECTIVE_METRICS.values() for name, mode in recorded.items()}
CLASSIFICATION_METRICS = tuple(n for n, fn in _RECORDED.items() if fn in CLASSIFICATION_METRIC_NAMES)
REGRESSION_METRICS = tuple(n for n, fn in _RECORDED.items() if fn in REGRESSION_METRIC_NAMES)
# A monitored metric, `min(val_loss)` or `max(val_f1)`: the metric and the better direction.
MONITORED = Call(
    {
        mode: Function(
            {"metric": _f(Sym(tuple(METRICS)), "a validation metric the script records", True)},
            f"The {'lowest' if mode == 'min' else 'highest'} value of the metric is the best.",
        )
        for mode in ("min", "max")
    }
)

_LR = _f(Float(min=0.0, open_min=True), "learning rate", default=1e-3)
_EPS = _f(Float(min=0.0, open_min=True), "term added to the denominator for numerical stability", default=1e-8)
_BETAS = _f(
    ListOf(Float(min=0.0, max=1.0, open_max=True), 2, 2),
    "decay rates of the gradient's running mean and of its square, each in [0, 1)",
    default=[0.9, 0.999],
)


def _weight_decay(default: float) -> Field:
    return _f(Float(min=0.0), "weight decay", default=default)


# Each key is passed to the torch.optim class of the same name as written (docs/training-script.md).
OPTIMIZER = Call(
    {
        "adamw": Function(
            {"lr": _LR, "weight_decay": _weight_decay(0.01), "betas": _BETAS, "eps": _EPS},
            "AdamW (`torch.optim.AdamW`): Adam with decoupled weight decay.",
        ),
        "adam": Function(
            {"lr": _LR, "weight_decay": _weight_decay(0.0), "betas": _BETAS, "eps": _EPS},
            "Adam (`torch.optim.Adam`).",
        ),
        "sgd": Function(
            {
                "lr": _LR,
                "weight_decay": _weight_decay(0.0),
                "momentum": _f(Float(min=0.0, max=1.0), "momentum factor", default=0.0),
                "nesterov": _f(Bool(), "Nesterov momentum (needs `momentum` above 0)", default=False),
            },
            "Stochastic gradient descent (`torch.optim.SGD`), with optional momentum.",
        ),
        "rmsprop": Function(
            {
                "lr": _f(Float(min=0.0, open_min=True), "learning rate", default=1e-2),
                "alpha": _f(Float(min=0.0, max=1.0, open_max=True), "smoothing constant of the squared-gradient average, in [0, 1)", default=0.99),
                "momentum": _f(Float(min=0.0, max=1.0), "momentum factor", default=0.0),
                "eps": _EPS,
                "weight_decay": _weight_decay(0.0),
            },
            "RMSprop (`torch.optim.RMSprop`).",
        ),
    }
)

# Every schedule but `none` takes a linear warm-up: the learning rate rises from lr/warmup to
# its scheduled value over the first `warmup` optimizer steps.
_WARMUP = _f(NON_NEGATIVE, "linear warm-up, in optimizer steps", default=0)
_GAMMA = _f(Float(min=0.0, max=1.0, open_min=True), "decay factor", default=0.1)
SCHEDULER = Call(
    {
        "none": Function({}, "A constant learning rate."),
        "cosine": Function(
            {"warmup": _WARMUP},
            "Cosine decay to zero over the steps after the warm-up.",
        ),
        "step": Function(
            {"every": _f(POSITIVE, "epochs between decays", True), "gamma": _GAMMA, "warmup": _WARMUP},
            "Multiply the learning rate by `gamma` every `every` epochs.",
        ),
        "exponential": Function(
            {"gamma": _f(Float(min=0.0, max=1.0, open_min=True), "decay factor per epoch", True), "warmup": _WARMUP},
            "Multiply the learning rate by `gamma` after every epoch.",
        ),
        "multistep": Function(
            {
                "milestones": _f(ListOf(POSITIVE, 1), "epochs after which the rate decays, increasing", True),
                "gamma": _GAMMA,
                "warmup": _WARMUP,
            },
            "Multiply the learning rate by `gamma` after each milestone epoch.",
        ),
        "onecycle": Function(
            {
                "max_lr": _f(Float(min=0.0, open_min=True), "the peak learning rate (the optimizer's `lr` is not used)", True),
                "pct_start": _f(Float(min=0.0, max=1.0, open_min=True, open_max=True), "fraction of the run spent rising to `max_lr`", default=0.3),
                "warmup": _WARMUP,
            },
            "The one-cycle policy over the whole run: from max_lr/25 up to `max_lr`, then down to "
            "max_lr/250000 (cosine annealing, as `torch.optim.lr_scheduler.OneCycleLR`; momentum is not cycled).",
        ),
        "plateau": Function(
            {
                "monitor": _f(MONITORED, "the validation metric watched, e.g. `min(val_loss)`", default={"fn": "min", "metric": "val_loss"}),
                "factor": _f(Float(min=0.0, max=1.0, open_min=True, open_max=True), "multiplies the rate on a plateau", default=0.1),
                "patience": _f(NON_NEGATIVE, "epochs without improvement that are tolerated; the next one reduces the rate", default=10),
                "min_lr": _f(Float(min=0.0), "the rate is never reduced below this", default=0.0),
                "warmup": _WARMUP,
            },
            "Multiply the learning rate by `factor` when the monitored metric has not improved for "
            "more than `patience` epochs, as `ReduceLROnPlateau` (checked after each epoch, on the "
            "metric agreed by all ranks).",
        ),
    }
)

PROFILER = Call(
    {
        "none": Function({}, "No profiler."),
        "torch": Function(
            {
                "wait": _f(NON_NEGATIVE, "steps to skip", default=1),
                "warmup": _f(NON_NEGATIVE, "warm-up steps", default=1),
                "active": _f(POSITIVE, "recorded steps", default=3),
            },
            "The PyTorch profiler; traces go to the run folder.",
        ),
    }
)

# Where a run's parameters and metrics are also logged (docs/runs.md#tracking).
TRACKER = Call(
    {
        "mlflow": Function(
            {
                "uri": _f(Str(), "the tracking URI: `http(s)://` a server, `sqlite:///`, `postgresql://`, `mysql://`, `file:` or a folder (relative: in the run folder); default: an SQLite store in `run/mlflow/`, offline"),
                "experiment": _f(Str(), "the MLflow experiment (default: the twin's name)"),
                "system_metrics": _f(Bool(), "MLflow's CPU, memory and GPU samples every 10 s (`system/…`; needs `psutil`, `nvidia-ml-py` for GPUs)", default=True),
            },
            "MLflow: parameters, per-step and per-epoch metrics, the final model and summary as artifacts.",
        ),
        "tensorboard": Function({}, "TensorBoard event files in `run/tensorboard/`: the metrics and the parameters as text."),
    }
)

# A sweep's space: one distribution per blueprint key, named as `--set` names it.
_SWEEP_KEY = _f(Str(), "the key the values go to, as `--set` names it, e.g. `\"train.optimizer.lr\"`", True)
DISTRIBUTION = Call(
    {
        "loguniform": Function(
            {"key": _SWEEP_KEY, "low": _f(Float(min=0.0, open_min=True), "the lowest value", True), "high": _f(Float(min=0.0, open_min=True), "the highest value", True)},
            "A number between `low` and `high`, uniform in its logarithm (learning rates, weight decays).",
        ),
        "uniform": Function(
            {"key": _SWEEP_KEY, "low": _f(Float(), "the lowest value", True), "high": _f(Float(), "the highest value", True)},
            "A number between `low` and `high`, uniform.",
        ),
        "int": Function(
            {
                "key": _SWEEP_KEY,
                "low": _f(Int(), "the lowest value", True),
                "high": _f(Int(), "the highest value (taken when `step` reaches it)", True),
                "step": _f(POSITIVE, "the spacing of the values from `low`", default=1),
                "log": _f(Bool(), "uniform in the logarithm (needs `step = 1`)", default=False),
            },
            "A whole number from `low` to `high` (sizes, widths, batch sizes).",
        ),
        "choice": Function(
            {"key": _SWEEP_KEY, "values": _f(ListOf(Source(), 1), "the values, each as the key would be written: `[32, 64]`, `[cosine(warmup = 50), none]`", True)},
            "One of the values as written.",
        ),
    }
)
SWEEP_GOALS = {"minimize": "min", "maximize": "max"}
SAMPLERS = ("tpe", "random", "grid", "cmaes")
PRUNERS = ("median", "hyperband", "none")

STRATEGIES = ("auto", "single", "ddp", "fsdp", "deepspeed")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
SCALING_MODES = ("strong", "weak")

# What a target's `machine { ... }` block may override in the profile: the one list of them
# (dtec.lang.machine_keys), less what the target block itself sets (partition, modules, ...).
_OVERRIDE_TYPES = {
    "int": NON_NEGATIVE,
    "bool": Bool(),
    "size": Size(),
    "duration": Duration(),
    "str": Str(),
    "list[str]": ListOf(Str()),
}
_OVERRIDE_DOCS = {
    "max_nodes": "node limit of the partition",
    "max_walltime": "walltime limit of the partition",
    "whole_node": "the partition allocates whole nodes",
    "cpus": "CPU cores per node",
    "usable_cpus": "cores a job may use per node",
    "threads_per_core": "hardware threads per core",
    "memory": "memory per node",
    "requestable_memory": "memory a job may request per node",
    "gpus": "GPUs per node",
    "gpu_model": "GPU model, for the record",
    "gpu_vendor": "`nvidia`, `amd`, `intel` or `none`",
    "gpu_memory": "memory per GPU",
    "bf16": "the hardware computes in bfloat16",
    "fp16": "the hardware computes in float16",
    "tf32": "the GPUs have TF32 tensor cores",
    "fp8": "the GPUs compute in FP8",
    "cpus_per_gpu": "cores per GPU the site enforces or bills",
    "gpu_flag": "the GPU request flag, e.g. `--gpus-per-node={n}`",
    "memory_flag": "the memory request flag, e.g. `--mem={gb}G`",
    "launch": "`srun-per-gpu` or `torchrun-per-node`",
    "cpu_bind": "srun's `--cpu-bind` value",
    "torchrun": "the torchrun command (e.g. `torchrun_jsc`)",
    "master_addr_suffix": "suffix of the master host name (`i` at JSC)",
    "master_port": "rendezvous port",
    "backend": "torch.distributed backend on GPUs (`nccl`)",
    "module_use": "module folders to add",
    "internet": "compute nodes reach the internet",
    "gpu_resource": "Kubernetes resource name of a GPU",
    "shm_size": "size of /dev/shm in the pod",
}
_TARGET_KEYS = {"partition", "qos", "container", "image", "namespace", "modules", "exclusive", "env"}
MACHINE_OVERRIDES = {
    key: _f(_OVERRIDE_TYPES[kind], _OVERRIDE_DOCS.get(key, f"the profile's `{key}`"))
    for key, kind in OVERRIDE_KEYS.items()
    if key not in _TARGET_KEYS
}

BLOCKS: dict[str, BlockSpec] = {
    "twin": BlockSpec(
        "The digital twin this blueprint trains.",
        {
            "description": _f(Str(), "one line on what the twin is", default=""),
            "version": _f(Str(), "the blueprint's own version", default="0.1"),
        },
        label="the twin's name",
        required=True,
    ),
    "data": BlockSpec(
        "A data set and how it is loaded.",
        {
            "source": _f(DATA_SOURCE, "where samples come from", True),
            "split": _f(
                Record(
                    {
                        "train": _f(FRACTION, "fraction for training", True),
                        "val": _f(Float(min=0.0, max=1.0), "fraction for validation", default=0.0),
                        "test": _f(Float(min=0.0, max=1.0), "fraction held out for the test evaluation at the end of the run (`dtec evaluate`)", default=0.0),
                        "order": _f(Sym(SPLIT_ORDERS), "`random`: a seeded shuffle before splitting; `time`: contiguous in sample order, train first, then val, then test (windowed sources cut the time axis itself, docs/data.md); `auto`: `time` for windowed sources (zarr, netcdf), else `random`", default="auto"),
                    }
                ),
                "train/validation/test fractions of the samples, each rounded to whole samples; what they leave over is not used (DT319)",
                default={"train": 0.9, "val": 0.1, "test": 0.0, "order": "auto"},
            ),
            "normalize": _f(Sym(NORMALIZATIONS), "scale the inputs of a zarr, netcdf or hdf5 source per variable: `standard` (mean 0, std 1) or `minmax` (0 to 1), with statistics of the train split only, saved as the run's `stats.json`", default="none"),
            "batch": _f(POSITIVE, "batch size per rank", True),
            "workers": _f(OneOf((NON_NEGATIVE, Sym(("auto",)))), "loader workers per rank", default="auto"),
            "shuffle": _f(Bool(), "reshuffle the training data every epoch", default=True),
            "path": _f(Str(), "folder with your own Python code (a `python()` source), relative to the blueprint; copied into the bundle"),
            "input": _f(DATA_INPUT, "what the model reads of a `python()` source's dict items, `field(\"X\")` (default: the first of each `(input, target)` pair)"),
            "fields": _f(ListOf(Name(), 1), "other fields of a `python()` source's dict items that the batch carries to the objective by name: a `gan`'s `extra` terms and `condition`, a `python()` step's `batch` (e.g. `[ang, ecal]`; needs `input = field(...)`)"),
            "target": _f(DATA_TARGET, "what the model is scored against: `field(\"Y\")` of dict items, `input`, or `channels(k)` of each sample (the rest is the input) (default: the second of each pair)"),
        },
        label="the data set's name",
        multiple=True,
    ),
    "model": BlockSpec(
        "A neural network.",
        {
            "arch": _f(ARCH, "the architecture", True),
            "input": _f(Ref("data"), "the data set it reads", True),
            "path": _f(Str(), "folder with your own Python code, relative to the blueprint; copied into the bundle"),
            "weights": _f(WEIGHTS, "start from trained weights: `from(run = \"runs/stage1/local/<id>\")` or `from(blueprint = \"stage1.twin\")` (docs/runs.md)"),
            "freeze": _f(ListOf(Str(), 1), "parameters not trained, by name prefix (`[\"down\", \"head.weight\"]`): `requires_grad` off, left out of the optimizer"),
            "init": _f(INIT, "how the weights are initialised before training, alike on every rank: `normal(std = 0.02)`, `xavier`, `zeros` (applied before `weights = from(...)` loads any; default: as each layer initialises itself)"),
            "outputs": _f(ListOf(Name(), 1), "names of the parts a `python()` model returns, as a tuple or a dict, e.g. `[recon, mu, logvar]`; the objective takes them by name (default: one tensor, the prediction; `supervised` scores the first)"),
        },
        label="the model's name",
        multiple=True,
    ),
    "train": BlockSpec(
        "How the model is trained.",
        {
            "model": _f(Ref("model"), "the model to train (default: the only model)"),
            "objective": _f(OBJECTIVE, "what a training step optimises: `supervised`, `elbo(...)`, `gan(...)`, `reverse_kl(...)` or your `python(\"module:step\")` (docs/custom-training.md)", default={"fn": "supervised"}),
            "loss": _f(LOSS, "the loss function (needed by `supervised`; `elbo` takes its own `recon`)"),
            "optimizer": _f(OPTIMIZER, "the optimizer (a `gan`'s models: one `optimizer` block each, or each a copy of this one)", default={"fn": "adamw"}),
            "scheduler": _f(SCHEDULER, "the learning-rate schedule", default={"fn": "none"}),
            "epochs": _f(POSITIVE, "passes over the training data", default=1),
            "max_steps": _f(POSITIVE, "stop after this many optimizer steps"),
            "precision": _f(Sym(PRECISIONS), "numeric precision (`auto`: bf16 where supported)", default="auto"),
            "seed": _f(NON_NEGATIVE, "seed of every random generator", default=0),
            "seed_per_rank": _f(Bool(), "after the weights are initialised (alike on every rank), each rank reseeds its generators with a stream of its own: dropout, noise and draws in your code differ across ranks", default=False),
            "grad_accum": _f(POSITIVE, "micro-batches per optimizer step", default=1),
            "clip_grad": _f(Float(min=0.0, open_min=True), "clip the gradient norm to this value"),
            "metrics": _f(
                ListOf(METRIC),
                "validation metrics recorded each epoch as `val_<name>` (`val_f1_micro` for a micro "
                "average), besides `val_loss` (always) and `val_accuracy` (always for classification)",
                default=[],
            ),
            "path": _f(Str(), "folder with your own Python code (a `python()` loss), relative to the blueprint; copied into the bundle"),
            "stop_early": _f(
                Record(
                    {
                        "monitor": _f(MONITORED, "the validation metric watched, e.g. `min(val_loss)`", True),
                        "patience": _f(POSITIVE, "epochs without improvement before training stops", default=10),
                        "min_delta": _f(Float(min=0.0), "the smallest change that counts as an improvement", default=0.0),
                    }
                ),
                "stop when the monitored metric has not improved by `min_delta` for `patience` epochs",
            ),
            "deterministic": _f(
                Bool(),
                "deterministic algorithms only (`torch.use_deterministic_algorithms`, cuDNN): "
                "bit-identical reruns, at a cost in speed (docs/training-script.md)",
                default=False,
            ),
            "checkpoint": _f(
                Record(
                    {
                        "every": _f(POSITIVE, "epochs between checkpoints", default=1),
                        "keep": _f(POSITIVE, "checkpoints kept", default=2),
                        "best": _f(MONITORED, "also keep `checkpoints/best.pt`, the best epoch by this metric (never pruned)"),
                        "final": _f(Sym(("last", "best")), "`final_model.pt` holds the last weights or, with `best`, the best checkpoint's", default="last"),
                    }
                ),
                "checkpointing",
                default={"every": 1, "keep": 2, "final": "last"},
            ),
            "export": _f(Sym(EXPORTERS), "export the final model at the end of the run, for `predict.py`: `torch_export` (`model.pt2`), `torchscript` (`model.ts`) or `none`", default="torch_export"),
        },
        required=True,
    ),
    "optimizer": BlockSpec(
        "The optimizer of one model, where the objective trains several (`gan`): one block per model (docs/custom-training.md).",
        {
            "model": _f(Ref("model"), "the model it trains", True),
            "fn": _f(OPTIMIZER, "the optimizer and its settings, as `train.optimizer` writes them: `rmsprop(lr = 1e-3)`", True),
        },
        label="the optimizer's name (its state in checkpoints)",
        multiple=True,
    ),
    "strategy": BlockSpec(
        "How the training is distributed.",
        {
            "kind": _f(Sym(STRATEGIES), "the strategy (`auto`: decided from the machine and model)", default="auto"),
            "nodes": _f(POSITIVE, "nodes", default=1),
            "gpus_per_node": _f(OneOf((NON_NEGATIVE, Sym(("all",)))), "GPUs used per node", default="all"),
            "procs_per_node": _f(POSITIVE, "ranks per node where the machine has no GPUs", default=1),
            "zero": _f(Int(min=1, max=3), "DeepSpeed ZeRO stage"),
            "find_unused_parameters": _f(
                Bool(),
                "DDP: look for parameters a step leaves without gradient (a graph traversal per step); "
                "default: on for `gan`, whose updates use part of a model's outputs, else off",
            ),
        },
    ),
    "monitor": BlockSpec(
        "What is measured during training.",
        {
            "timing": _f(Bool(), "per-step timing and throughput", default=True),
            "energy": _f(Bool(), "GPU power and energy per epoch", default=False),
            "profiler": _f(PROFILER, "a profiler", default={"fn": "none"}),
            "track": _f(
                OneOf((ListOf(TRACKER, 1), TRACKER)),
                "log the run to experiment trackers (rank 0): `mlflow(...)`, `tensorboard()`, or a list of both",
            ),
            "log_every": _f(
                POSITIVE,
                "optimizer steps between progress lines and `step` records in `metrics.jsonl` "
                "(default: about ten per epoch, and at least every 100 steps; each one syncs the GPU)",
            ),
        },
    ),
    "scaling": BlockSpec(
        "A scaling study: `dtec run` trains the blueprint at each world size (or node count) and measures every step (docs/scaling.md).",
        {
            "ranks": _f(ListOf(POSITIVE, 1), "world sizes to run, e.g. `[1, 2, 4, 8]` (GPUs, or CPU processes where the machine has none); or `nodes`"),
            "nodes": _f(ListOf(POSITIVE, 1), "whole-node counts to run, e.g. `[1, 2, 4]`; or `ranks`"),
            "mode": _f(Sym(SCALING_MODES), "strong: the global batch of the first point is kept (per-rank batch = global / ranks); weak: the per-rank batch is kept", default="weak"),
            "steps": _f(POSITIVE, "measured optimizer steps per point, after the warm-up", default=200),
            "warmup": _f(NON_NEGATIVE, "optimizer steps per point before measuring (not recorded)", default=20),
            "repeats": _f(POSITIVE, "times each point is run (separate launches; the report takes the median)", default=1),
        },
    ),
    "sweep": BlockSpec(
        "A hyper-parameter sweep: `dtec run` trains the blueprint once per trial of an Optuna study (docs/sweeps.md).",
        {
            "metric": _f(Sym(tuple(METRICS)), "the validation metric a trial is scored by: its best epoch's value", default="val_loss"),
            "goal": _f(Sym(tuple(SWEEP_GOALS)), "`minimize` or `maximize` the metric (default: the metric's better direction)"),
            "trials": _f(POSITIVE, "trials that complete (or are pruned) before the sweep ends", True),
            "parallel": _f(POSITIVE, "workers running trials at the same time", default=1),
            "sampler": _f(Sym(SAMPLERS), "how trials' values are drawn: `tpe`, `random`, `grid` (only `choice`), `cmaes`", default="tpe"),
            "pruner": _f(Sym(PRUNERS), "stop bad trials early on their per-epoch values: `median`, `hyperband` or `none`", default="median"),
            "space": _f(ListOf(DISTRIBUTION, 1), "the values tried: `[loguniform(\"train.optimizer.lr\", 1e-5, 1e-2), choice(\"data.gauges.batch\", [32, 64])]`", True),
            "storage": _f(Str(), "`journal`: a file in the study folder (no server; one file system); or a database URL `postgresql://…`", default="journal"),
            "storage_secret": _f(Str(), "Kubernetes: the Secret and key (`optuna-db/url`) the worker pods read the storage URL from; `storage` stays dtec's own connection"),
            "retries": _f(NON_NEGATIVE, "times a trial whose worker died is run again", default=2),
            "seed": _f(NON_NEGATIVE, "seed of the sampler (each worker adds its number, and a multiple of the trials the study held when it started)"),
        },
    ),
    "target": BlockSpec(
        "A machine to run on, with the site settings for it.",
        {
            "profile": _f(Str(), "the machine profile (`dtec targets`) when the label names something else, e.g. `target \"juwels-devel\" { profile = \"juwels-booster\" }`"),
            "account": _f(Str(), "project or budget to charge"),
            "partition": _f(Str(), "Slurm partition"),
            "qos": _f(Str(), "Slurm quality of service"),
            "walltime": _f(Duration(), "time limit of the job"),
            "container": _f(Str(), "container image (`.sif` path or `docker://` URL) on HPC"),
            "modules": _f(ListOf(Str()), "modules to load before running"),
            "venv": _f(Str(), "Python venv to activate after the modules (`$NAME` expands; `dtec env` builds one)"),
            "setup": _f(ListOf(Str()), "commands run before the launch: words, quotes and `$NAME`, nothing else (docs/machines.md)"),
            "env": _f(Dict(Str()), "extra environment variables"),
            "image": _f(Str(), "container image (Kubernetes)"),
            "namespace": _f(Str(), "namespace (Kubernetes)"),
            "queue": _f(Str(), "Kueue LocalQueue the job waits in (Kubernetes: the `kueue.x-k8s.io/queue-name` label)"),
            "priority_class": _f(Str(), "Kueue WorkloadPriorityClass (Kubernetes: the `kueue.x-k8s.io/priority-class` label)"),
            "runtime": _f(Str(), "the ClusterTrainingRuntime a Kubeflow TrainJob runs on (default: the profile's, `torch-distributed`)"),
            "exclusive": _f(Bool(), "ask for whole nodes"),
            "reservation": _f(Str(), "Slurm reservation"),
            "data_root": _f(
                Str(),
                "the folder on the machine that relative data paths are read from (`$DTEC_DATA_ROOT`; "
                "relative: to the bundle); default: the blueprint's folder, set by `dtec run`",
            ),
        },
        label="the machine profile (unless `profile` names one) and the target's name",
        multiple=True,
        blocks={
            "machine": BlockSpec("Overrides of the machine profile's values.", MACHINE_OVERRIDES),
        },
    ),
}

# Hints for an attribute that names a nested block (`machine = "…"`), by (block, key).
BLOCK_NOT_ATTRIBUTE = {
    ("target", "machine"): 'the machine profile is named with `profile = "…"`; `machine { … }` overrides its values',
}

REQUIRED_KINDS = ("data", "model")  # at least one of each, besides the required singletons
