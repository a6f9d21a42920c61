"""How a quantized model's outputs are compared with the float model's (exporting.quantized.figures): top-1
for class scores, cosine similarity for features and single values. No TensorFlow."""

from __future__ import annotations

import numpy as np
import pytest

from surgery.exporting.quantized import figures


def test_class_scores_give_both_accuracies_and_their_agreement():
    # float top-1: 0 1 2 1 2; quantized: 0 2 2 1 0; labels: 0 1 2 2 2 (unequal classes, ties nowhere)
    want = np.array([[9, 1, 0], [0, 9, 1], [0, 1, 9], [1, 9, 0], [0, 1, 9]], dtype="float32")
    got = np.array([[9, 1, 0], [0, 1, 9], [0, 1, 9], [1, 9, 0], [9, 1, 0]], dtype="float32")
    found = figures(want, got, np.array([0, 1, 2, 2, 2]))
    assert (found.n, found.float_accuracy, found.quantized_accuracy, found.agreement) == (5, 0.8, 0.4, 0.6)
    assert figures(want, got, None).float_accuracy is None
    assert figures(want, got, None).agreement == 0.6


def test_features_are_judged_by_cosine_not_by_their_largest_unit():
    rng = np.random.default_rng(0)
    want = rng.normal(size=(50, 16))
    # Small noise moves the argmax of many rows (top-1 agreement would fail them) but not their direction.
    got = want + rng.normal(scale=0.05, size=want.shape)
    found = figures(want, got, None, classifier=False)
    assert found.agreement is None and found.cosine == pytest.approx(np.mean(
        np.sum(want * got, 1) / (np.linalg.norm(want, axis=1) * np.linalg.norm(got, axis=1))
    ))  # fmt: skip
    assert 0.99 < found.cosine < 1
    assert figures(want, -want, None, classifier=False).cosine == pytest.approx(-1)


def test_a_single_value_per_image_is_compared_across_the_images():
    want = np.array([[1.0], [2.0], [3.0], [-1.0]])
    got = np.array([[1.0], [2.0], [3.0], [1.0]])  # one image's value wrong: per-image cosine would say -1 there
    cosine = figures(want, got, None).cosine
    expected = float(want[:, 0] @ got[:, 0] / (np.linalg.norm(want) * np.linalg.norm(got)))
    assert cosine == pytest.approx(expected) and cosine < 0.9
    assert figures(want, want * 1.0001, None).cosine == pytest.approx(1)
