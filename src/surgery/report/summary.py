"""The layer table and totals that ``surgery apply`` prints.

Its ``trainable`` column is ``selectors.trainable_status``: "no" means the layer has weights and none
of them train, "-" that it has no weights, the definition every count of frozen layers in surgery uses.
"""

from __future__ import annotations

import math

from ..model.graph import model_nodes
from ..spec.selectors import trainable_status  # the one definition of frozen; plot.py imports it from here too


def _size(weights) -> int:
    return sum(math.prod(w.shape) for w in weights)


def totals(model) -> tuple[int, int, int]:
    """(total, trainable, non-trainable) parameter counts, as ``model.summary()`` counts them."""
    trainable = _size(model.trainable_weights)
    frozen = _size(model.non_trainable_weights)
    return trainable + frozen, trainable, frozen


def _shape(tensors) -> str:
    shapes = [tuple(t.shape) for t in tensors]
    text = ", ".join(str(s) for s in shapes)
    return text if len(shapes) == 1 else f"[{text}]"


_COLUMN = {"trainable": "yes", "frozen": "no", "partly": "partly", "no weights": "-"}


def _trainable(layer) -> str:
    return _COLUMN[trainable_status(layer)]


def layer_rows(model) -> list[tuple]:
    shapes: dict = {}
    for node in model_nodes(model):
        if node.operation is not None:
            shapes.setdefault(id(node.operation), _shape(node.outputs))
    return [
        (i, layer.name, type(layer).__name__, shapes.get(id(layer), "?"), _size(layer.weights), _trainable(layer))
        for i, layer in enumerate(model.layers)
    ]


def render(model) -> str:
    header = ("#", "name", "type", "output shape", "params", "trainable")
    rows = [(str(i), n, t, s, f"{p:,}", tr) for i, n, t, s, p, tr in layer_rows(model)]
    widths = [max(len(r[c]) for r in rows + [header]) for c in range(len(header))]
    right = {0, 4}

    def line(cells):
        return "  ".join(
            c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))
        ).rstrip()

    total, trainable, frozen = totals(model)
    out = [f'Model "{model.name}"', line(header), line(["-" * w for w in widths])]
    out += [line(r) for r in rows]
    out += [
        "",
        f"Total params: {total:,}",
        f"Trainable params: {trainable:,}",
        f"Non-trainable params: {frozen:,}",
    ]
    return "\n".join(out)
