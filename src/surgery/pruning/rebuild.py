"""Rebuilding a model without the removed channels: same names and configs, exact weight slices.

Every layer is cloned from its config (``type(layer).from_config``): the
pruned model shares nothing with the original, so training one never moves
the other. A layer that loses channels gets the config change its rule says
(filters, units, groups, projection_dim, a Reshape's target, per-channel
constants) and weights that are ``np.compress`` slices of the originals; the
others get copies of their weights. Ops in the graph (``x + y`` on tensors)
are cloned from their config too. A layer whose class cannot be rebuilt from
its config and that loses no channels is reused as it is (listed in the
report's ``reused``): it is then shared with the original model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .deps import counted
from .rules import role_ids, weight_index


def sliced_weights(rec, removed: np.ndarray) -> tuple[list, bool]:
    """(the layer's weights with removed channels cut out, whether anything changed)."""
    layer = rec.op
    weights = layer.get_weights()
    changed = any(len(ids) and removed[ids].any() for ids in rec.in_ids[:1] + rec.out_ids[:1])
    if not changed:
        return weights, False
    index = weight_index(layer)
    for role in rec.rule.roles:
        if role.weight not in index:
            continue  # use_bias=False, scale=False, ...
        ids = role_ids(rec, role)
        i = index[role.weight]
        w = weights[i]
        if w.shape[role.axis] == 1 and len(ids) > 1:
            continue  # shared over channels (a PReLU with shared_axes including the channels)
        if w.shape[role.axis] != len(ids):
            raise AssertionError(f"{layer.name}/{role.weight}: axis {role.axis} of {w.shape} is not {len(ids)}")
        weights[i] = np.compress(~removed[ids], w, axis=role.axis)
    return weights, True


@dataclass
class PruneReport:
    groups: list  # {"id", "producers", "channels_before", "channels_after"} per pruned group
    params_before: int
    params_after: int
    flops_before: int | None
    flops_after: int | None
    reused: list = field(default_factory=list)  # layers shared with the original (not clonable from config)
    notes: list = field(default_factory=list)

    @property
    def channels_before(self) -> int:
        return sum(g["channels_before"] for g in self.groups)

    @property
    def channels_after(self) -> int:
        return sum(g["channels_after"] for g in self.groups)

    def as_dict(self) -> dict:
        return {
            "groups_pruned": len(self.groups),
            "channels_before": self.channels_before,
            "channels_after": self.channels_after,
            "params_before": self.params_before,
            "params_after": self.params_after,
            "flops_before": self.flops_before,
            "flops_after": self.flops_after,
            "groups": self.groups,
            "reused": self.reused,
            "notes": self.notes,
        }

    def describe(self) -> str:
        def ratio(a, b):
            return f" ({1 - b / a:.1%} fewer)" if a else ""

        lines = [
            f"pruned {counted(len(self.groups), 'group')}: {self.channels_before} -> {self.channels_after} channels",
            (f"params {self.params_before:,} -> {self.params_after:,}{ratio(self.params_before, self.params_after)}"),
        ]
        if self.flops_before is not None:
            lines.append(
                f"FLOPs {self.flops_before:,} -> {self.flops_after:,}{ratio(self.flops_before, self.flops_after)}"
            )
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


def prune(model, removal):
    """(a new model without ``removal``'s channels, a :class:`PruneReport`)."""
    from .deps import OpError, make_model
    from .flops import flops

    a = removal.analysis
    if a.model is not model:
        raise OpError("this removal was computed for another model; analyze the model being pruned")
    removal.check()
    reused: list[str] = []
    tensor_map = _rebuilt_tensors(a, removal.removed_ids(), reused)
    inputs = [tensor_map[id(t)] for t in a.graph.inputs]
    outputs = [tensor_map[id(t)] for t in a.graph.outputs]
    new_model = make_model(inputs, outputs, name=model.name)
    new_model.trainable = model.trainable
    groups = [
        {
            "id": gid,
            "producers": list(a.groups[gid].producers),
            "channels_before": a.groups[gid].channels,
            "channels_after": a.groups[gid].channels - len(idx),
        }
        for gid, idx in removal.by_group().items()
    ]
    report = PruneReport(
        groups,
        int(model.count_params()),
        int(new_model.count_params()),
        _flops_or_none(flops, model),
        _flops_or_none(flops, new_model),
        reused,
        list(removal.notes),
    )
    return new_model, report


def _rebuilt_tensors(a, removed, reused: list) -> dict:
    """Every node called again, in order, on the new tensors with sliced weights: old tensor id -> new tensor.
    ``reused`` gets the names of layers Keras could not rebuild from their config (called as they are)."""
    from .deps import keras

    k = keras()
    tensor_map: dict[int, object] = {}
    # A layer called at several nodes (shared) is cloned once and called at each, as in the original:
    # a clone per node would give the new model two layers of one name.
    clones: dict[int, Any] = {}
    for rec in a.records:
        node, op = rec.node, rec.op
        if rec.rule.kind == "input":
            tensor_map[id(node.outputs[0])] = _clone_input(k, op)
            continue
        if any(id(t) not in tensor_map for t in node.input_tensors):
            continue  # not computed from the model's inputs (it does not feed the outputs either)
        args, kwargs = node.arguments.fill_in(tensor_map)
        new_op = clones.get(id(op))
        weights = None
        if new_op is None and rec.is_layer:
            weights, changed = sliced_weights(rec, removed)
            new_op = clones[id(op)] = _clone_layer(rec, removed, changed, reused)
        elif new_op is None:
            new_op = clones[id(op)] = _clone_op(op)
        outs = new_op(*args, **kwargs)
        if weights is not None and new_op is not op:
            new_op.set_weights(weights)
        flat = outs if isinstance(outs, (list, tuple)) else [outs]
        for old, new in zip(node.outputs, flat):
            tensor_map[id(old)] = new
    return tensor_map


def _flops_or_none(fn, model):
    from .deps import OpError

    try:
        return fn(model)
    except OpError:
        return None


def _clone_input(k, layer):
    cfg = layer.get_config()
    try:
        return type(layer).from_config(cfg).output
    except Exception:  # an InputLayer config Keras cannot read back: make the same input by hand  # noqa: BLE001 (a layer Keras cannot rebuild is reported, whatever it raises)
        return k.Input(batch_shape=cfg.get("batch_shape"), dtype=cfg.get("dtype"), name=layer.name)


def _clone_layer(rec, removed, changed: bool, reused: list):
    layer = rec.op
    cfg = layer.get_config()
    if changed and rec.rule.config is not None:
        keep_in = ~removed[rec.in_ids[0]] if rec.in_ids else None
        keep_out = ~removed[rec.out_ids[0]] if rec.out_ids else None
        cfg = rec.rule.config(dict(cfg), keep_in, keep_out)
    try:
        return type(layer).from_config(cfg)
    except Exception:
        if changed and rec.rule.config is not None:
            raise
        reused.append(layer.name)
        return layer


def _clone_op(op):
    try:
        return type(op).from_config(op.get_config())
    except Exception:  # noqa: BLE001 (a layer Keras cannot rebuild is reported, whatever it raises)
        return op  # stateless: sharing it between the two models is harmless
