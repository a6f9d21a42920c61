"""Reading and re-wiring a functional Keras graph.

Keras layers are shared between the models built from them, so a layer's own
inbound/outbound nodes mix graphs. Everything here looks only at the nodes of
one model (``model._nodes_by_depth``, which Keras' own ``Functional`` uses to
run itself), so a cut or a re-trace is computed on the model as it stands.
"""

from __future__ import annotations

from dataclasses import dataclass


def model_nodes(model) -> list:
    """The model's call nodes in execution order (inputs first)."""
    by_depth = model._nodes_by_depth
    return [n for d in sorted(by_depth, reverse=True) for n in by_depth[d]]


@dataclass
class CutMap:
    """Where the model's graph can be cut: which tensors are live after each layer."""

    layers: list
    live_after: list  # live_after[k]: tensors produced at index <= k still needed after k

    def is_cut(self, k: int) -> bool:
        live = self.live_after[k]
        layer = self.layers[k]
        return len(live) == 1 and live[0][1] is layer

    def valid_cuts(self) -> list[int]:
        return [k for k in range(len(self.layers)) if self.is_cut(k)]

    def nearest_cuts(self, k: int) -> list[int]:
        cuts = self.valid_cuts()
        before = [c for c in cuts if c < k]
        after = [c for c in cuts if c > k]
        return ([before[-1]] if before else []) + ([after[0]] if after else [])


def cut_map(model) -> CutMap:
    layers = model.layers
    index = {id(layer): i for i, layer in enumerate(layers)}
    produced = {}  # tensor id -> (index of producer, producer layer, tensor)
    last_use = {}  # tensor id -> index of the last layer that reads it
    for node in model_nodes(model):
        op = node.operation
        if op is None or id(op) not in index:
            continue
        i = index[id(op)]
        for t in node.input_tensors:
            last_use[id(t)] = max(last_use.get(id(t), -1), i)
        for t in node.outputs:
            produced[id(t)] = (i, op, t)
    for t in model.outputs:
        last_use[id(t)] = len(layers)  # the model's outputs are needed to the end
    live_after = [[] for _ in layers]
    for tid, (p, op, t) in produced.items():
        for k in range(p, min(last_use.get(tid, p), len(layers))):
            live_after[k].append((t, op))
    return CutMap(layers, live_after)


def output_tensor_of(model, layer):
    """The (single) output of ``layer`` within ``model``'s graph."""
    for node in model_nodes(model):
        if node.operation is layer:
            if len(node.outputs) != 1:
                return None
            return node.outputs[0]
    return None


def retrace(model, replacements: dict, targets: list, around=None) -> list:
    """Re-run ``model``'s graph from new tensors; return the new tensors for ``targets``.

    ``replacements`` maps id(old tensor) -> new tensor. Layers are called again,
    not copied, so they keep their weights. ``around(layer)`` may return a
    callable to use in place of the layer (for insert/replace edits).
    """
    tensor_map = dict(replacements)
    for node in model_nodes(model):
        if node.operation is None or node.is_input:
            continue
        if any(id(x) not in tensor_map for x in node.input_tensors):
            continue
        if all(id(x) in tensor_map for x in node.outputs):
            continue
        args, kwargs = node.arguments.fill_in(tensor_map)
        fn = around(node.operation) if around else node.operation
        outs = fn(*args, **kwargs)
        flat = outs if isinstance(outs, (list, tuple)) else [outs]
        for old, new in zip(node.outputs, flat):
            tensor_map[id(old)] = new
    missing = [t for t in targets if id(t) not in tensor_map]
    if missing:
        raise KeyError(f"{len(missing)} output(s) cannot be computed from the new inputs")
    return [tensor_map[id(t)] for t in targets]


def make_model(inputs, outputs, name=None):
    """A functional model; single inputs/outputs are passed bare, so ``model.input`` is a tensor."""
    from .keras_env import keras

    def bare(x):
        return x[0] if isinstance(x, (list, tuple)) and len(x) == 1 else x

    kwargs = {"name": name} if name else {}
    return keras().Model(bare(inputs), bare(outputs), **kwargs)
