"""The ``tinynet`` backbone: ``blocks`` x (Conv2D, BatchNormalization, ReLU, MaxPooling2D).

Layer names follow ``block{i}_{conv,bn,relu,pool}`` so specs can select them by
name and glob (``"names": ["block1_*"]``), the robust choice over indices.
"""

from __future__ import annotations

from surgery import APPLICATION_OPTIONS, OpError, keras, make_model

INPUT_SHAPE = (32, 32, 3)
PREPROCESS = "surgery_tinynet.backbone.preprocess_input"

# The keras.applications options, with tinynet's own weights and two size knobs.
OPTIONS = {
    **APPLICATION_OPTIONS,
    "weights": {
        "description": "null for random init (the default), or a .weights.h5 file saved from tinynet "
        "with the same options; tinynet has no ImageNet weights",
        "anyOf": [{"type": "null"}, {"type": "string", "minLength": 1}],
        "default": None,
    },
    "classes": {**APPLICATION_OPTIONS["classes"], "default": 10},
    "width": {
        "type": "integer",
        "minimum": 1,
        "maximum": 512,
        "default": 16,
        "description": "filters of the first block; each block doubles them",
    },
    "blocks": {
        "type": "integer",
        "minimum": 1,
        "maximum": 6,
        "default": 3,
        "description": "number of conv blocks; each halves the image side",
    },
}
MIN_SIDE = 2  # one block halves the side once; build() checks the side against `blocks`


def preprocess_input(x):
    """uint8-range images to [-1, 1], the range tinynet is meant to be trained on."""
    return x / 127.5 - 1.0


def build(
    weights=None,
    include_top=True,
    input_shape=None,
    pooling=None,
    classes=10,
    classifier_activation="softmax",
    width=16,
    blocks=3,
):
    if weights == "imagenet":
        raise OpError('tinynet has no ImageNet weights; use "weights": null or a weights file')
    shape = tuple(input_shape or INPUT_SHAPE)
    if min(shape[0], shape[1]) < 2**blocks:
        raise OpError(f"input_shape {list(shape)}: {blocks} blocks need a side of at least {2**blocks}")
    layers = keras().layers
    inputs = keras().Input(shape=shape, name="input")
    x = inputs
    for i in range(1, blocks + 1):
        x = layers.Conv2D(width * 2 ** (i - 1), 3, padding="same", use_bias=False, name=f"block{i}_conv")(x)
        x = layers.BatchNormalization(name=f"block{i}_bn")(x)
        x = layers.ReLU(name=f"block{i}_relu")(x)
        x = layers.MaxPooling2D(2, name=f"block{i}_pool")(x)
    if include_top or pooling == "avg":
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    elif pooling == "max":
        x = layers.GlobalMaxPooling2D(name="max_pool")(x)
    if include_top:
        x = layers.Dense(classes, activation=classifier_activation, name="predictions")(x)
    model = make_model(inputs, x, name="tinynet")
    if weights is not None:
        _load_weights(model, weights)
    return model


def _load_weights(model, path):
    try:
        model.load_weights(path)
    except Exception as e:  # noqa: BLE001 (a weights file fails in many ways; one line each)
        text = " ".join(str(e).split())[:300]
        raise OpError(
            f"the weights file {path} does not fit tinynet with these options "
            f"(width, blocks, include_top and classes must match): {text}"
        ) from None
