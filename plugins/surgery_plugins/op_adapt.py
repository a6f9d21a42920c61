"""The ``adapt_input`` op: a new input size or channel count for a built (pretrained) model.

Build the backbone as its weights were trained (3 channels), then adapt: the
first convolution's kernel is rewritten for the new channel count by a
documented rule, and every other layer is called again on the new input, so
it keeps its weights exactly. Working on a built model, rather than inside the
backbone op, makes this work for every start (keras.applications, a saved
``.keras`` model, a plugin's backbone) and shows the adaptation as its own step.

Rules, for a kernel of C0 input channels adapted to C (``kh, kw, C0, F`` ->
``kh, kw, C, F``):

- ``mean``: every new channel gets the mean of the C0 kernels, times C0/C. A
  C-channel image whose channels all equal g then gives exactly what the
  original gave for (g, g, g): the usual grayscale rule.
- ``repeat``: channel c gets kernel c mod C0, times C0/C (RGB, RGB, ... cycled;
  timm's rule for C > 3).
- ``zeros``: the first C0 channels keep their kernels and the extra ones start
  at zero (C > C0 only), so on RGB plus extra bands the model starts as it was.
"""

from __future__ import annotations

from typing import Any

from surgery import OpError, RegisterOp, State, StepContext, hookimpl, keras, model_nodes

RULES = ("mean", "repeat", "zeros")

# Layers that do the same thing to every channel: the first convolution may sit behind them.
CHANNEL_BLIND = {
    "ZeroPadding2D",
    "Cropping2D",
    "Identity",
    "Dropout",
    "SpatialDropout2D",
    "GaussianNoise",
    "GaussianDropout",
    "Resizing",
    "Activation",
    "ReLU",
    "LeakyReLU",
    "MaxPooling2D",
    "AveragePooling2D",
    "RandomFlip",
    "RandomCrop",
    "RandomRotation",
    "RandomZoom",
    "RandomTranslation",
}

SCHEMA = {
    "type": "object",
    "properties": {
        "channels": {"type": "integer", "minimum": 1, "description": "the new number of input channels"},
        "rule": {
            "enum": list(RULES),
            "default": "mean",
            "description": "how the first convolution's kernel is adapted to the new channel count",
        },
        "size": {
            "type": "array",
            "minItems": 2,
            "maxItems": 2,
            "items": {"anyOf": [{"type": "integer", "minimum": 1}, {"type": "null"}]},
            "description": "the new input [height, width]; null for any size",
        },
    },
    "anyOf": [{"required": ["channels"]}, {"required": ["size"]}],
}


def _check_size(size, info) -> None:
    given = [s for s in size if s is not None]
    if info is not None and info.min_input_size and given and min(given) < info.min_input_size:
        raise OpError(
            f"size {list(size)}: {info.name} needs at least {info.min_input_size}x{info.min_input_size} pixels"
        )


def check(params: dict[str, Any], ctx: StepContext) -> None:
    if "rule" in params and "channels" not in params:
        raise OpError('"rule" applies when "channels" is given')
    if "size" in params:
        _check_size(params["size"], ctx.source_backbone())


def adapt_kernel(kernel, channels: int, rule: str):
    """``kernel`` (kh, kw, C0, F) adapted to ``channels`` input channels by ``rule`` (see the module's text)."""
    import numpy as np

    c0 = kernel.shape[2]
    if rule == "mean":
        return np.repeat(kernel.mean(axis=2, keepdims=True), channels, axis=2) * (c0 / channels)
    if rule == "repeat":
        return kernel[:, :, np.arange(channels) % c0, :] * (c0 / channels)
    if channels <= c0:
        raise OpError(f'rule "zeros" needs more channels than the kernel has ({c0}); got {channels}')
    out = np.zeros(kernel.shape[:2] + (channels,) + kernel.shape[3:], dtype=kernel.dtype)
    out[:, :, :c0] = kernel
    return out


def _blind(layer) -> bool:
    import numpy as np

    cls = type(layer).__name__
    if cls == "Rescaling":
        return np.size(layer.scale) == 1 and np.size(layer.offset) == 1
    return cls in CHANNEL_BLIND


def first_convolutions(model, start) -> list:
    """The Conv2D layers that first mix the channels of tensor ``start``, past channel-blind layers."""
    readers: dict[int, list] = {}
    for node in model_nodes(model):
        for t in node.input_tensors:
            readers.setdefault(id(t), []).append(node)
    convs, stack = [], [start]
    while stack:
        for node in readers.get(id(stack.pop()), []):
            layer, cls = node.operation, type(node.operation).__name__
            if cls == "Conv2D" and layer.groups == 1 and layer.data_format == "channels_last":
                if layer not in convs:
                    convs.append(layer)
            elif _blind(layer):
                stack.extend(node.outputs)
            else:
                raise OpError(
                    f'cannot adapt the input channels: "{layer.name}" ({cls}) comes between the input '
                    "and the first convolution and depends on the channel count; adapt_input rewrites only "
                    "the first Conv2D (build the backbone with include_preprocessing: false where it "
                    "has that option)"
                )
    if not convs:
        raise OpError("cannot adapt the input channels: no Conv2D reads the input")
    return convs


def apply(state: State, params: dict[str, Any], ctx: StepContext) -> State:
    model = state.model
    if len(model.inputs) != 1 or len(model.inputs[0].shape) != 4:
        shapes = ", ".join(str(tuple(t.shape)) for t in model.inputs)
        raise OpError(f"adapt_input needs one image input (None, height, width, channels); the model has {shapes}")
    old = model.inputs[0]
    _, h, w, c0 = tuple(old.shape)
    size = params.get("size", [h, w])
    _check_size(size, ctx.registry.backbones.get(state.backbone or ""))
    channels = params.get("channels", c0)
    rule = params.get("rule", "mean")
    swaps, adapted = {}, []
    if channels != c0:
        for conv in first_convolutions(state.workspace(), old):
            swaps[id(conv)] = (conv, type(conv).from_config(conv.get_config()))
    new_input = keras().Input(shape=(*size, channels), dtype=old.dtype, name=old._keras_history.operation.name)
    after = state.retraced(
        inputs=[new_input], around=lambda layer: swaps[id(layer)][1] if id(layer) in swaps else layer
    )
    for conv, new in swaps.values():
        kernel, *rest = conv.get_weights()
        new.set_weights([adapt_kernel(kernel, channels, rule), *rest])
        new.trainable = conv.trainable
        adapted.append(f"{conv.name} kernel {kernel.shape} -> {tuple(new.kernel.shape)}")
    note = f"adapt_input: input {tuple(old.shape)} -> {tuple(new_input.shape)}"
    if adapted:
        note += f"; adapted {', '.join(adapted)} by rule {rule}"
        if rule != "zeros":
            note += f" (x {c0}/{channels})"
    return after.evolve(note)


@hookimpl
def surgery_register_ops(register: RegisterOp) -> None:
    register(
        "adapt_input",
        SCHEMA,
        apply,
        check=check,
        description="New input size or channel count; the first convolution's weights are adapted "
        "(mean, repeat or zeros rule), all others kept",
        examples=[
            {"channels": 1},
            {"channels": 4, "rule": "repeat"},
            {"size": [64, 64]},
            {"channels": 5, "rule": "zeros", "size": [48, 48]},
        ],
    )
