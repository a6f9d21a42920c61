"""Naming a model's input preprocessing by a value that surgery resolves itself.

A ``classes.json`` sidecar, a run folder and the command line name the
preprocessing a model expects as a registered backbone's name (the
``preprocess_input`` that backbone's plugin registered), a keras.applications
mode (``caffe``, ``tf``, ``torch``) or ``none``; never as an import path. A
sidecar comes with someone else's model, and importing what it names would run
code of their choosing (``"this.s"`` prints the Zen of Python).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..errors import ErrorFactory, SpecError, did_you_mean

if TYPE_CHECKING:
    from ..plugins.registry import Registry

MODES = ("caffe", "tf", "torch")
NONE = "none"


def canonical(
    value: object,
    registry: Registry,
    *,
    where: str | None = None,
    file: str | None = None,
    error: ErrorFactory = SpecError,
) -> str | None:
    """The preprocessing ``value`` names, as a backbone name or mode (None: no preprocessing); no TensorFlow.

    A value written by an earlier surgery (the dotted path of a backbone's
    ``preprocess_input``) is accepted when it is exactly what a registered
    backbone declares: the registry's own function is used, the text is not imported.
    """
    if value is None or (isinstance(value, str) and value.lower() == NONE):
        return None
    if not isinstance(value, str):
        raise error(
            f"preprocess must be a backbone name, a mode or null, got {type(value).__name__}", file=file, where=where
        )
    if value in MODES:
        return value
    info = registry.backbones.get(value) or registry.backbones.get(value.lower())
    if info is not None:
        return info.name if info.preprocess is not None else None
    for info in registry.backbones.values():
        if isinstance(info.preprocess, str) and info.preprocess == value:
            return info.name
    raise error(
        f'preprocess "{value}" is not a registered backbone, a mode ({", ".join(MODES)}) or "none"'
        + did_you_mean(value.lower(), list(registry.backbones) + list(MODES))
        + "; surgery resolves preprocessing by name and never imports what a file names",
        file=file,
        where=where,
    )


def function(name: str | None, registry: Registry) -> Callable[[Any], Any] | None:
    """The callable for a ``canonical`` name, or None. Imports Keras for modes, plugin code for backbones."""
    if name is None:
        return None
    if name in MODES:
        from ..keras_env import keras

        imagenet_utils = keras().applications.imagenet_utils
        return lambda x: imagenet_utils.preprocess_input(x, mode=name)
    fn = registry.backbones[name].preprocess
    if callable(fn):
        return fn
    import importlib

    module, _, attr = fn.rpartition(".")  # the plugin's own registration: code the user installed
    return getattr(importlib.import_module(module), attr)
