"""Choosing layers: Python slice text, names, glob patterns and layer types.

Parsing is pure text (``surgery validate`` uses it); resolving takes the list
of layers of the model as it stands at that step (``model.layers``, input
layer at index 0, the Keras 3 functional numbering).
"""

from __future__ import annotations

import fnmatch
import re

from .errors import OpError, did_you_mean

_SLICE_RE = re.compile(r"^\s*(-?\d+)?\s*:\s*(-?\d+)?\s*(?::\s*(-?\d+)?\s*)?$")

# The JSON Schema of a selector, shared by every op that selects layers.
SELECTOR_PROPERTIES = {
    "layers": {"type": "string", "description": 'Python slice text over model.layers, e.g. ":11", "8:", "-3:"'},
    "names": {
        "type": "array", "minItems": 1, "items": {"type": "string", "minLength": 1},
        "description": "layer names or glob patterns (block1_*, *_bn)",
    },
    "types": {
        "type": "array", "minItems": 1, "items": {"type": "string", "minLength": 1},
        "description": "layer class names (BatchNormalization, Conv2D)",
    },
}
SELECTOR_ANY_OF = [{"required": [k]} for k in SELECTOR_PROPERTIES]


def parse_slice(text: str) -> slice:
    """``":11"`` -> ``slice(None, 11)``; a single index is not a range, a step is not supported."""
    m = _SLICE_RE.match(text)
    if not m:
        raise OpError(f'"{text}" is not slice text; write it as in Python: ":11", "8:", "-3:", "2:5"')
    start, stop, step = (int(g) if g is not None else None for g in m.groups())
    if step not in (None, 1):
        raise OpError(f'"{text}" has a step of {step}; only contiguous ranges (step 1) are supported')
    return slice(start, stop)


def slice_indices(text: str, n: int) -> range:
    return range(*parse_slice(text).indices(n))


def resolve(layers: list, params: dict) -> list[int]:
    """Indices of the layers a selector picks (the union of its parts), in model order."""
    picked: set[int] = set()
    n = len(layers)
    if "layers" in params:
        rng = slice_indices(params["layers"], n)
        if len(rng) == 0:
            raise OpError(f'layers "{params["layers"]}" selects no layer; the model has {n} layers (0..{n - 1})')
        picked.update(rng)
    for pattern in params.get("names", ()):
        hits = [i for i, layer in enumerate(layers) if fnmatch.fnmatchcase(layer.name, pattern)]
        if not hits:
            raise OpError(f'names: "{pattern}" matches no layer' + _near(pattern, [l.name for l in layers]))
        picked.update(hits)
    for type_name in params.get("types", ()):
        hits = [i for i, layer in enumerate(layers) if type(layer).__name__ == type_name]
        if not hits:
            present = sorted({type(l).__name__ for l in layers})
            raise OpError(f'types: no layer of type "{type_name}"; the model has: ' + ", ".join(present))
        picked.update(hits)
    return sorted(picked)


def _near(word: str, names: list[str]) -> str:
    hint = did_you_mean(word, names)
    return hint if "did you mean" in hint else f"; the model has {len(names)} layers (see the layer table)"
