"""Choosing layers: Python slice text, a range between two named layers, names, glob patterns and layer types.

Parsing is pure text (``surgery validate`` uses it); resolving takes the list
of layers of the model as it stands at that step (``model.layers``, input
layer at index 0, the Keras 3 functional numbering). What "frozen" means for a
layer (``trainable_status``) is defined here too, so that the freeze and unfreeze
notes, the layer table and the plot count the same thing.
"""

from __future__ import annotations

import fnmatch
import re

from ..errors import OpError, counted, did_you_mean

_SLICE_RE = re.compile(r"^\s*(-?\d+)?\s*:\s*(-?\d+)?\s*(?::\s*(-?\d+)?\s*)?$")

# The JSON Schema of a selector, shared by every op that selects layers.
SELECTOR_PROPERTIES = {
    "layers": {"type": "string", "description": 'Python slice text over model.layers, e.g. ":11", "8:", "-3:"'},
    "from": {
        "type": "string",
        "minLength": 1,
        "description": 'the first layer of a range, by name; the range ends at "to", else at the last layer',
    },
    "to": {
        "type": "string",
        "minLength": 1,
        "description": 'the last layer of a range, by name, included (as slice\'s "to"); it starts at "from", else at 0',
    },
    "names": {
        "type": "array",
        "minItems": 1,
        "items": {"type": "string", "minLength": 1},
        "description": "layer names or glob patterns (block1_*, *_bn)",
    },
    "types": {
        "type": "array",
        "minItems": 1,
        "items": {"type": "string", "minLength": 1},
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


def _has(n: int) -> str:
    return f"the model has {counted(n, 'layer')} (0..{n - 1})"


def _slice_range(text: str, n: int) -> range:
    """The indices slice text picks; a bound past either end is refused, as the slice op refuses it."""
    s = parse_slice(text)
    for bound in (s.start, s.stop):
        if bound is not None and not -n <= bound <= n:
            raise OpError(f'layers "{text}": layer index {bound} is out of range; {_has(n)}')
    rng = range(*s.indices(n))
    if len(rng) == 0:
        raise OpError(f'layers "{text}" selects no layer; {_has(n)}')
    return rng


def _named_range(layers: list, params: dict) -> range:
    """``from`` .. ``to``, both included, by layer name; either may be left out (the first or last layer)."""
    names = [layer.name for layer in layers]

    def index(key: str) -> int:
        name = params[key]
        if name not in names:
            raise OpError(f'{key}: no layer named "{name}"' + _near(name, names))
        return names.index(name)

    start = index("from") if "from" in params else 0
    stop = index("to") if "to" in params else len(names) - 1
    if stop < start:
        raise OpError(
            f'from "{params["from"]}" (index {start}) comes after to "{params["to"]}" (index {stop}); '
            '"from" names the first layer of the range and "to" the last'
        )
    return range(start, stop + 1)


def resolve(layers: list, params: dict) -> list[int]:
    """Indices of the layers a selector picks (the union of its parts), in model order."""
    picked: set[int] = set()
    if "layers" in params:
        picked.update(_slice_range(params["layers"], len(layers)))
    if "from" in params or "to" in params:
        picked.update(_named_range(layers, params))
    for pattern in params.get("names", ()):
        hits = [i for i, layer in enumerate(layers) if fnmatch.fnmatchcase(layer.name, pattern)]
        if not hits:
            raise OpError(f'names: "{pattern}" matches no layer' + _near(pattern, [lay.name for lay in layers]))
        picked.update(hits)
    for type_name in params.get("types", ()):
        hits = [i for i, layer in enumerate(layers) if type(layer).__name__ == type_name]
        if not hits:
            present = sorted({type(lay).__name__ for lay in layers})
            raise OpError(f'types: no layer of type "{type_name}"; the model has: ' + ", ".join(present))
        picked.update(hits)
    return sorted(picked)


def _near(word: str, names: list[str]) -> str:
    hint = did_you_mean(word, names)
    return hint if "did you mean" in hint else f"; the model has {counted(len(names), 'layer')} (see the layer table)"


# --- freezing: what the freeze and unfreeze ops and a training stage's selectors do -------------------

FREEZE_SCHEMA = {"type": "object", "properties": dict(SELECTOR_PROPERTIES), "anyOf": SELECTOR_ANY_OF}
UNFREEZE_SCHEMA = {
    "type": "object",
    "properties": {
        **SELECTOR_PROPERTIES,
        "batchnorm": {
            "enum": ["keep_frozen", "train"],
            "default": "keep_frozen",
            "description": "whether BatchNormalization layers in the selection train too",
        },
    },
    "anyOf": SELECTOR_ANY_OF,
}


def _is_bn(layer) -> bool:
    # Keras 3 has no SyncBatchNormalization class (synchronization is BatchNormalization's option), and a
    # .keras file can only name classes Keras 3 has: one name covers every BatchNormalization.
    return type(layer).__name__ == "BatchNormalization"


def _params(layers) -> int:
    import math

    return sum(math.prod(w.shape) for layer in layers for w in layer.weights)


def _span(layers) -> str:
    return layers[0].name if len(layers) == 1 else f"{layers[0].name} .. {layers[-1].name}"


def trainable_status(layer) -> str:
    """ "trainable", "frozen", "partly" or "no weights": the one definition of a frozen layer.

    A layer is frozen when it has weights and none of them train; a layer without weights is
    neither frozen nor trainable. Moving statistics (BatchNormalization) are variables that never
    train, so a trainable BN layer is "trainable", not "partly": only variables created to train
    are compared, so a block whose weights are frozen one by one around its LoRA matrices is
    "partly". The layer table's ``trainable`` column, the plot and the freeze and unfreeze notes all
    count with it.
    """
    if not layer.weights:
        return "no weights"
    trainable = {id(w) for w in layer.trainable_weights}
    if not trainable:
        return "frozen"
    learnable = [w for inner in _all_layers(layer) for w in getattr(inner, "_trainable_variables", [])]
    return "trainable" if all(id(w) in trainable for w in learnable) else "partly"


def _all_layers(layer) -> list:
    flatten = getattr(layer, "_flatten_layers", None)
    return list(flatten(include_self=True, recursive=True)) if flatten else [layer]


def freeze_layers(model, params: dict) -> str:
    """Make the selected layers non-trainable; the one-line note of what changed.

    Keras 3 runs a BatchNormalization layer whose ``trainable`` is False in
    inference mode (moving statistics used, not updated), so BN layers in a
    frozen range stay in inference mode.
    """
    picked = [model.layers[i] for i in resolve(model.layers, params)]
    for layer in picked:
        layer.trainable = False
    frozen = sum(trainable_status(layer) == "frozen" for layer in picked)
    return (
        f"freeze: {counted(len(picked), 'layer')} selected ({_span(picked)}), {frozen} with weights now frozen, "
        f"{counted(_params(picked), 'param')}"
    )


def unfreeze_layers(model, params: dict) -> str:
    """Make the selected layers trainable, BatchNormalization kept frozen unless ``"batchnorm": "train"``.

    Fine-tuning on a small dataset with unfrozen BN layers replaces the statistics
    learnt on the source data with those of small batches.
    """
    picked = [model.layers[i] for i in resolve(model.layers, params)]
    keep_bn = params.get("batchnorm", "keep_frozen") == "keep_frozen"
    if keep_bn and all(_is_bn(layer) for layer in picked):
        raise OpError(
            "selects only BatchNormalization layers, which unfreeze keeps frozen; "
            'add "batchnorm": "train" to train them'
        )
    kept_bn = 0
    for layer in picked:
        layer.trainable = True
        if keep_bn:
            for sub in layer._flatten_layers(include_self=True, recursive=True):
                if _is_bn(sub):
                    sub.trainable = False
                    kept_bn += 1
    training = sum(trainable_status(layer) in ("trainable", "partly") for layer in picked)
    note = (
        f"unfreeze: {counted(len(picked), 'layer')} selected ({_span(picked)}), {training} with weights now trainable"
    )
    if kept_bn:
        note += f"; {counted(kept_bn, 'BatchNormalization layer')} kept frozen (inference mode)"
    return note
