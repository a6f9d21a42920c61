"""The masked twin: the unpruned model with the removed channels forced to zero wherever they flow.

It re-traces the original graph, calling the original layers (so it shares
them with the original model: use it to check, not to train), and after every
call replaces the removed channels of each output with zeros. ``where``
rather than a multiply by a 0/1 mask, so a removed channel that is NaN or
infinite (x / y with y zeroed) still becomes 0.

A consumer of a masked tensor sees zeros in the removed channels, which is
what the pruned layer computes without those input rows; per-channel layers
never mix channels. So ``pruned(x) == twin(x)`` up to float rounding, and the
final outputs (never pruned) can be compared directly.
"""

from __future__ import annotations

import sys


def masked_twin(model, removal, taps=()):
    """The twin of ``model``; ``taps`` names layers whose (masked) outputs are appended to its outputs.

    Taps let a check compare a pruned model inside, not only at the end: the
    pruned layer's output equals the tapped one without the removed channels.
    """
    from .deps import OpError, keras, make_model

    k = keras()
    a = removal.analysis
    if a.model is not model:
        raise OpError("this removal was computed for another model; analyze the model being masked")
    removed = removal.removed_ids()
    tensor_map: dict[int, object] = {id(t): t for t in a.graph.inputs}
    for rec in a.records:
        node = rec.node
        if rec.rule.kind == "input" or any(id(t) not in tensor_map for t in node.input_tensors):
            continue
        args, kwargs = node.arguments.fill_in(tensor_map)
        outs = rec.op(*args, **kwargs)
        flat = outs if isinstance(outs, (list, tuple)) else [outs]
        for old, new, ids in zip(node.outputs, flat, rec.out_ids):
            gone = removed[ids] if len(ids) else None
            if gone is not None and gone.any():
                new = k.ops.where(~gone, new, 0.0)
            tensor_map[id(old)] = new
    outputs = [tensor_map[id(t)] for t in a.graph.outputs]
    for name in taps:
        rec = a.record(name)
        outputs.append(tensor_map[id(rec.node.outputs[0])])
    # Keras maps a functional graph recursively; a mask after every layer doubles the depth of the deepest
    # backbones (EfficientNetB7) past Python's default limit.
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 20_000))
    try:
        return make_model(list(a.graph.inputs), outputs, name=f"{model.name}_masked")
    finally:
        sys.setrecursionlimit(limit)
