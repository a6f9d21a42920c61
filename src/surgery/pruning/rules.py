"""How channel ids flow through each layer or op, and which weight slices belong to which channel.

``classify(op, node, calls)`` returns a :class:`Rule` for one call node of a
model. The analysis (``channels.py``) only needs ``kind`` to move ids; the
rebuild and the importance read ``roles`` (which axis of which weight runs
over input or output channel positions) and ``config`` (how the layer's
config changes when channels go).

Kinds:

- ``input``    the model's input: fresh ids, never pruned
- ``producer`` consumes its input channels and makes fresh output ids (Conv, Dense, SeparableConv)
- ``repeat``   output position ``c*k + j`` carries input channel ``c`` (DepthwiseConv, Conv with groups == C)
- ``pass``     output ids are the input ids (per-channel layers: BN, activations, pooling, ...)
- ``block``    like ``pass``, but the ids may never be removed (``reason``): LayerNormalization, softmax
- ``merge``    element-wise: the inputs' ids are unified, a size-1 last axis broadcasts (Add, Multiply, ...)
- ``concat``   ids concatenated (Concatenate on the last axis)
- ``flatten``  ids tiled over the flattened positions (channels_last: index = spatial * C + c)
- ``unknown``  anything else: its inputs are blocked and its outputs get fresh blocked ids

The class lists are exact (``type(layer).__name__`` in a ``keras.*`` module):
a user's subclass of Conv2D is ``unknown`` until someone says how it treats
channels (a plugin does, through ``surgery_register_channel_rules``). That is the
rule everywhere here: when in doubt, block, never guess.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

RULE_KINDS = ("input", "producer", "repeat", "pass", "block", "merge", "concat", "flatten", "unknown")


@dataclass(frozen=True)
class Role:
    """One weight's axis that runs over the input or output channel positions of a layer."""

    weight: str  # the variable's name (``v.name``): kernel, bias, gamma, ...
    side: str  # "in" (the first input's last axis) or "out" (the output's last axis)
    axis: int
    repeat: int = 1  # index r of the axis belongs to position r // repeat (SeparableConv's pointwise rows)
    score: bool = False  # counted in the group importance (kernels, BN and LayerScale gammas)


@dataclass
class Rule:
    kind: str
    reason: str | None = None  # why the ids are blocked (block, unknown)
    repeat: int = 1  # for "repeat": outputs per input channel
    roles: tuple = ()
    out_reason: str | None = None  # a producer whose outputs may never be removed (softmax activation)
    config: Callable | None = None  # (config, keep_in, keep_out) -> new config
    bn: bool = False  # a BatchNormalization (its gamma is the bn_scale criterion)
    fixed: tuple = field(default=())  # weights that do not depend on channels (Normalization's count)


_ALIASES = ("gamma",)  # attributes naming a weight whose variable name is generic (LayerScale's "variable_3")


def weight_index(layer) -> dict:
    """{name: index in ``layer.weights``}: the variables' names, and attribute aliases for generic ones."""
    weights = layer.weights
    index = {v.name: i for i, v in enumerate(weights)}
    for attr in _ALIASES:
        try:
            obj = getattr(layer, attr, None)
        except Exception:  # noqa: BLE001 (a layer the analysis cannot read is unprunable, whatever it raises)
            continue
        for i, v in enumerate(weights):
            if v is obj:
                index.setdefault(attr, i)
    return index


def role_ids(rec, role) -> np.ndarray:
    """The ids along ``role``'s axis of its weight, one per index."""
    ids = rec.in_ids[0] if role.side == "in" else rec.out_ids[0]
    return np.repeat(ids, role.repeat) if role.repeat > 1 else ids


def unknown(reason: str) -> Rule:
    return Rule("unknown", reason=reason)


# keras.activations that act on each element alone; everything else (softmax, glu, ...) mixes channels.
ELEMENTWISE_ACTIVATIONS = {
    "celu",
    "elu",
    "exponential",
    "gelu",
    "hard_shrink",
    "hard_sigmoid",
    "hard_silu",
    "hard_swish",
    "hard_tanh",
    "leaky_relu",
    "linear",
    "log_sigmoid",
    "mish",
    "relu",
    "relu6",
    "selu",
    "sigmoid",
    "silu",
    "swish",
    "soft_shrink",
    "softplus",
    "softsign",
    "sparse_plus",
    "sparse_sigmoid",
    "squareplus",
    "tanh",
    "tanh_shrink",
    "threshold",
}
MERGE_LAYERS = {"Add", "Subtract", "Multiply", "Maximum", "Minimum", "Average"}
MERGE_OPS = {"Add", "Subtract", "Multiply", "Divide", "TrueDivide", "Maximum", "Minimum", "Power"}
UNARY_OPS = {
    "Relu",
    "Relu6",
    "Sigmoid",
    "Silu",
    "Swish",
    "HardSigmoid",
    "HardSilu",
    "HardSwish",
    "Gelu",
    "Elu",
    "Selu",
    "Softplus",
    "Softsign",
    "LeakyRelu",
    "LogSigmoid",
    "Celu",
    "Mish",
    "Tanh",
    "Abs",
    "Absolute",
    "Sqrt",
    "Square",
    "Exp",
    "Log",
    "Negative",
    "Sign",
    "Sin",
    "Cos",
    "Erf",
    "Clip",
    "Round",
    "Floor",
    "Ceil",
}
SAME_SHAPE_LAYERS = {
    "ReLU",
    "LeakyReLU",
    "ELU",
    "Dropout",
    "SpatialDropout1D",
    "SpatialDropout2D",
    "SpatialDropout3D",
    "GaussianNoise",
    "GaussianDropout",
    "AlphaDropout",
    "ActivityRegularization",
    "Identity",
}
SPATIAL_LAYERS = {  # change only the axes between batch and channels (channels_last)
    "MaxPooling1D",
    "MaxPooling2D",
    "MaxPooling3D",
    "AveragePooling1D",
    "AveragePooling2D",
    "AveragePooling3D",
    "GlobalMaxPooling1D",
    "GlobalMaxPooling2D",
    "GlobalMaxPooling3D",
    "GlobalAveragePooling1D",
    "GlobalAveragePooling2D",
    "GlobalAveragePooling3D",
    "ZeroPadding1D",
    "ZeroPadding2D",
    "ZeroPadding3D",
    "Cropping1D",
    "Cropping2D",
    "Cropping3D",
    "UpSampling1D",
    "UpSampling2D",
    "UpSampling3D",
    "Resizing",
    "CenterCrop",
    "RepeatVector",
}
CONVS = {"Conv1D", "Conv2D", "Conv3D"}
CONV_TRANSPOSES = {"Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose"}
DEPTHWISE = {"DepthwiseConv1D", "DepthwiseConv2D"}
SEPARABLE = {"SeparableConv1D", "SeparableConv2D"}


def activation_name(fn) -> str | None:
    return getattr(fn, "__name__", None)


def activation_problem(layer) -> str | None:
    """Why a layer's own activation forbids removing its output channels, or None."""
    name = activation_name(getattr(layer, "activation", None))
    if name is None or name in ELEMENTWISE_ACTIVATIONS:
        return None
    return f"'{layer.name}' applies the activation {name!r} across its output channels"


def is_channels_last(layer) -> bool:
    return getattr(layer, "data_format", "channels_last") in (None, "channels_last")


def is_last_axis(axis, rank: int) -> bool:
    return axis == -1 or axis == rank - 1


def axes_of(axis) -> tuple:
    return tuple(axis) if isinstance(axis, (list, tuple)) else (axis,)


def config_setter(key: str, side: str = "out"):
    def update(cfg, keep_in, keep_out):
        cfg[key] = int((keep_out if side == "out" else keep_in).sum())
        return cfg

    return update


def grouped_conv_config(cfg, keep_in, keep_out):
    cfg["filters"] = int(keep_out.sum())
    cfg["groups"] = int(keep_in.sum())
    return cfg
