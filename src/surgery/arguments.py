"""The Python API's arguments, checked where they enter, as click's types check the command line's.

``surgery.build/apply/plan/export/train/evaluate`` promise the one-line ``SurgeryError`` for bad input.
A wrong type found deep inside (a list where a path goes, a string for ``epochs``) would surface as a
raw ``TypeError`` after a run folder was made; so each function declares what its arguments are, and
``checked`` refuses anything else, naming the function and the argument, before the work starts.
"""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Callable
from typing import Any

from .errors import SpecError, did_you_mean
from .json_values import numpy_scalar


def _is_path(value: Any) -> bool:
    return isinstance(value, (str, os.PathLike))


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python number or bool it holds; anything else as it is."""
    scalar = numpy_scalar(value)
    return value if scalar is None else scalar


def _as_int(value: Any) -> int | None:
    value = _plain(value)
    return None if isinstance(value, bool) or not isinstance(value, int) else int(value)


def _at_least(low: int) -> Callable[[Any], bool]:
    def test(value: Any) -> bool:
        number = _as_int(value)
        return number is not None and number >= low

    return test


def _is_plugins(value: Any) -> bool:
    from .plugins.loading import Plugins

    return isinstance(value, Plugins)


def _is_callback(value: Any) -> bool:
    from .keras_env import keras

    return isinstance(value, keras().callbacks.Callback)


# kind -> (test, what a valid value is); "?" after a kind also allows None.
KINDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "spec": (lambda v: _is_path(v) or isinstance(v, dict), "the path of a .json spec or a dict"),
    "path": (_is_path, "a path (str or os.PathLike)"),
    "grid": (lambda v: _is_path(v) or isinstance(v, dict), "the path of a .json grid or a dict"),
    "str": (lambda v: isinstance(v, str), "a string"),
    "paths": (
        lambda v: isinstance(v, (list, tuple)) and len(v) > 0 and all(_is_path(p) for p in v),
        "a non-empty list of paths",
    ),
    "bool": (lambda v: isinstance(_plain(v), bool), "True or False"),
    "count": (_at_least(0), "a whole number >= 0"),
    "positive": (_at_least(1), "a whole number >= 1"),
    "dict": (lambda v: isinstance(v, dict), "a dict"),
    "size": (
        lambda v: isinstance(v, (list, tuple)) and len(v) == 2 and all(_at_least(1)(d) for d in v),
        "(height, width), two whole numbers >= 1",
    ),
    "callable": (callable, "a function"),
    "plugins": (_is_plugins, "surgery.load_plugins()'s result"),
    "callbacks": (
        lambda v: isinstance(v, (list, tuple)) and all(_is_callback(c) for c in v),
        "a list of keras.callbacks.Callback objects",
    ),
}


def checked(**kinds: str) -> Callable:
    """Check the named arguments of the decorated function against ``KINDS`` (``output="path?"``)."""

    def decorate(function: Callable) -> Callable:
        signature = inspect.signature(function)
        takes_any_keyword = any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())
        named = [n for n, p in signature.parameters.items() if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
        where = f"surgery.{function.__name__}()"

        @functools.wraps(function)
        def call(*args: Any, **kwargs: Any) -> Any:
            if not takes_any_keyword:
                for key in kwargs:
                    if key not in signature.parameters:
                        raise SpecError(f'unknown argument "{key}"' + did_you_mean(key, named), where=where)
            try:
                bound = signature.bind(*args, **kwargs)
            except TypeError as e:  # too many positional arguments, or a required one missing
                raise SpecError(str(e), where=where) from None
            for name, value in bound.arguments.items():
                kind = kinds.get(name)
                if kind is None or (kind.endswith("?") and value is None):
                    continue
                test, valid = KINDS[kind.rstrip("?")]
                if not test(value):
                    also = " or None" if kind.endswith("?") else ""
                    raise SpecError(f"{name} must be {valid}{also}, not {_shown(value)}", where=where)
                if kind.rstrip("?") in ("count", "positive"):
                    bound.arguments[name] = _as_int(value)
                elif kind.rstrip("?") == "size":
                    bound.arguments[name] = tuple(_as_int(d) for d in value)
                elif kind.rstrip("?") == "bool":
                    bound.arguments[name] = bool(value)
            return function(*bound.args, **bound.kwargs)

        return call

    return decorate


def _shown(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:40]}" if len(text) <= 40 else f"a {type(value).__name__}"
