"""The ``keras_file`` backbone: start from a user's own saved ``.keras`` model."""

from __future__ import annotations

from surgery import (
    OpError,
    check_model_file,
    check_weights_content,
    check_weights_file,
    hookimpl,
    keras,
    load_model,
    make_model,
    one_line,
    shown,
)

OPTIONS = {
    "path": {
        "type": "string",
        "minLength": 1,
        "format": "path",
        "x-required": True,
        "description": "a .keras file, relative to the spec",
    },
    "weights": {
        "description": '"file" (default): the weights saved in the model; null: its architecture with fresh '
        "random weights; or a weights file saved from the same architecture (model.save_weights)",
        "default": "file",
        "anyOf": [
            {"const": "file"},
            {"type": "null"},
            {"type": "string", "minLength": 1, "description": "a weights file path"},
        ],
    },
}


def check(options):
    """The archive and its config, before TensorFlow starts: a bad or hostile file costs nothing."""
    check_model_file(options["path"], error=OpError)
    weights = options.get("weights", "file")
    if weights == "imagenet":
        raise OpError(
            'weights: "imagenet" is for keras.applications backbones; a saved model has "file" (its own '
            "weights), null (fresh ones) or a weights file"
        )
    if weights not in (None, "file"):
        check_weights_file(weights, error=OpError)


def build(path, weights="file"):
    model = load_model(path, error=OpError)
    k = keras()
    if isinstance(model, k.Sequential):
        model = _as_functional(k, model)
    elif not hasattr(model, "_nodes_by_depth"):
        raise OpError(
            f"{shown(path)} holds a subclassed model ({type(model).__name__}); surgery needs a functional "
            "or Sequential model, whose layers it can see"
        )
    if weights is None:
        # The same layers from their configs: Keras initialises them as a fresh model (the op seeded it).
        return k.models.clone_model(model)
    if weights != "file":
        check_weights_content(weights, error=OpError)
        try:
            model.load_weights(weights)
        except (ValueError, OSError) as e:
            raise OpError(
                f'weights: "{shown(weights)}" does not fit the model in {shown(path)} (it must be saved '
                f"from the same architecture): {one_line(e, 200)}"
            ) from None
    return model


def _as_functional(k, model):
    """Give a Sequential model an input layer, so that layer indices follow the functional numbering."""
    if not model.inputs:
        raise OpError("the saved Sequential model was never built, so its input shape is unknown")
    x = inputs = k.Input(shape=model.inputs[0].shape[1:], name=f"{model.name}_input")
    for layer in model.layers:
        x = layer(x)
    return make_model(inputs, x, name=model.name)


@hookimpl
def surgery_register_backbones(register):
    register(
        "keras_file",
        build,
        options=OPTIONS,
        check=check,
        description="a saved .keras model (Functional or Sequential), loaded with safe_mode=True",
    )
