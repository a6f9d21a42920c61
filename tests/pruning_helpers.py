"""Helpers for the pruning tests: non-trivial random weights, and the pruned-vs-masked-twin comparison."""

from __future__ import annotations

from collections import Counter

import numpy as np


def keras():
    from surgery.keras_env import keras as load

    return load()


def randomize(model, seed: int = 0):
    """Random per-channel weights a fresh model lacks, so every channel matters in the comparison.

    A new model has BN gamma 1, beta 0, mean 0, variance 1, zero biases and
    LayerScale 1e-6: removing a channel would then often change nothing
    measurable. Kernels keep Keras' initialisation (their scale keeps deep
    networks finite).
    """
    rng = np.random.default_rng(seed)
    for layer in _all_layers(model):
        name = type(layer).__name__
        new = []
        for v, w in zip(layer.weights, layer.get_weights()):
            if name == "BatchNormalization":
                w = {
                    "gamma": rng.uniform(0.5, 1.5, w.shape),
                    "beta": rng.normal(0, 0.2, w.shape),
                    "moving_mean": rng.normal(0, 0.2, w.shape),
                    "moving_variance": rng.uniform(0.5, 1.5, w.shape),
                }.get(v.name, w)
            elif name == "LayerScale":
                w = rng.uniform(0.5, 1.5, w.shape)
            elif v.name == "bias":
                w = rng.normal(0, 0.1, w.shape)
            new.append(np.asarray(w, dtype=v.dtype))
        if new:
            layer.set_weights(new)
    return model


def _all_layers(model):
    for layer in model.layers:
        if hasattr(layer, "layers"):
            yield from _all_layers(layer)
        else:
            yield layer


def inputs_for(model, batch: int = 2, seed: int = 1):
    shape = tuple(model.inputs[0].shape[1:])
    return np.random.default_rng(seed).standard_normal((batch, *shape)).astype("float32")


def outputs(model, x) -> np.ndarray:
    return np.asarray(model(x, training=False))


def _tapped_layers(analysis) -> list:
    """Layers whose single output can be read from a pruned model by name (not nested models, not inputs,
    not a shared layer, whose output differs per call)."""
    k = keras()
    calls = Counter(rec.name for rec in analysis.records)
    return [
        rec.name
        for rec in analysis.records
        if rec.is_layer
        and calls[rec.name] == 1
        and rec.rule.kind != "input"
        and len(rec.node.outputs) == 1
        and len(rec.out_ids) == 1
        and not isinstance(rec.op, k.Model)
    ]


def check_twin(model, removal, x=None, rtol: float = 1e-4, atol: float = 1e-6):
    """Prune, build the masked twin, and assert they agree; return (pruned, report, diff, scale).

    Compared at the outputs and inside: every layer's output in the pruned
    model must equal the twin's with the removed channels dropped. Also
    asserts that the removal changed the kept channels somewhere by much more
    than the tolerance, so the comparison could fail.
    """
    from surgery.pruning import masked_twin, prune

    k = keras()
    a = removal.analysis
    x = inputs_for(model) if x is None else x
    pruned, report = prune(model, removal)
    names = _tapped_layers(a)
    twin = masked_twin(model, removal, taps=names)
    y_twin = [np.asarray(y) for y in twin(x, training=False)]
    probe = k.Model(_bare(pruned.inputs), list(pruned.outputs) + [pruned.get_layer(n).output for n in names])
    y_pruned = [np.asarray(y) for y in probe(x, training=False)]
    orig = k.Model(_bare(model.inputs), list(model.outputs) + [a.record(n).node.outputs[0] for n in names])
    y_orig = [np.asarray(y) for y in orig(x, training=False)]
    removed = removal.removed_ids()
    keeps = [None] * len(model.outputs) + [~removed[a.record(n).out_ids[0]] for n in names]
    labels = [f"output {i}" for i in range(len(model.outputs))] + names
    worst, changed = (0.0, 1.0, ""), 0.0
    for label, keep, yp, yt, yo in zip(labels, keeps, y_pruned, y_twin, y_orig):
        if keep is not None:
            yt, yo = np.compress(keep, yt, axis=-1), np.compress(keep, yo, axis=-1)
        assert yp.shape == yt.shape, f"{label}: pruned {yp.shape} vs twin {yt.shape}"
        assert np.isfinite(yp).all(), label
        scale = float(np.abs(yt).max()) if yt.size else 0.0
        diff = float(np.abs(yp - yt).max()) if yt.size else 0.0
        assert diff <= rtol * scale + atol, f"{label}: pruned vs masked twin differ by {diff:.3g} (scale {scale:.3g})"
        if diff / (rtol * scale + atol) > worst[0] / (rtol * worst[1] + atol):
            worst = (diff, scale, label)
        changed = max(changed, float(np.abs(yo - yt).max()) / (rtol * scale + atol) if yt.size else 0.0)
    assert changed > 10, f"removing the channels changed no kept value by more than {changed:.3g} x the tolerance"
    out_scale = float(np.abs(y_twin[0]).max())
    out_diff = float(np.abs(y_pruned[0] - y_twin[0]).max())
    return pruned, report, out_diff, out_scale


def _bare(inputs):
    return inputs[0] if len(inputs) == 1 else list(inputs)
