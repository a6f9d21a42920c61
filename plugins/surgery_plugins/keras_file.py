"""The ``keras_file`` backbone: start from a user's own saved ``.keras`` model."""

from __future__ import annotations

from surgery import OpError, hookimpl
from surgery.errors import shown
from surgery.graph import make_model
from surgery.model_files import check_model_file, load_model

OPTIONS = {"path": {"type": "string", "minLength": 1, "format": "path", "x-required": True,
                    "description": "a .keras file, relative to the spec"}}


def check(options):
    """The archive and its config, before TensorFlow starts: a bad or hostile file costs nothing."""
    check_model_file(options["path"], error=OpError)


def build(path):
    from surgery.keras_env import keras

    model = load_model(path, error=OpError)
    k = keras()
    if isinstance(model, k.Sequential):
        return _as_functional(k, model)
    if not hasattr(model, "_nodes_by_depth"):
        raise OpError(f"{shown(path)} holds a subclassed model ({type(model).__name__}); surgery needs a functional "
                      "or Sequential model, whose layers it can see")
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
    register("keras_file", build, options=OPTIONS, check=check,
             description="a saved .keras model (Functional or Sequential), loaded with safe_mode=True")
