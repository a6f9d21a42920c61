"""The ``append`` op: add any built-in Keras layer, by class name and config, after the current output.

With ``"input"`` the layer branches from an earlier tensor (a name given with
``"as"``, or a layer's name) instead. The new layer's output becomes the
model's output; the head it branched away from is kept aside (``State.with_outputs``),
so an ``outputs`` step can still name it.
"""

from __future__ import annotations

import json
import re

from surgery import OpError, hookimpl
from surgery.errors import did_you_mean
from surgery.layer_catalog import REFUSED, file_arguments, layer_names, nested_class_names

NAME_PATTERN = "^[A-Za-z0-9_.-]+$"
SCHEMA = {
    "type": "object",
    "properties": {
        "layer": {"type": "string", "minLength": 1, "description": "a keras.layers class name: Conv2D, Flatten, Dense, ..."},
        "config": {"type": "object", "description": "the layer's constructor arguments, as in Keras"},
        "name": {"type": "string", "pattern": NAME_PATTERN, "description": "the new layer's name"},
        "input": {"type": "string", "minLength": 1,
                  "description": "branch from this named tensor (\"as\") or layer's output instead of the current output"},
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
    check_config(params.get("config", {}))
    if "name" in params.get("config", {}) and "name" in params:
        raise OpError('give the layer\'s name once, either as "name" or in "config"')


def check_config(config: dict) -> None:
    """What a layer config may not hold: a refused layer class, a file for Keras to read, an odd name."""
    name = config.get("name")
    if name is not None and not (isinstance(name, str) and re.fullmatch(NAME_PATTERN, name)):
        raise OpError(f"config.name {json.dumps(name)} is not a layer name; use letters, digits, _ . -")
    for inner in nested_class_names(config):
        if inner in REFUSED:
            raise OpError(f'config contains "{inner}", which is refused: {REFUSED[inner]}')
    for where in file_arguments(config):
        raise OpError(f"{where} is a file path, and a spec may not make Keras read files through a layer config "
                      "(it names files only in its documented path fields); give the values as a list")


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


def new_layer_name(state, cls_name: str, requested: str | None = None, reusable: str | None = None) -> str:
    """A new layer's name: ``requested`` if no layer in any branch has it (or it is ``reusable``),
    else an error; without a request, Keras' own style (``dense``, ``dense_1``)."""
    taken = [layer.name for layer in state.workspace().layers]
    if requested and requested in taken and requested != reusable:
        raise OpError(f'a layer named "{requested}" already exists; choose another name')
    return requested or unique_name(snake(cls_name), taken)


def _declared_default(cls, key: str):
    """The default of constructor argument ``key`` (``inspect.Parameter.empty`` if required), or None if unknown."""
    import inspect

    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        try:
            parameters = inspect.signature(init).parameters
        except (TypeError, ValueError):
            continue
        if key in parameters and parameters[key].kind not in (inspect.Parameter.VAR_KEYWORD,
                                                                inspect.Parameter.VAR_POSITIONAL):
            return parameters[key].default
    return None


def _misused_booleans(cls, config: dict) -> list[str]:
    """Keys given true/false where the argument is not a flag: Python's bool is an int, so Keras would take
    ``"units": true`` as 1 unit without a word."""
    import inspect

    wrong = []
    for key, value in config.items():
        if isinstance(value, bool):
            default = _declared_default(cls, key)
            if default is inspect.Parameter.empty or (default is not None and not isinstance(default, bool)):
                wrong.append(key)
    return wrong


def make_layer(keras, cls_name: str, config: dict, name: str):
    """Construct the layer the way Keras deserialises it, so nested configs work too."""
    cls = getattr(keras.layers, cls_name)
    for key in _misused_booleans(cls, config):
        raise OpError(f"config.{key}: {str(config[key]).lower()} is a boolean, but {cls_name}'s {key} is not a "
                      "flag; give a number (or the value the argument takes)")
    try:
        try:
            return cls.from_config({**config, "name": name})
        except KeyError:
            # Some from_config read keys that the constructor defaults (Rescaling's "offset"): construct directly.
            return cls(**config, name=name)
    except (TypeError, ValueError, KeyError, AttributeError) as e:
        raise OpError(f"bad config for {cls_name}: {keras_reason(e)}") from None


def keras_reason(e: Exception) -> str:
    """One line of a Keras error: the real reason, not the "Error when deserializing ..." wrapper around it."""
    return " ".join(str(e).split()).split("Exception encountered: ")[-1][:300]


def apply(state, params, ctx):
    from surgery.keras_env import keras, seeded

    k = keras()
    check(params, ctx)
    config = dict(params.get("config", {}))
    name = new_layer_name(state, params["layer"], params.get("name") or config.pop("name", None))
    x = state.tensor(params["input"]) if "input" in params else state.output
    seeded(ctx.seed)
    layer = make_layer(k, params["layer"], config, name)
    try:
        y = layer(x)
    except Exception as e:
        msg = " ".join(str(e).split())
        raise OpError(f"cannot append {params['layer']} to the output of shape {tuple(x.shape)}: {msg[:300]}") from None
    if isinstance(y, (list, tuple)):
        raise OpError(f"{params['layer']} returns {len(y)} tensors; append takes single-output layers")
    source = f" on {params['input']}" if "input" in params else ""
    note = f"append: {params['layer']} \"{name}\"{source} -> {tuple(y.shape)}, {layer.count_params():,} params"
    if params["layer"] == "Dense" and len(x.shape) > 2:
        note += (f" (Dense on a {len(x.shape)}-D input acts on the last axis only; put Flatten or "
                 "GlobalAveragePooling2D before it for one vector per image)")
    return state.with_outputs(note, [y])


@hookimpl
def surgery_register_ops(register):
    register("append", SCHEMA, apply, check=check,
             description="Add a built-in Keras layer (by class name and config) after the current output",
             examples=[{"layer": "Dense", "config": {"units": 10, "activation": "softmax"}}, {"layer": "Flatten"},
                       {"layer": "Dense", "config": {"units": 64}, "input": "block2_pool"}])
