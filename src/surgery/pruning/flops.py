"""FLOPs of a model for one input (batch 1).

Convention: 2 FLOPs per multiply-accumulate of the layers that hold nearly all
the arithmetic: Conv1D/2D/3D (grouped too), Conv*Transpose, DepthwiseConv,
SeparableConv (depthwise + pointwise) and Dense (on any rank). Bias adds,
BatchNormalization (folded into the convolution at inference), activations,
pooling and element-wise merges are not counted; nested models are counted
through. With their classifiers at 224x224, ResNet50 counts 7.7 GFLOPs,
VGG16 30.9, MobileNetV2 0.60. Many papers (and Torch-Pruning's
count_ops_and_params) report multiply-accumulates and call them FLOPs
(ResNet50 "4.1 GFLOPs"): halve these numbers to compare.
"""

from __future__ import annotations

import numpy as np


def _prod(values) -> int:
    return int(np.prod([int(v) for v in values], dtype=np.int64)) if len(values) else 1


COUNTED = {
    "Conv1D",
    "Conv2D",
    "Conv3D",
    "Conv1DTranspose",
    "Conv2DTranspose",
    "Conv3DTranspose",
    "DepthwiseConv1D",
    "DepthwiseConv2D",
    "SeparableConv1D",
    "SeparableConv2D",
    "Dense",
}


def layer_macs(layer, in_shape, out_shape) -> int:
    """Multiply-accumulates of one call of ``layer`` for one example (0 for layers not counted)."""
    name = type(layer).__name__
    if not type(layer).__module__.startswith("keras."):
        return 0
    if name in ("Conv1D", "Conv2D", "Conv3D"):
        cin = in_shape[-1]
        return _prod(out_shape[1:-1]) * _prod(layer.kernel_size) * (cin // layer.groups) * out_shape[-1]
    if name in ("Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose"):
        return _prod(in_shape[1:-1]) * _prod(layer.kernel_size) * in_shape[-1] * out_shape[-1]
    if name in ("DepthwiseConv1D", "DepthwiseConv2D"):
        return _prod(out_shape[1:-1]) * _prod(layer.kernel_size) * out_shape[-1]
    if name in ("SeparableConv1D", "SeparableConv2D"):
        mid = in_shape[-1] * layer.depth_multiplier
        return _prod(out_shape[1:-1]) * (_prod(layer.kernel_size) * mid + mid * out_shape[-1])
    if name == "Dense":
        return _prod(out_shape[1:-1]) * in_shape[-1] * out_shape[-1]
    return 0


def flops(model) -> int:
    """2 x the multiply-accumulates of ``model`` for batch 1 (see the module docstring)."""
    from .deps import OpError, keras, model_nodes
    from .walk import functional_graph

    k = keras()
    total = 0
    for node in model_nodes(functional_graph(model)):
        op = node.operation
        if op is None or node.is_input:
            continue
        if isinstance(op, k.Model):
            total += flops(op)  # OpError for a subclassed model: its arithmetic cannot be read
            continue
        if not node.input_tensors or len(node.outputs) != 1:
            continue
        in_shape, out_shape = node.input_tensors[0].shape, node.outputs[0].shape
        if type(op).__name__ not in COUNTED or not type(op).__module__.startswith("keras."):
            continue  # not a counted layer: its shapes do not matter
        if any(s is None for s in tuple(in_shape[1:]) + tuple(out_shape[1:])):
            raise OpError(f"FLOPs need fixed shapes; '{op.name}' has input {in_shape} and output {out_shape}")
        total += 2 * layer_macs(op, in_shape, out_shape)
    return int(total)
