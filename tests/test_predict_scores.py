"""predict's scores from each kind of classifier head, read directly (the command's tests go through images;
test_evaluation_figures.py has its check that the model is a classifier)."""

from __future__ import annotations

import numpy as np

from surgery.training.predict import _scores


def _head(keras, units, activation, kernel):
    """Input(2) -> Dense(units, activation) with a hand-set kernel and no bias: outputs are x @ kernel."""
    inputs = keras.Input((2,))
    dense = keras.layers.Dense(units, activation=activation, use_bias=False, name="head")
    model = keras.Model(inputs, dense(inputs))
    dense.set_weights([np.asarray(kernel, "float32")])
    return model


X = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]], "float32")


def test_a_softmax_head_gives_its_probabilities(keras):
    model = _head(keras, 3, "softmax", [[2.0, 0.0, -1.0], [0.0, 1.0, 3.0]])
    scores, kind = _scores(model, X)
    assert kind == "probability"
    np.testing.assert_allclose(scores, model.predict(X, verbose=0), rtol=1e-6)
    assert scores.dtype == np.float64


def test_a_linear_head_of_several_units_gives_logits_unchanged(keras):
    model = _head(keras, 3, None, [[2.0, 0.0, -1.0], [0.0, 1.0, -3.0]])
    scores, kind = _scores(model, X)
    assert kind == "logit"
    np.testing.assert_allclose(scores, X @ np.array([[2.0, 0.0, -1.0], [0.0, 1.0, -3.0]]), rtol=1e-6)


def test_one_sigmoid_unit_is_two_classes_in_order(keras):
    """Column 1 is the unit's probability and column 0 its complement, not the other way round."""
    model = _head(keras, 1, "sigmoid", [[2.0], [-0.5]])
    scores, kind = _scores(model, X)
    p = 1 / (1 + np.exp(-(X @ np.array([2.0, -0.5]))))
    assert kind == "probability"
    np.testing.assert_allclose(scores, np.stack([1 - p, p], axis=1), rtol=1e-6)


def test_one_linear_unit_is_a_logit_turned_into_two_probabilities(keras):
    """Logits -0.5, 2 and 0.75: the sigmoid of each (0.38, 0.88, 0.68), not the logit thresholded or
    clipped, and not the sigmoid applied twice."""
    model = _head(keras, 1, None, [[-0.5], [2.0]])
    scores, kind = _scores(model, X)
    z = X @ np.array([-0.5, 2.0])
    p = 1 / (1 + np.exp(-z))
    assert kind == "probability"
    np.testing.assert_allclose(scores, np.stack([1 - p, p], axis=1), rtol=1e-6)
    assert scores[0, 1] < 0.5 < scores[1, 1]
