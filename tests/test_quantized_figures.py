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


def test_latencies_alternate_the_runs_each_after_a_pause_and_give_medians():
    """Each form is timed after the previous one's threads had time to go idle (onnxruntime's spin after a run
    and took the next form's cores), the forms in turn, and the median is reported, not the mean or the last."""
    import time

    from surgery.exporting.quantized import SETTLE_S, latencies

    events = []
    durations = {"a": iter([0.0, 0.040, 0.010, 0.160]), "b": iter([0.0, 0.020, 0.005, 0.020])}

    def run(name):
        def go():
            events.append((name, time.perf_counter()))
            time.sleep(next(durations[name]))
            events.append((name, time.perf_counter()))

        return go

    found = latencies({"a": run("a"), "b": run("b")}, repeats=3)
    order = [name for name, _ in events[::2]]
    assert order == ["a", "b", "a", "b", "a", "b", "a", "b"]  # a warm-up call each, then in turn
    timed = events[4:]
    gaps = [timed[i + 1][1] - timed[i][1] for i in range(1, len(timed) - 1, 2)]
    assert min(gaps) >= SETTLE_S
    # sleeps never end early and may end late: the median of 40, 10 and 160 ms, not their mean (70) or max
    assert 0.040 <= found["a"] < 0.070
    assert 0.020 <= found["b"] < 0.035  # of 20, 5 and 20 ms: not the minimum
