"""``classify(op, node, calls)``: the :class:`~surgery.pruning.rules.Rule` of one call node of a model.

The kinds, roles and class lists are in ``rules.py``; this module reads a layer's or op's config and
weights and says which of them applies (and why not, for a layer it cannot vouch for).
"""

from __future__ import annotations

import numpy as np

from .rules import (
    CONV_TRANSPOSES,
    CONVS,
    DEPTHWISE,
    MERGE_LAYERS,
    MERGE_OPS,
    SAME_SHAPE_LAYERS,
    SEPARABLE,
    SPATIAL_LAYERS,
    UNARY_OPS,
    Role,
    Rule,
    activation_name,
    activation_problem,
    axes_of,
    config_setter,
    grouped_conv_config,
    is_channels_last,
    is_last_axis,
    unknown,
    weight_index,
)


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
    if layout_matters and not is_channels_last(layer):
        return unknown(f"{label} is channels_first")
    act = activation_problem(layer)
    bias_out = Role("bias", "out", 0)
    if name in CONVS:
        cin, groups = node.input_tensors[0].shape[-1], layer.groups
        if groups == 1:
            return Rule(
                "producer",
                roles=(Role("kernel", "in", -2, score=True), Role("kernel", "out", -1, score=True), bias_out),
                out_reason=act,
                config=config_setter("filters"),
            )
        if groups == cin:
            return Rule(
                "repeat",
                repeat=layer.filters // cin,
                out_reason=act,
                config=grouped_conv_config,
                roles=(Role("kernel", "out", -1, score=True), bias_out),
            )
        return unknown(
            f"{label} is a grouped convolution ({groups} groups over {cin} channels), which the pruner does not split"
        )
    if name in CONV_TRANSPOSES:
        return Rule(
            "producer",
            roles=(Role("kernel", "in", -1, score=True), Role("kernel", "out", -2, score=True), bias_out),
            out_reason=act,
            config=config_setter("filters"),
        )
    if name == "Dense":
        return Rule(
            "producer",
            roles=(Role("kernel", "in", 0, score=True), Role("kernel", "out", 1, score=True), bias_out),
            out_reason=act,
            config=config_setter("units"),
        )
    if name == "Embedding":  # its input is token ids, not channels: only its output dimension is pruned
        return Rule("producer", roles=(Role("embeddings", "out", 1, score=True),), config=config_setter("output_dim"))
    if name in DEPTHWISE:
        return Rule(
            "repeat",
            repeat=layer.depth_multiplier,
            out_reason=act,
            roles=(Role("kernel", "in", -2, score=True), bias_out),
        )
    if name in SEPARABLE:
        m = layer.depth_multiplier
        return Rule(
            "producer",
            out_reason=act,
            config=config_setter("filters"),
            roles=(
                Role("depthwise_kernel", "in", -2, score=True),
                Role("pointwise_kernel", "in", -2, repeat=m, score=True),
                Role("pointwise_kernel", "out", -1, score=True),
                bias_out,
            ),
        )
    if name == "BatchNormalization":
        if not is_last_axis(layer.axis, rank):
            return unknown(f"{label} normalises axis {layer.axis}, not the channel axis")
        return Rule(
            "pass",
            bn=True,
            roles=(
                Role("gamma", "out", 0, score=True),
                Role("beta", "out", 0),
                Role("moving_mean", "out", 0),
                Role("moving_variance", "out", 0),
            ),
        )
    if name in ("LayerNormalization", "UnitNormalization", "GroupNormalization", "RMSNormalization"):
        axes = axes_of(getattr(layer, "axis", -1))
        if name == "GroupNormalization" or any(is_last_axis(a, rank) for a in axes):
            return Rule(
                "block",
                reason=f"{label} normalises across the channel axis, so removing a channel would change the others",
                roles=_same_size_roles(layer),
            )
        return unknown(f"{label} normalises other axes than the channels")
    if name == "Softmax" or (name == "Activation" and activation_name(layer.activation) in ("softmax", "log_softmax")):
        axes = axes_of(getattr(layer, "axis", -1))
        if any(is_last_axis(a, rank) for a in axes):
            return Rule("block", reason=f"{label} takes a softmax across the channel axis")
        return Rule("pass")
    if name == "Activation":
        return Rule("pass") if act is None else unknown(act)
    if name in SAME_SHAPE_LAYERS or name in SPATIAL_LAYERS:
        return Rule("pass")
    if name == "PReLU":
        return Rule("pass", roles=(Role("alpha", "out", -1),))
    if name == "Normalization":
        axes = axes_of(layer.axis)
        if len(axes) != 1 or not is_last_axis(axes[0], in_rank):
            return unknown(f"{label} normalises with statistics over axes {axes}, not the channel axis alone")
        problem = _arrays_problem(layer, ("mean", "variance"), node.outputs[0].shape[-1], label)
        if problem:
            return unknown(problem)
        return Rule(
            "pass",
            roles=(Role("mean", "out", -1), Role("variance", "out", -1)),
            fixed=("count",),
            config=_array_config("mean", "variance"),
        )
    if name == "Rescaling":
        problem = _arrays_problem(layer, ("scale", "offset"), node.outputs[0].shape[-1], label)
        return unknown(problem) if problem else Rule("pass", config=_array_config("scale", "offset"))
    if name == "LayerScale" and module == "keras.src.applications.convnext":
        return Rule("pass", roles=(Role("gamma", "out", 0, score=True),), config=config_setter("projection_dim"))
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
        return Rule("concat" if is_last_axis(layer.axis, rank) else "merge")
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


def input_form(rule: Rule, op, node) -> str | None:
    """Why a layer reading only the input (in some form) still gives the input in another form, or None.

    Channel-preserving layers carry the input's own channels, which are blocked as the input's. A frozen
    1x1 map from the input's channels to as many channels (the preprocess op's RGB->BGR and means) makes
    new ids, yet each is one colour of every image: removing one would make the model ignore it.
    """
    if rule.kind in ("pass", "block", "repeat"):
        return "the model's input in another form"
    if rule.kind != "producer" or op.trainable:
        return None
    c_in, c_out = node.input_tensors[0].shape[-1], node.outputs[0].shape[-1]
    kernel = getattr(op, "kernel_size", (1,))
    if c_in != c_out or any(k != 1 for k in kernel):
        return None
    return (
        f"'{op.name}' is a fixed map of the model's input channels (preprocessing): each of its channels is "
        "one channel of every image"
    )
