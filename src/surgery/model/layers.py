"""Building a Keras layer from a spec's class name and config: what every op that adds a layer shares.

The class must be one ``keras.layers`` exports and not refused (``layer_catalog``); the config may not name
files or hold refused classes; booleans are refused where an argument is not a flag (Python's bool is an
int: ``"units": true`` would be 1 unit). Keras checks the rest, and its refusals become one line that
surgery words itself where it can (an unknown argument, an unknown activation, an input of the wrong rank),
so that the line does not change with the Keras version.
"""

from __future__ import annotations

import inspect
import json
import re
from typing import Any

from ..errors import OpError, did_you_mean, one_line
from ..spec.layer_catalog import REFUSED, file_arguments, layer_names, nested_class_names

NAME_PATTERN = "^[A-Za-z0-9_.-]+$"
# What keras.layers.Layer takes in **kwargs besides its named arguments (Keras 3's Layer.__init__).
LAYER_EXTRAS = {
    "input_dim",
    "input_shape",
    "batch_input_shape",
    "batch_size",
    "weights",
    "trainable",
    "dtype",
    "autocast",
    "name",
    "activity_regularizer",
}
ACTIVATION_KEYS = ("activation", "recurrent_activation")
# The params of a step that adds a layer (append, insert, replace, a plugin's): its class, config and name.
LAYER_PROPERTIES: dict[str, dict[str, Any]] = {
    "layer": {
        "type": "string",
        "minLength": 1,
        "description": "a keras.layers class name: Conv2D, Flatten, Dense, ...",
    },
    "config": {"type": "object", "description": "the layer's constructor arguments, as in Keras"},
    "name": {"type": "string", "pattern": NAME_PATTERN, "description": "the new layer's name"},
}


def check_layer_class(cls_name: str) -> None:
    """A class ``keras.layers`` exports and surgery allows; no TensorFlow."""
    if cls_name in REFUSED:
        raise OpError(f'layer "{cls_name}" is refused: {REFUSED[cls_name]}')
    known = layer_names()
    if known and cls_name not in known:
        raise OpError(f'unknown layer class "{cls_name}"' + did_you_mean(cls_name, known))


def check_layer_config(config: dict) -> None:
    """What a layer config may not hold: a refused layer class, a file for Keras to read, an odd name."""
    name = config.get("name")
    if name is not None and not (isinstance(name, str) and re.fullmatch(NAME_PATTERN, name)):
        raise OpError(f"config.name {json.dumps(name)} is not a layer name; use letters, digits, _ . -")
    for inner in nested_class_names(config):
        if inner in REFUSED:
            raise OpError(f'config contains "{inner}", which is refused: {REFUSED[inner]}')
    for where in file_arguments(config):
        raise OpError(
            f"{where} is a file path, and a spec may not make Keras read files through a layer config "
            "(it names files only in its documented path fields); give the values as a list"
        )


def check_new_layer(params: dict) -> None:
    """A step's ``layer``, ``config`` and ``name`` (``LAYER_PROPERTIES``), checked as far as no TensorFlow allows."""
    check_layer_class(params["layer"])
    check_layer_config(params.get("config", {}))
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


def new_layer_name(state, cls_name: str, requested: str | None = None, reusable: str | None = None) -> str:
    """A new layer's name: ``requested`` if no layer in any branch has it (or it is ``reusable``),
    else an error; without a request, Keras' own style (``dense``, ``dense_1``)."""
    taken = [layer.name for layer in state.workspace().layers]
    if requested and requested in taken and requested != reusable:
        raise OpError(f'a layer named "{requested}" already exists; choose another name')
    return requested or unique_name(snake(cls_name), taken)


def _arguments(cls) -> dict[str, Any]:
    """The named constructor arguments of ``cls`` and its bases, with their defaults (empty: required)."""
    found: dict[str, Any] = {}
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        try:
            parameters = inspect.signature(init).parameters
        except (TypeError, ValueError):
            continue
        for name, p in parameters.items():
            if name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
                found.setdefault(name, p.default)
    return found


def _misused_booleans(cls, config: dict) -> list[str]:
    arguments = _arguments(cls)
    wrong = []
    for key, value in config.items():
        if isinstance(value, bool) and key in arguments:
            default = arguments[key]
            if default is inspect.Parameter.empty or (default is not None and not isinstance(default, bool)):
                wrong.append(key)
    return wrong


def _own_reason(keras, cls, cls_name: str, config: dict) -> str | None:
    """Why Keras refused ``config``, in surgery's words, where surgery can tell; else None."""
    accepted = set(_arguments(cls)) | LAYER_EXTRAS
    unknown = sorted(set(config) - accepted)
    if unknown:
        hint = did_you_mean(unknown[0], accepted - LAYER_EXTRAS)
        # Only a close match: the full list of arguments changes from one Keras version to the next.
        return f'{cls_name} takes no argument "{unknown[0]}"' + (
            hint if "did you mean" in hint else f" (see keras.layers.{cls_name} for its arguments)"
        )
    for key in ACTIVATION_KEYS:
        value = config.get(key)
        if isinstance(value, str):
            try:
                keras.activations.get(value)
            except (ValueError, TypeError):
                names = [
                    n
                    for n in dir(keras.activations)
                    if n.islower() and not n.startswith("_") and n not in ("get", "serialize", "deserialize")
                ]
                return f'config.{key}: unknown activation "{value}"' + did_you_mean(value, names)
    return None


def make_layer(cls_name: str, config: dict, name: str):
    """The layer, constructed the way Keras deserialises it, so nested configs work too; one OpError line if not."""
    from ..keras_env import keras as load

    keras = load()
    cls = getattr(keras.layers, cls_name)
    for key in _misused_booleans(cls, config):
        raise OpError(
            f"config.{key}: {str(config[key]).lower()} is a boolean, but {cls_name}'s {key} is not a "
            "flag; give a number (or the value the argument takes)"
        )
    try:
        try:
            return cls.from_config({**config, "name": name})
        except KeyError:
            # Some from_config read keys that the constructor defaults (Rescaling's "offset"): construct directly.
            return cls(**config, name=name)
    except (TypeError, ValueError, KeyError, AttributeError) as e:
        reason = _own_reason(keras, cls, cls_name, config)
        raise OpError(f"bad config for {cls_name}: " + (reason or f"Keras refused it: {keras_reason(e)}")) from None


def keras_reason(e: Exception) -> str:
    """One line of a Keras error: the real reason, not the "Error when deserializing ..." wrapper around it."""
    return one_line(one_line(e, None).split("Exception encountered: ")[-1])


def rank_problem(layer, tensor) -> str | None:
    """Why ``layer`` cannot take ``tensor`` by rank, from its own InputSpec (min_ndim, ndim, max_ndim)."""
    specs = layer.input_spec
    spec = specs[0] if isinstance(specs, (list, tuple)) and specs else specs
    if spec is None:
        return None
    rank = len(tensor.shape)
    for attribute, fails, words in (
        ("ndim", lambda n: rank != n, "exactly"),
        ("min_ndim", lambda n: rank < n, "at least"),
        ("max_ndim", lambda n: rank > n, "at most"),
    ):
        n = getattr(spec, attribute, None)
        if n is not None and fails(n):
            return (
                f"{type(layer).__name__} needs an input of {words} {n} dimensions (batch included); this one has {rank}"
            )
    return None


def call_layer(layer, tensor, what: str):
    """``layer(tensor)``; a tensor it cannot take is one OpError line saying why."""
    problem = rank_problem(layer, tensor)
    if problem:
        raise OpError(f"cannot {what} the output of shape {tuple(tensor.shape)}: {problem}")
    try:
        return layer(tensor)
    except Exception as e:  # noqa: BLE001 (Keras raises many types for inputs a layer cannot take)
        raise OpError(
            f"cannot {what} the output of shape {tuple(tensor.shape)}: Keras refused it: {keras_reason(e)}"
        ) from None
