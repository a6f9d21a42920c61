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
    produced: dict = {}  # tensor id -> (index of producer, producer layer, tensor)
    last_use: dict = {}  # tensor id -> index of the last layer that reads it
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
    live_after: list[list] = [[] for _ in layers]
    for tid, (p, op, t) in produced.items():
        for k in range(p, min(last_use.get(tid, p), len(layers))):
            live_after[k].append((t, op))
    return CutMap(layers, live_after)


def output_tensor_of(model, layer):
    """The output of ``layer`` within ``model``'s graph: its only one, or else the only one the graph reads
    (a KerasHub DeiT block also returns its attention scores, which no later layer takes)."""
    nodes = model_nodes(model)
    for node in nodes:
        if node.operation is layer:
            if len(node.outputs) == 1:
                return node.outputs[0]
            read = {id(x) for other in nodes for x in other.input_tensors} | {id(x) for x in model.outputs}
            used = [x for x in node.outputs if id(x) in read]
            return used[0] if len(used) == 1 else None
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
    from ..keras_env import keras

    def bare(x):
        return x[0] if isinstance(x, (list, tuple)) and len(x) == 1 else x

    kwargs = {"name": name} if name else {}
    return keras().Model(bare(inputs), bare(outputs), **kwargs)


# --- Named tensors and re-wiring (graph surgery) --------------------------------
#
# A spec may branch: a head appended from a named tensor is not an output of the
# model as it stands, but later steps (merge, outputs) still need it. The
# "workspace" is one functional model over the current outputs and every named
# tensor, so a name resolves, and an edit re-wires, in all branches at once.


def walk_history(tensors):
    """Each tensor of ``tensors``' Keras history once, with the call node that made it (None for an input)."""
    seen, stack = set(), list(tensors)
    while stack:
        t = stack.pop()
        if id(t) in seen:
            continue
        seen.add(id(t))
        history = getattr(t, "_keras_history", None)
        node = (
            None
            if history is None or history.operation is None
            else history.operation._inbound_nodes[history.node_index]
        )
        if node is not None and node.is_input:
            node = None
        yield t, node
        if node is not None:
            stack.extend(node.input_tensors)


def history_ids(tensors) -> set:
    """ids of ``tensors`` and of every tensor they are computed from."""
    return {id(t) for t, _ in walk_history(tensors)}


def sources(tensor) -> set:
    """ids of the graph inputs ``tensor`` is computed from."""
    return {id(t) for t, node in walk_history([tensor]) if node is None}


def reachable(tensor, inputs) -> bool:
    """Whether ``tensor`` is computed from ``inputs`` alone (a slice with a new input strands older names)."""
    return sources(tensor) <= {id(t) for t in inputs}


def _unique(tensors) -> list:
    seen, out = set(), []
    for t in tensors:
        if id(t) not in seen:
            seen.add(id(t))
            out.append(t)
    return out


def live_names(model, tensors: dict) -> list:
    """The names whose tensors the model's inputs still compute."""
    return [name for name, t in tensors.items() if reachable(t, model.inputs)]


def workspace(model, tensors: dict):
    """One model over the current outputs and every live named tensor: all branches, searchable."""
    extra = [tensors[n] for n in live_names(model, tensors)]
    if not extra:
        return model
    return make_model(model.inputs, _unique(list(model.outputs) + extra))


def layer_nodes(model, layer) -> list:
    """The nodes (calls) of ``layer`` within ``model``'s graph."""
    return [n for n in model_nodes(model) if n.operation is layer]


def find_layer(model, name: str, what: str = "layer"):
    from ..errors import OpError, did_you_mean

    for layer in model.layers:
        if layer.name == name:
            return layer
    names = [layer.name for layer in model.layers]
    raise OpError(f'no {what} named "{name}"' + did_you_mean(name, names))


def find_tensor(model, tensors: dict, name: str):
    """A named tensor, else the output of the layer of that name in any branch; OpError if neither."""
    from ..errors import OpError, did_you_mean

    if name in tensors:
        t = tensors[name]
        if not reachable(t, model.inputs):
            raise OpError(
                f'tensor "{name}" is not computed from the model\'s input any more (a slice gave the '
                "model a new input after it was named); name a tensor after that step"
            )
        return t
    ws = workspace(model, tensors)
    for layer in ws.layers:
        if layer.name == name:
            nodes = layer_nodes(ws, layer)
            if len(nodes) != 1 or len(nodes[0].outputs) != 1:
                raise OpError(
                    f'layer "{name}" has {sum(len(n.outputs) for n in nodes)} output tensors; '
                    'name the one you mean with "as" on a step'
                )
            return nodes[0].outputs[0]
    named = [n for n in live_names(model, tensors) if not is_hidden(n)]
    hint = did_you_mean(name, named + [layer.name for layer in ws.layers])
    if "did you mean" not in hint:
        hint = "; named tensors: " + (", ".join(named) if named else 'none (name a step\'s output with "as")')
    raise OpError(f'no named tensor or layer "{name}"' + hint)


# Outputs a step replaced without using them (a head left behind by a branch)
# are kept under names no spec can write ("as" names start with a letter or _),
# so their layers can still be found by name and declared as outputs.
HIDDEN_PREFIX = "#"


def is_hidden(name: str) -> bool:
    return name.startswith(HIDDEN_PREFIX)


def left_behind(model, tensors: dict, new_outputs) -> dict:
    """``tensors`` plus, under hidden names, the model's outputs that ``new_outputs`` do not use."""
    used = history_ids(new_outputs) | {id(t) for t in tensors.values()}
    dropped = [t for t in model.outputs if id(t) not in used]
    return {**tensors, **{f"{HIDDEN_PREFIX}{len(tensors) + i}": t for i, t in enumerate(dropped)}}


def rebuild(model, tensors: dict, *, around=None, inputs=None, feeds=None):
    """Re-trace the model and its live named tensors; returns ``(new_model, new_tensors)``.

    ``inputs`` are the new model's inputs (default: the same); ``feeds`` are the
    tensors that take the old inputs' places in the graph (default: ``inputs``),
    so preprocessing layers can sit between a new input and the old graph.
    ``around`` is passed to :func:`retrace`. Names the inputs no longer compute
    are kept as they are (using one later is an error that says why).
    """
    names = live_names(model, tensors)
    targets = list(model.outputs) + [tensors[n] for n in names]
    new_inputs = list(inputs) if inputs is not None else list(model.inputs)
    fed = list(feeds) if feeds is not None else new_inputs
    replacements = {id(old): new for old, new in zip(model.inputs, fed)}
    ws = make_model(model.inputs, _unique(targets))
    outs = retrace(ws, replacements, targets, around=_explained(around))
    n = len(model.outputs)
    new_tensors = {**tensors, **dict(zip(names, outs[n:]))}
    return make_model(new_inputs, outs[:n]), new_tensors


def _explained(around):
    """``around`` whose calls, when a layer cannot take its new input, fail with one line naming that layer."""
    from ..errors import OpError, SurgeryError, one_line

    def wrapped(layer):
        fn = around(layer) if around else layer

        def call(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except SurgeryError:
                raise
            except Exception as e:  # noqa: BLE001 (Keras refuses inputs with many exception types)
                shapes = ", ".join(str(tuple(a.shape)) for a in args if hasattr(a, "shape"))
                # Keras' shape errors start "Input 0 with name 'None' of layer 'x' is incompatible with the layer:".
                reason = one_line(e, None).split("is incompatible with the layer: ")[-1]
                raise OpError(
                    f'layer "{layer.name}" ({type(layer).__name__}) cannot take its new input {shapes}: {reason[:300]}'
                ) from None

        return call

    return wrapped
