"""The ``append`` op: add any built-in Keras layer, by class name and config, after the current output."""

from __future__ import annotations

import re

from surgery import OpError, hookimpl
from surgery.errors import did_you_mean
from surgery.graph import make_model
from surgery.layer_catalog import REFUSED, layer_names, nested_class_names

SCHEMA = {
    "type": "object",
    "properties": {
        "layer": {"type": "string", "minLength": 1, "description": "a keras.layers class name: Conv2D, Flatten, Dense, ..."},
        "config": {"type": "object", "description": "the layer's constructor arguments, as in Keras"},
        "name": {"type": "string", "pattern": "^[A-Za-z0-9_.-]+$", "description": "the new layer's name"},
    },
    "required": ["layer"],
}


def check(params, ctx):
    cls = params["layer"]
    if cls in REFUSED:
        raise OpError(f'layer "{cls}" is refused: {REFUSED[cls]}')
    known = layer_names()
    if known and cls not in known:
        raise OpError(f'unknown layer class "{cls}"' + did_you_mean(cls, known))
    for inner in nested_class_names(params.get("config", {})):
        if inner in REFUSED:
            raise OpError(f'config contains "{inner}", which is refused: {REFUSED[inner]}')
    if "name" in params.get("config", {}) and "name" in params:
        raise OpError('give the layer\'s name once, either as "name" or in "config"')


def unique_name(base: str, taken) -> str:
    taken = set(taken)
    if base not in taken:
        return base
    i = 1
    while f"{base}_{i}" in taken:
        i += 1
    return f"{base}_{i}"


def snake(class_name: str) -> str:
    s = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", class_name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", s).lower()


def make_layer(keras, cls_name: str, config: dict, name: str):
    """Construct the layer the way Keras deserialises it, so nested configs work too."""
    cls = getattr(keras.layers, cls_name)
    try:
        return cls.from_config({**config, "name": name})
    except (TypeError, ValueError, KeyError, AttributeError) as e:
        # Keras wraps the real reason in "Error when deserializing class ... Exception encountered: <reason>".
        msg = " ".join(str(e).split()).split("Exception encountered: ")[-1]
        raise OpError(f"bad config for {cls_name}: {msg[:300]}") from None


def apply(state, params, ctx):
    from surgery.keras_env import keras, seeded

    k = keras()
    check(params, ctx)
    model = state.model
    config = dict(params.get("config", {}))
    taken = [layer.name for layer in model.layers]
    requested = params.get("name") or config.pop("name", None)
    if requested and requested in taken:
        raise OpError(f'a layer named "{requested}" already exists; choose another name')
    config.pop("name", None)
    name = requested or unique_name(snake(params["layer"]), taken)
    x = state.output
    seeded(ctx.seed)
    layer = make_layer(k, params["layer"], config, name)
    try:
        y = layer(x)
    except Exception as e:
        msg = " ".join(str(e).split())
        raise OpError(f"cannot append {params['layer']} to the output of shape {tuple(x.shape)}: {msg[:300]}") from None
    if isinstance(y, (list, tuple)):
        raise OpError(f"{params['layer']} returns {len(y)} tensors; append takes single-output layers")
    new = make_model(model.inputs, y)
    note = f"append: {params['layer']} \"{name}\" -> {tuple(y.shape)}, {layer.count_params():,} params"
    if params["layer"] == "Dense" and len(x.shape) > 2:
        note += (f" (Dense on a {len(x.shape)}-D input acts on the last axis only; put Flatten or "
                 "GlobalAveragePooling2D before it for one vector per image)")
    return state.evolve(note, model=new)


@hookimpl
def surgery_register_ops(register):
    register("append", SCHEMA, apply, check=check,
             description="Add a built-in Keras layer (by class name and config) after the current output",
             examples=[{"layer": "Dense", "config": {"units": 10, "activation": "softmax"}}, {"layer": "Flatten"}])
