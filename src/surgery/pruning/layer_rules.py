"""What each Keras layer class does to channels: a table from the class name to the function that reads
one such layer's config and weights and gives its :class:`~surgery.pruning.rules.Rule`.

A class missing from ``LAYER_RULES`` is not one the pruner understands: its channels stay (unknown, with
the reason). Adding a class is one function and one entry; ``classify`` checks what holds for every layer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .rules import (
    CONV_TRANSPOSES,
    CONVS,
    DEPTHWISE,
    MERGE_LAYERS,
    SAME_SHAPE_LAYERS,
    SEPARABLE,
    SPATIAL_LAYERS,
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
)

BIAS_OUT = Role("bias", "out", 0)
LAYOUT_MATTERS = CONVS | CONV_TRANSPOSES | DEPTHWISE | SEPARABLE | {"Flatten"} | SPATIAL_LAYERS
NORMALIZATIONS = ("LayerNormalization", "UnitNormalization", "GroupNormalization", "RMSNormalization")


@dataclass(frozen=True)
class Site:
    """One call of a layer: its node, how messages name it, and the module its class comes from."""

    node: Any
    label: str
    module: str

    @property
    def rank(self) -> int:
        return len(self.node.outputs[0].shape)

    @property
    def in_rank(self) -> int:
        return len(self.node.input_tensors[0].shape) if self.node.input_tensors else 0

    @property
    def channels(self) -> int:
        return self.node.outputs[0].shape[-1]


LayerRule = Callable[[Any, Site], Rule]


def layer_rule(layer, site: Site) -> Rule:
    """The rule of one call of a Keras layer, from ``LAYER_RULES`` by its class name."""
    name = type(layer).__name__
    if name in LAYOUT_MATTERS and not is_channels_last(layer):
        return unknown(f"{site.label} is channels_first")
    read = LAYER_RULES.get(name)
    return read(layer, site) if read is not None else unknown(f"{site.label} is not a layer the pruner understands")


def _conv(layer, site: Site) -> Rule:
    act = activation_problem(layer)
    cin, groups = site.node.input_tensors[0].shape[-1], layer.groups
    if groups == 1:
        return Rule(
            "producer",
            roles=(Role("kernel", "in", -2, score=True), Role("kernel", "out", -1, score=True), BIAS_OUT),
            out_reason=act,
            config=config_setter("filters"),
        )
    if groups == cin:
        return Rule(
            "repeat",
            repeat=layer.filters // cin,
            out_reason=act,
            config=grouped_conv_config,
            roles=(Role("kernel", "out", -1, score=True), BIAS_OUT),
        )
    return unknown(
        f"{site.label} is a grouped convolution ({groups} groups over {cin} channels), which the pruner does not split"
    )


def _conv_transpose(layer, site: Site) -> Rule:
    return Rule(
        "producer",
        roles=(Role("kernel", "in", -1, score=True), Role("kernel", "out", -2, score=True), BIAS_OUT),
        out_reason=activation_problem(layer),
        config=config_setter("filters"),
    )


def _dense(layer, site: Site) -> Rule:
    return Rule(
        "producer",
        roles=(Role("kernel", "in", 0, score=True), Role("kernel", "out", 1, score=True), BIAS_OUT),
        out_reason=activation_problem(layer),
        config=config_setter("units"),
    )


def _embedding(layer, site: Site) -> Rule:
    # Its input is token ids, not channels: only its output dimension is pruned.
    return Rule("producer", roles=(Role("embeddings", "out", 1, score=True),), config=config_setter("output_dim"))


def _depthwise(layer, site: Site) -> Rule:
    return Rule(
        "repeat",
        repeat=layer.depth_multiplier,
        out_reason=activation_problem(layer),
        roles=(Role("kernel", "in", -2, score=True), BIAS_OUT),
    )


def _separable(layer, site: Site) -> Rule:
    m = layer.depth_multiplier
    return Rule(
        "producer",
        out_reason=activation_problem(layer),
        config=config_setter("filters"),
        roles=(
            Role("depthwise_kernel", "in", -2, score=True),
            Role("pointwise_kernel", "in", -2, repeat=m, score=True),
            Role("pointwise_kernel", "out", -1, score=True),
            BIAS_OUT,
        ),
    )


def _batch_normalization(layer, site: Site) -> Rule:
    if not is_last_axis(layer.axis, site.rank):
        return unknown(f"{site.label} normalises axis {layer.axis}, not the channel axis")
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


def _normalization_across(layer, site: Site) -> Rule:
    axes = axes_of(getattr(layer, "axis", -1))
    if type(layer).__name__ == "GroupNormalization" or any(is_last_axis(a, site.rank) for a in axes):
        return Rule(
            "block",
            reason=f"{site.label} normalises across the channel axis, so removing a channel would change the others",
            roles=_same_size_roles(layer),
        )
    return unknown(f"{site.label} normalises other axes than the channels")


def _softmax(layer, site: Site) -> Rule:
    if any(is_last_axis(a, site.rank) for a in axes_of(getattr(layer, "axis", -1))):
        return Rule("block", reason=f"{site.label} takes a softmax across the channel axis")
    return Rule("pass")


def _activation(layer, site: Site) -> Rule:
    if activation_name(layer.activation) in ("softmax", "log_softmax"):
        return _softmax(layer, site)
    act = activation_problem(layer)
    return Rule("pass") if act is None else unknown(act)


def _passes(layer, site: Site) -> Rule:
    return Rule("pass")


def _prelu(layer, site: Site) -> Rule:
    return Rule("pass", roles=(Role("alpha", "out", -1),))


def _normalization(layer, site: Site) -> Rule:
    axes = axes_of(layer.axis)
    if len(axes) != 1 or not is_last_axis(axes[0], site.in_rank):
        return unknown(f"{site.label} normalises with statistics over axes {axes}, not the channel axis alone")
    problem = _arrays_problem(layer, ("mean", "variance"), site.channels, site.label)
    if problem:
        return unknown(problem)
    return Rule(
        "pass",
        roles=(Role("mean", "out", -1), Role("variance", "out", -1)),
        fixed=("count",),
        config=_array_config("mean", "variance"),
    )


def _rescaling(layer, site: Site) -> Rule:
    problem = _arrays_problem(layer, ("scale", "offset"), site.channels, site.label)
    return unknown(problem) if problem else Rule("pass", config=_array_config("scale", "offset"))


def _from(module: str, read: LayerRule) -> LayerRule:
    """A rule for a class of one keras.applications module only (another class may share its name)."""

    def checked(layer, site: Site) -> Rule:
        if site.module != module:
            return unknown(f"{site.label} is not a layer the pruner understands")
        return read(layer, site)

    return checked


def _layer_scale(layer, site: Site) -> Rule:
    return Rule("pass", roles=(Role("gamma", "out", 0, score=True),), config=config_setter("projection_dim"))


def _merges(layer, site: Site) -> Rule:
    return Rule("merge")


def _reshape(layer, site: Site) -> Rule:
    target = tuple(layer.target_shape)
    node = site.node
    if site.in_rank >= 2 and node.input_tensors[0].shape[-1] == target[-1] == site.channels:
        return Rule("pass", config=_reshape_config)
    return unknown(f"{site.label} changes the channel axis")


def _flatten(layer, site: Site) -> Rule:
    return Rule("flatten")


def _concatenate(layer, site: Site) -> Rule:
    return Rule("concat" if is_last_axis(layer.axis, site.rank) else "merge")


LAYER_RULES: dict[str, LayerRule] = {
    **dict.fromkeys(CONVS, _conv),
    **dict.fromkeys(CONV_TRANSPOSES, _conv_transpose),
    **dict.fromkeys(DEPTHWISE, _depthwise),
    **dict.fromkeys(SEPARABLE, _separable),
    **dict.fromkeys(NORMALIZATIONS, _normalization_across),
    **dict.fromkeys(SAME_SHAPE_LAYERS | SPATIAL_LAYERS, _passes),
    **dict.fromkeys(MERGE_LAYERS, _merges),
    "Dense": _dense,
    "Embedding": _embedding,
    "BatchNormalization": _batch_normalization,
    "Softmax": _softmax,
    "Activation": _activation,
    "PReLU": _prelu,
    "Normalization": _normalization,
    "Rescaling": _rescaling,
    "LayerScale": _from("keras.src.applications.convnext", _layer_scale),
    "CustomScaleLayer": _from("keras.src.applications.inception_resnet_v2", _merges),
    "Reshape": _reshape,
    "Flatten": _flatten,
    "Concatenate": _concatenate,
}


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
