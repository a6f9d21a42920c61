"""The options every keras.applications-style backbone takes, as JSON Schema properties."""

# The options every keras.applications-style backbone takes, with Keras' defaults (editors show the
# descriptions and defaults; validation ignores defaults). "x-required" is ours (a property-level way to
# say required, so options stay one flat dict).
APPLICATION_OPTIONS = {
    "weights": {
        "description": '"imagenet" (downloaded once into Keras\' cache), null for random init, or a path to a '
        "weights file (model.save_weights), relative to the spec",
        "default": "imagenet",
        "anyOf": [
            {"const": "imagenet"},
            {"type": "null"},
            {"type": "string", "minLength": 1, "description": "a weights file path"},
        ],
    },
    "include_top": {
        "type": "boolean",
        "default": True,
        "description": "keep the classifier on top (the ImageNet head); false for a feature extractor",
    },
    "input_shape": {
        "type": "array",
        "minItems": 3,
        "maxItems": 3,
        "items": {"type": "integer", "minimum": 1, "maximum": 65_536},
        "description": "[height, width, channels]; left out, Keras takes the backbone's own size (the default "
        "shown; surgery backbones lists it) with include_top, and any size without",
    },
    "pooling": {
        "enum": [None, "avg", "max"],
        "default": None,
        "description": "without include_top: null keeps the last feature map, avg or max pools it to a vector",
    },
    "classes": {
        "type": "integer",
        "minimum": 1,
        "maximum": 100_000,
        "default": 1000,
        "description": "classes of the top layer (include_top; other than 1000 needs weights other than "
        "ImageNet's); ImageNet-21k has 21,843",
    },
    "classifier_activation": {
        "type": ["string", "null"],
        "default": "softmax",
        "description": "the top layer's activation (include_top): a keras.activations name, or null for logits",
    },
}
