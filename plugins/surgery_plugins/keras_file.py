"""The ``keras_file`` backbone: start from a user's own saved ``.keras`` model."""

from __future__ import annotations

import zipfile

from surgery import OpError, hookimpl
from surgery.errors import shown
from surgery.graph import make_model

OPTIONS = {"path": {"type": "string", "minLength": 1, "format": "path", "x-required": True,
                    "description": "a .keras file, relative to the spec"}}


def build(path):
    from surgery.keras_env import keras

    if not zipfile.is_zipfile(path):
        raise OpError(f"{shown(path)} is not a Keras model file (a .keras file is a zip archive, "
                      "as model.save(\"name.keras\") writes it)")
    k = keras()
    try:
        model = k.saving.load_model(path, safe_mode=True, compile=False)
    except ValueError as e:
        text = " ".join(str(e).split())
        if "arbitrary code" in text or "unsafe" in text.lower() or "safe_mode" in text:
            raise OpError(f"{shown(path)}: refused: the model contains a layer that runs Python code stored in the file "
                          "(e.g. a Lambda); surgery loads models with safe_mode=True, since a spec must not run "
                          "code. Rebuild the model without it, or register the layer from a plugin") from None
        raise OpError(f"{shown(path)} is not a Keras model file: {text[:300]}") from None
    except Exception as e:
        raise OpError(f"{shown(path)} is not a Keras model file: {type(e).__name__}: {str(e)[:300]}") from None
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
    register("keras_file", build, options=OPTIONS,
             description="a saved .keras model (Functional or Sequential), loaded with safe_mode=True")
