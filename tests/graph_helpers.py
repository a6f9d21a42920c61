"""Helpers shared by the test_graph_* modules (it holds no tests).

Specs are built as dicts with small inputs (32x32) and weights files made by
conftest's fixtures, so the graph tests stay within seconds per model.
"""

from __future__ import annotations

import numpy as np

import surgery


def backbone(name: str, weights=None, side: int = 32, **options) -> dict:
    return {
        "op": "backbone",
        "name": name,
        "weights": None if weights is None else str(weights),
        "include_top": False,
        "input_shape": [side, side, 3],
        **options,
    }


def spec(*steps, name: str = "m", seed: int = 0) -> dict:
    return {"surgery": 1, "name": name, "seed": seed, "steps": list(steps)}


def run(data: dict):
    """The final State (notes, named tensors, preprocess), not only the model."""
    from surgery.executor import run_steps

    parsed, plugins = surgery.load(data)
    return run_steps(parsed, plugins.registry)


def images(shape, seed: int = 0) -> np.ndarray:
    """Raw pixels: 0-255 floats."""
    return np.random.default_rng(seed).uniform(0, 255, size=shape).astype("float32")


def predict(model, x) -> list:
    out = model(x, training=False)
    return [np.asarray(o) for o in (out if isinstance(out, (list, tuple)) else [out])]


def assert_close(actual, expected, rel: float = 1e-6) -> None:
    """Equal up to float rounding, relative to the size of the values (random-init outputs can be tiny)."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape
    scale = float(np.abs(expected).max()) or 1.0
    diff = float(np.abs(actual - expected).max())
    assert diff <= rel * scale, f"max abs diff {diff:.3g} > {rel:g} x {scale:.3g}"


def assert_weights_kept(model, reference, skip=()) -> int:
    """Every layer of ``model`` with weights, except ``skip``, has exactly ``reference``'s same-named weights."""
    ref = {layer.name: layer for layer in reference.layers}
    compared = 0
    for layer in model.layers:
        if not layer.weights or layer.name in skip:
            continue
        assert layer.name in ref, f"{layer.name} is not in the reference model"
        mine, theirs = layer.get_weights(), ref[layer.name].get_weights()
        assert len(mine) == len(theirs), layer.name
        for a, b in zip(mine, theirs):
            np.testing.assert_array_equal(a, b, err_msg=layer.name)
            compared += 1
    return compared


def assert_differs(actual, expected, rel: float = 1e-3) -> None:
    """Not equal, relative to the size of the values: the edit did change the computation."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    scale = float(np.abs(expected).max()) or 1.0
    assert float(np.abs(actual - expected).max()) > rel * scale, "the outputs did not change"
