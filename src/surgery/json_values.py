"""Values built in Python made into the JSON a spec file would hold, or refused naming their key.

A spec or a training option computed in Python holds numpy scalars (``np.int64(10)`` from any array
arithmetic), tuples and paths: they are the numbers, lists and strings they stand for, so they are
accepted as those. Anything JSON cannot say (a set, bytes, an object) is refused with the key it is
under, before a schema or Keras sees it and reports a false or raw message.
"""

from __future__ import annotations

import math
import os
import sys
from typing import Any

from .errors import SpecError

_WHAT_JSON_HOLDS = "a number, string, list, dict with string keys, true/false or null"


def plain(value: Any, where: str, file: str | None = None) -> Any:
    """``value`` as plain JSON types (numpy scalars as numbers, tuples as lists, paths as strings)."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)  # an IntEnum or other int subclass is its number
    if isinstance(value, float):
        if not math.isfinite(value):
            raise SpecError(f"{value} is not a number JSON allows", file=file, where=where or None)
        return float(value)
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise SpecError(
                    f"the key {key!r} is a {type(key).__name__}; JSON keys are strings", file=file, where=where or None
                )
            out[key] = plain(item, f"{where}.{key}" if where else key, file)
        return out
    if isinstance(value, (list, tuple)):
        return [plain(item, f"{where}[{i}]", file) for i, item in enumerate(value)]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    scalar = numpy_scalar(value)
    if scalar is not None:
        return plain(scalar, where, file)
    raise SpecError(
        f"{type(value).__name__} is not a JSON type; use {_WHAT_JSON_HOLDS}", file=file, where=where or None
    )


def numpy_scalar(value: Any) -> Any:
    """A numpy bool, integer or float as its Python value; None for anything else (numpy not imported)."""
    np = sys.modules.get("numpy")  # a numpy value means numpy is already imported: never import it here
    if np is None or not isinstance(value, (np.bool_, np.integer, np.floating)):
        return None
    return value.item()
