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
channels. That is the rule everywhere here: when in doubt, block, never guess.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np


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
        except Exception:
            continue
        for i, v in enumerate(weights):
            if v is obj:
                index.setdefault(attr, i)
    return index


def unknown(reason: str) -> Rule:
    return Rule("unknown", reason=reason)


# keras.activations that act on each element alone; everything else (softmax, glu, ...) mixes channels.
ELEMENTWISE_ACTIVATIONS = {
    "celu", "elu", "exponential", "gelu", "hard_shrink", "hard_sigmoid", "hard_silu", "hard_swish",
    "hard_tanh", "leaky_relu", "linear", "log_sigmoid", "mish", "relu", "relu6", "selu", "sigmoid",
    "silu", "swish", "soft_shrink", "softplus", "softsign", "sparse_plus", "sparse_sigmoid",
    "squareplus", "tanh", "tanh_shrink", "threshold",
}
MERGE_LAYERS = {"Add", "Subtract", "Multiply", "Maximum", "Minimum", "Average"}
MERGE_OPS = {"Add", "Subtract", "Multiply", "Divide", "TrueDivide", "Maximum", "Minimum", "Power"}
UNARY_OPS = {
    "Relu", "Relu6", "Sigmoid", "Silu", "Swish", "HardSigmoid", "HardSilu", "HardSwish", "Gelu", "Elu",
    "Selu", "Softplus", "Softsign", "LeakyRelu", "LogSigmoid", "Celu", "Mish", "Tanh", "Abs", "Absolute",
    "Sqrt", "Square", "Exp", "Log", "Negative", "Sign", "Sin", "Cos", "Erf", "Clip", "Round", "Floor", "Ceil",
}
SAME_SHAPE_LAYERS = {
    "ReLU", "LeakyReLU", "ELU", "Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D",
    "GaussianNoise", "GaussianDropout", "AlphaDropout", "ActivityRegularization", "Identity",
}
SPATIAL_LAYERS = {  # change only the axes between batch and channels (channels_last)
    "MaxPooling1D", "MaxPooling2D", "MaxPooling3D", "AveragePooling1D", "AveragePooling2D",
    "AveragePooling3D", "GlobalMaxPooling1D", "GlobalMaxPooling2D", "GlobalMaxPooling3D",
    "GlobalAveragePooling1D", "GlobalAveragePooling2D", "GlobalAveragePooling3D", "ZeroPadding1D",
    "ZeroPadding2D", "ZeroPadding3D", "Cropping1D", "Cropping2D", "Cropping3D", "UpSampling1D",
    "UpSampling2D", "UpSampling3D", "Resizing", "CenterCrop", "RepeatVector",
}
CONVS = {"Conv1D", "Conv2D", "Conv3D"}
CONV_TRANSPOSES = {"Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose"}
DEPTHWISE = {"DepthwiseConv1D", "DepthwiseConv2D"}
SEPARABLE = {"SeparableConv1D", "SeparableConv2D"}


def activation_name(fn) -> str | None:
    return getattr(fn, "__name__", None)


def _activation_problem(layer) -> str | None:
    """Why a layer's own activation forbids removing its output channels, or None."""
    name = activation_name(getattr(layer, "activation", None))
    if name is None or name in ELEMENTWISE_ACTIVATIONS:
        return None
    return f"'{layer.name}' applies the activation {name!r} across its output channels"


def _channels_last(layer) -> bool:
    return getattr(layer, "data_format", "channels_last") in (None, "channels_last")


def _last_axis(axis, rank: int) -> bool:
    return axis == -1 or axis == rank - 1


def _axes(axis) -> tuple:
    return tuple(axis) if isinstance(axis, (list, tuple)) else (axis,)


def _set(key: str, side: str = "out"):
    def update(cfg, keep_in, keep_out):
        cfg[key] = int((keep_out if side == "out" else keep_in).sum())
        return cfg

    return update


def _grouped_conv_config(cfg, keep_in, keep_out):
    cfg["filters"] = int(keep_out.sum())
    cfg["groups"] = int(keep_in.sum())
    return cfg


def classify(op, node, calls: int) -> Rule:
    """The rule for one call node (``calls``: how often ``op`` is called in the model)."""
    from .deps import keras

    k = keras()
    cls = type(op)
    name, module = cls.__name__, cls.__module__
    if node.is_input:
        return Rule("input")
    label = f"'{op.name}' ({name})"
    if isinstance(op, k.Model):
        return unknown(f"{label} is a nested model, which the pruner does not enter")
    if calls > 1:
        return unknown(f"{label} is called {calls} times (a shared layer)")
    if len(node.outputs) != 1:
        return unknown(f"{label} has {len(node.outputs)} outputs")
    out = node.outputs[0]
    if len(out.shape) < 2 or out.shape[-1] is None:
        return unknown(f"{label} gives a tensor without a fixed channel axis")
    if not module.startswith("keras."):
        return unknown(f"{label} is not a layer the pruner understands")
    if module.startswith("keras.src.ops."):
        return _op_rule(op, node, label)
    policy = getattr(op, "dtype_policy", None)
    if getattr(policy, "quantization_mode", None):
        return unknown(f"{label} is quantized")
    if getattr(op, "lora_enabled", False):
        return unknown(f"{label} has LoRA weights")
    rule = _layer_rule(op, node, name, module, label)
    if rule.kind != "unknown":
        index = weight_index(op)
        known = {index[n] for n in {r.weight for r in rule.roles} | set(rule.fixed) if n in index}
        extra = [v.name for i, v in enumerate(op.weights) if i not in known]
        if extra:
            return unknown(f"{label} has weights the pruner does not know ({', '.join(extra)})")
    return rule


def _scalar(x) -> bool:
    return np.size(x) == 1 if isinstance(x, (int, float, np.ndarray, np.number)) else False


def _op_rule(op, node, label) -> Rule:
    from .deps import keras

    name = type(op).__name__
    kt = keras().KerasTensor
    constants = [a for a in list(node.arguments.args) + list(node.arguments.kwargs.values()) if not isinstance(a, kt)]
    if name in MERGE_OPS or name in UNARY_OPS:
        if not all(_scalar(c) or c is None for c in constants):
            return unknown(f"{label} has a constant operand that is not a scalar")
        return Rule("merge" if name in MERGE_OPS else "pass")
    return unknown(f"{label} is an op the pruner does not understand")


def _layer_rule(layer, node, name, module, label) -> Rule:
    rank = len(node.outputs[0].shape)
    in_rank = len(node.input_tensors[0].shape) if node.input_tensors else 0
    layout_matters = name in CONVS | CONV_TRANSPOSES | DEPTHWISE | SEPARABLE | {"Flatten"} | SPATIAL_LAYERS
    if layout_matters and not _channels_last(layer):
        return unknown(f"{label} is channels_first")
    act = _activation_problem(layer)
    bias_out = Role("bias", "out", 0)
    if name in CONVS:
        cin, groups = node.input_tensors[0].shape[-1], layer.groups
        if groups == 1:
            return Rule("producer", roles=(Role("kernel", "in", -2, score=True), Role("kernel", "out", -1, score=True),
                                           bias_out), out_reason=act, config=_set("filters"))
        if groups == cin:
            return Rule("repeat", repeat=layer.filters // cin, out_reason=act, config=_grouped_conv_config,
                        roles=(Role("kernel", "out", -1, score=True), bias_out))
        return unknown(f"{label} is a grouped convolution ({groups} groups over {cin} channels), "
                       "which the pruner does not split")
    if name in CONV_TRANSPOSES:
        return Rule("producer", roles=(Role("kernel", "in", -1, score=True), Role("kernel", "out", -2, score=True),
                                       bias_out), out_reason=act, config=_set("filters"))
    if name == "Dense":
        return Rule("producer", roles=(Role("kernel", "in", 0, score=True), Role("kernel", "out", 1, score=True),
                                       bias_out), out_reason=act, config=_set("units"))
    if name == "Embedding":  # its input is token ids, not channels: only its output dimension is pruned
        return Rule("producer", roles=(Role("embeddings", "out", 1, score=True),), config=_set("output_dim"))
    if name in DEPTHWISE:
        return Rule("repeat", repeat=layer.depth_multiplier, out_reason=act,
                    roles=(Role("kernel", "in", -2, score=True), bias_out))
    if name in SEPARABLE:
        m = layer.depth_multiplier
        return Rule("producer", out_reason=act, config=_set("filters"), roles=(
            Role("depthwise_kernel", "in", -2, score=True), Role("pointwise_kernel", "in", -2, repeat=m, score=True),
            Role("pointwise_kernel", "out", -1, score=True), bias_out))
    if name == "BatchNormalization":
        if not _last_axis(layer.axis, rank):
            return unknown(f"{label} normalises axis {layer.axis}, not the channel axis")
        return Rule("pass", bn=True, roles=(Role("gamma", "out", 0, score=True), Role("beta", "out", 0),
                                            Role("moving_mean", "out", 0), Role("moving_variance", "out", 0)))
    if name in ("LayerNormalization", "UnitNormalization", "GroupNormalization", "RMSNormalization"):
        axes = _axes(getattr(layer, "axis", -1))
        if name == "GroupNormalization" or any(_last_axis(a, rank) for a in axes):
            return Rule("block", reason=f"{label} normalises across the channel axis, so removing a channel "
                                        "would change the others", roles=_same_size_roles(layer))
        return unknown(f"{label} normalises other axes than the channels")
    if name == "Softmax" or (name == "Activation" and activation_name(layer.activation) in ("softmax", "log_softmax")):
        axes = _axes(getattr(layer, "axis", -1))
        if any(_last_axis(a, rank) for a in axes):
            return Rule("block", reason=f"{label} takes a softmax across the channel axis")
        return Rule("pass")
    if name == "Activation":
        return Rule("pass") if act is None else unknown(act)
    if name in SAME_SHAPE_LAYERS or name in SPATIAL_LAYERS:
        return Rule("pass")
    if name == "PReLU":
        return Rule("pass", roles=(Role("alpha", "out", -1),))
    if name == "Normalization":
        axes = _axes(layer.axis)
        if len(axes) != 1 or not _last_axis(axes[0], in_rank):
            return unknown(f"{label} normalises with statistics over axes {axes}, not the channel axis alone")
        problem = _arrays_problem(layer, ("mean", "variance"), node.outputs[0].shape[-1], label)
        if problem:
            return unknown(problem)
        return Rule("pass", roles=(Role("mean", "out", -1), Role("variance", "out", -1)), fixed=("count",),
                    config=_array_config("mean", "variance"))
    if name == "Rescaling":
        problem = _arrays_problem(layer, ("scale", "offset"), node.outputs[0].shape[-1], label)
        return unknown(problem) if problem else Rule("pass", config=_array_config("scale", "offset"))
    if name == "LayerScale" and module == "keras.src.applications.convnext":
        return Rule("pass", roles=(Role("gamma", "out", 0, score=True),), config=_set("projection_dim"))
    if name == "CustomScaleLayer" and module == "keras.src.applications.inception_resnet_v2":
        return Rule("merge")
    if name == "Reshape":
        target = tuple(layer.target_shape)
        if in_rank >= 2 and node.input_tensors[0].shape[-1] == target[-1] == node.outputs[0].shape[-1]:
            return Rule("pass", config=_reshape_config)
        return unknown(f"{label} changes the channel axis")
    if name == "Flatten":
        return Rule("flatten")
    if name == "Concatenate":
        return Rule("concat" if _last_axis(layer.axis, rank) else "merge")
    if name in MERGE_LAYERS:
        return Rule("merge")
    return unknown(f"{label} is not a layer the pruner understands")


def _same_size_roles(layer) -> tuple:
    """Per-channel weights (LayerNormalization's gamma/beta) of a block layer: channels never go, so unsliced."""
    return tuple(Role(v.name, "out", -1) for v in layer.weights)


def _reshape_config(cfg, keep_in, keep_out):
    cfg["target_shape"] = tuple(cfg["target_shape"][:-1]) + (int(keep_out.sum()),)
    return cfg


def _array_config(*keys):
    """Per-channel arrays in a config (Rescaling's scale/offset, Normalization's mean/variance) lose channels too."""

    def update(cfg, keep_in, keep_out):
        for key in keys:
            value = cfg.get(key)
            if value is None or isinstance(value, dict):
                continue
            arr = np.asarray(value)
            if arr.size > 1:
                sliced = np.compress(keep_out, arr.reshape(-1), axis=-1).reshape(arr.shape[:-1] + (-1,))
                cfg[key] = sliced.tolist() if isinstance(value, (list, tuple)) else sliced
        return cfg

    return update


def _arrays_problem(layer, keys, channels: int, label: str) -> str | None:
    """Rescaling/Normalization constants must be scalars or one value per channel; anything else is not understood."""
    cfg = layer.get_config()
    for key in keys:
        value = cfg.get(key)
        if value is None or isinstance(value, dict):
            continue
        arr = np.asarray(value)
        if arr.size > 1 and (arr.ndim == 0 or arr.shape[-1] != channels or arr.size != channels):
            return f"{label} has a {key} of shape {arr.shape}, not one value per channel"
    return None
