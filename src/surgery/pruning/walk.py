"""Walking a model's graph in order to give every channel its id (see ``channels`` for the representation):
``analyze`` classifies each call node, lets its ids flow as its rule says, and records what blocks them.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from .channels import Analysis, Record
from .classify import classify, input_form
from .rules import Rule, unknown
from .unionfind import UnionFind


def analyze(model, free_outputs=(), declared: dict | None = None) -> Analysis:
    """The dependency groups of ``model``'s channels (see the module docstring).

    ``free_outputs``: positions in ``model.outputs`` whose channels may go all the same (a tensor
    kept for later steps to read, not an output anyone consumes yet); every other output is blocked.
    ``declared``: the channel rules plugins registered for their own layer classes
    (``registry.layer_rules()``), "module.ClassName" -> rule.
    """
    from .deps import model_nodes

    graph = functional_graph(model)
    nodes = model_nodes(graph)
    calls = Counter(id(n.operation) for n in nodes if n.operation is not None and not n.is_input)
    walk = _Walk({id(layer) for layer in graph.layers})
    for node in nodes:
        op = node.operation
        if op is None:
            continue
        rule = classify(op, node, calls[id(op)], declared)
        if node.is_input:
            walk.input(op, node, rule)
        else:
            walk.call(op, node, rule)
    for position, t in enumerate(graph.outputs):
        if position not in free_outputs:
            history = t._keras_history
            walk.blocks.append((walk.tensor_ids[id(t)], f"'{history.operation.name}' gives the model's output"))
    analysis = Analysis(model, walk.records, walk.uf, walk.spaces, walk.blocks, walk.tensor_ids)
    analysis.graph = graph
    return analysis


class _Walk:
    """The analysis as it is built, node by node in graph order: channel ids, blocks and records."""

    def __init__(self, layer_ids: set):
        self.layer_ids = layer_ids
        self.uf = UnionFind()
        self.spaces: list[str] = []
        self.blocks: list[tuple[np.ndarray, str | None]] = []
        self.tensor_ids: dict[int, np.ndarray] = {}
        self.records: list[Record] = []
        self.input_forms: set[int] = set()  # tensors that are the model's input in another form (input_form)

    def fresh(self, n: int, name: str) -> np.ndarray:
        self.spaces.append(name)
        return self.uf.fresh(n, len(self.spaces) - 1)

    def fresh_outputs(self, node, name: str) -> list:
        # A tensor without a fixed last axis (token ids of any length) gets no ids: nothing flows from it.
        return [
            self.fresh(int(t.shape[-1]) if len(t.shape) and t.shape[-1] is not None else 0, name) for t in node.outputs
        ]

    def input(self, op, node, rule: Rule) -> None:
        outs = self.fresh_outputs(node, op.name)
        for ids in outs:
            self.blocks.append((ids, f"'{op.name}' is the model's input"))
        self.records.append(Record(op.name, op, node, rule, [], outs, True))
        for t, ids in zip(node.outputs, outs):
            self.tensor_ids[id(t)] = ids
            self.input_forms.add(id(t))

    def call(self, op, node, rule: Rule) -> None:
        ins = [self.tensor_ids[id(t)] for t in node.input_tensors]
        outs = _flow(rule, ins, node, self.uf, self.blocks)
        if outs is None:  # shapes the rule did not expect: treat the layer as unknown
            rule = unknown(f"'{op.name}' ({type(op).__name__}) has channel counts the pruner did not expect")
            outs = _flow(rule, ins, node, self.uf, self.blocks)
        if rule.kind == "unknown":
            self.blocks.extend((ids, rule.reason) for ids in ins)
            outs = self.fresh_outputs(node, op.name)
            self.blocks.extend((ids, f"made by {rule.reason}") for ids in outs)
        elif rule.kind == "producer":
            outs = [self.fresh(int(node.outputs[0].shape[-1]), op.name)]
        if node.input_tensors and all(id(t) in self.input_forms for t in node.input_tensors):
            form = input_form(rule, op, node)
            if form:
                self.input_forms.update(id(t) for t in node.outputs)
                if rule.kind == "producer":
                    self.blocks.append((outs[0], form))
        if rule.out_reason:
            self.blocks.append((outs[0], rule.out_reason))
        if rule.kind == "block":
            self.blocks.append((outs[0], rule.reason))
        self.records.append(Record(op.name, op, node, rule, ins, outs, id(op) in self.layer_ids))
        for t, ids in zip(node.outputs, outs):
            self.tensor_ids[id(t)] = ids


def functional_graph(model):
    """The functional graph of ``model`` (a Sequential's own), or OpError for a subclassed model."""
    from .deps import OpError

    if hasattr(model, "_nodes_by_depth"):
        return model
    inner = getattr(model, "_functional", None)
    if inner is not None and hasattr(inner, "_nodes_by_depth"):
        return inner
    raise OpError(
        f"pruning needs a functional model (or a Sequential with an Input); '{model.name}' is a "
        f"{type(model).__name__} without a graph to analyse"
    )


def _flow(rule: Rule, ins: list, node, uf: UnionFind, blocks: list):
    """The output id arrays for a rule, or None when the shapes do not fit it (producers/unknown: filled later)."""
    kind = rule.kind
    if kind in ("producer", "unknown"):
        return []
    out_c = int(node.outputs[0].shape[-1])
    if not ins:
        return None
    if kind == "repeat":
        out = np.repeat(ins[0], rule.repeat)
    elif kind in ("pass", "block"):
        out = ins[0]
    elif kind == "concat":
        out = np.concatenate(ins)
    elif kind == "flatten":
        shape = node.input_tensors[0].shape
        spatial = shape[1:-1]
        if any(s is None for s in spatial):
            return None
        out = np.tile(ins[0], int(np.prod(spatial, dtype=np.int64)))
    elif kind == "merge":
        full = [ids for ids in ins if len(ids) == out_c]
        if not full or any(len(ids) not in (1, out_c) for ids in ins):
            return None
        for other in full[1:]:
            for a, b in zip(full[0], other):
                uf.union(a, b)
        out = full[0]
    else:
        raise AssertionError(kind)
    return [out] if len(out) == out_c else None
