"""The scenarios' synthetic images (examples/scenarios/shapes.py): made from a seed alone, and each task's
classes told apart by the cue it claims (a shape, or a stripe frequency)."""

from __future__ import annotations

import sys

import numpy as np

from helpers import ROOT

sys.path.insert(0, str(ROOT / "examples" / "scenarios"))
import shapes  # noqa: E402


def test_a_task_is_its_seed():
    a, ya, names = shapes.task("similar", 3, seed=7)
    b, yb, _ = shapes.task("similar", 3, seed=7)
    c, _, _ = shapes.task("similar", 3, seed=8)
    assert names == shapes.SIMILAR_SHAPES and a.shape == (12, 32, 32, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b) and np.array_equal(ya, yb) and not np.array_equal(a, c)
    assert ya.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]


def test_the_different_tasks_classes_are_stripe_frequencies():
    """Stripes of a higher frequency change more from pixel to pixel: the mean step between neighbours grows
    with the class, whatever the shape and colour."""
    x, y, names = shapes.task("different", 60, seed=0)
    assert names == ["stripes_2", "stripes_3.5", "stripes_6", "stripes_10"]
    gray = x.astype("float32").mean(-1)
    # Only the smooth part of the signal: the noise is the same in every class, the stripes are not.
    steps = np.abs(np.diff(gray, axis=1))[:, :, :31] + np.abs(np.diff(gray, axis=2))[:, :31, :]
    bright = gray[:, :31, :31] > gray.mean(axis=(1, 2), keepdims=True)  # inside the shape, mostly
    per_class = [float(np.mean(steps[y == c][bright[y == c]])) for c in range(4)]
    assert per_class == sorted(per_class) and per_class[-1] > 1.2 * per_class[0], per_class


def test_the_shape_tasks_share_no_class_and_every_shape_draws():
    assert not set(shapes.SOURCE_SHAPES) & set(shapes.SIMILAR_SHAPES)
    rng = np.random.default_rng(0)
    for shape in shapes.SOURCE_SHAPES + shapes.SIMILAR_SHAPES:
        covered = float(shapes._mask(shape, rng).mean())
        assert 0.02 < covered < 0.6, (shape, covered)
