"""stages' pieces on small Keras models (a second each): a stage's freeze before its unfreeze, the rehearsal
that puts every flag back, what the head's output is and the lines for a head that does not fit, and the step
counter carried from one stage's optimizer to the next. test_train.py runs them through `surgery train`."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from surgery.errors import SpecError
from surgery.training import stages
from surgery.training.config import Stage


@pytest.fixture(scope="module")
def model(keras):
    """conv (16*3*3*3 + 16 = 448 params), bn (4*16 = 64), pool, dense_a (16*8 + 8 = 136), dense_b (8*3 + 3 = 27)."""
    inputs = keras.Input((8, 8, 3), name="image")
    x = keras.layers.Conv2D(16, 3, name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    x = keras.layers.Dense(8, name="dense_a")(x)
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="dense_b")(x))


def _spec():
    return SimpleNamespace(file="spec.json")


def _trainable(model):
    return {layer.name: layer.trainable for layer in model.layers if layer.weights}


def test_a_stage_freezes_first_then_unfreezes(model):
    for layer in model.layers:
        layer.trainable = True
    stage = Stage("head", 1, freeze={"layers": ":"}, unfreeze={"names": ["dense_b"]})
    notes = stages.apply_selectors(model, stage, 0, _spec())
    assert _trainable(model) == {"conv": False, "bn": False, "dense_a": False, "dense_b": True}
    assert notes == [
        "freeze: 6 layers selected (image .. dense_b), 4 with weights now frozen, 675 params",
        "unfreeze: 1 layer selected (dense_b), 1 with weights now trainable",
    ]
    assert stages.apply_selectors(model, Stage("none", 1), 0, _spec()) == []


def test_a_selector_that_matches_nothing_names_the_stage_and_its_step(model):
    with pytest.raises(SpecError) as refused:
        stages.apply_selectors(model, Stage("s", 1, unfreeze={"names": ["no_such_layer"]}), 2, _spec())
    assert str(refused.value).startswith("spec.json: train.stages[2].unfreeze: ")
    with pytest.raises(SpecError) as refused:
        stages.apply_selectors(model, Stage("s", 1, freeze={"names": ["no_such_layer"]}), 1, _spec())
    assert str(refused.value).startswith("spec.json: train.stages[1].freeze: ")


def test_the_rehearsal_reports_a_stage_with_nothing_to_train_and_puts_every_flag_back(model):
    for layer in model.layers:
        layer.trainable = layer.name != "dense_a"
    before = _trainable(model)
    config = SimpleNamespace(
        stages=[
            Stage("head", 1, freeze={"layers": ":"}, unfreeze={"names": ["dense_b"]}),
            Stage("none", 1, freeze={"names": ["dense_b"]}),
        ]
    )
    with pytest.raises(SpecError) as refused:
        stages.rehearse(model, config, 0, _spec(), resumed_mid_stage=False)
    assert str(refused.value) == (
        "spec.json: train.stages[1]: stage none has nothing to train: every layer is frozen; add an unfreeze "
        "to the stage"
    )
    assert _trainable(model) == before
    # resumed in the middle of stage 1: its selectors ran before the checkpoint, the model already has them
    unknown = Stage("resumed", 1, unfreeze={"names": ["not_in_this_model"]})
    stages.rehearse(model, SimpleNamespace(stages=[unknown, config.stages[0]]), 0, _spec(), resumed_mid_stage=True)
    # from stage 2 on: stage 1 (which would fail) is done and not rehearsed
    stages.rehearse(model, SimpleNamespace(stages=[unknown, config.stages[0]]), 1, _spec(), resumed_mid_stage=False)
    with pytest.raises(SpecError) as refused:  # a selector that fails in a later stage names that stage
        stages.rehearse(model, SimpleNamespace(stages=[config.stages[0], unknown]), 0, _spec(), resumed_mid_stage=True)
    assert str(refused.value).startswith("spec.json: train.stages[1].unfreeze: ")
    assert _trainable(model) == before


def test_the_rehearsal_puts_back_the_flags_of_layers_inside_a_nested_model(keras):
    inputs = keras.Input((4,), name="x")
    inner = keras.Sequential([keras.layers.Dense(4, name="in_a"), keras.layers.Dense(4, name="in_b")], name="inner")
    model = keras.Model(inputs, keras.layers.Dense(2, name="out")(inner(inputs)))
    inner.get_layer("in_a").trainable = False
    config = SimpleNamespace(stages=[Stage("all", 1, freeze={"layers": ":"})])
    with pytest.raises(SpecError):
        stages.rehearse(model, config, 0, _spec(), resumed_mid_stage=False)
    assert [inner.get_layer(n).trainable for n in ("in_a", "in_b")] == [False, True]
    assert inner.trainable and model.get_layer("out").trainable


def test_the_outputs_activation_is_read_from_the_layer_that_makes_it(keras):
    inputs = keras.Input((4,))
    for last, name in (
        (keras.layers.Dense(3, activation="softmax"), "softmax"),
        (keras.layers.Dense(1, activation="sigmoid"), "sigmoid"),
        (keras.layers.Dense(3), "linear"),
        (keras.layers.Softmax(), "softmax"),
        (keras.layers.Flatten(), "linear"),  # a layer without an activation
        (keras.layers.Dense(3, activation=keras.layers.ReLU()), "linear"),  # a callable object, not a function
    ):
        assert stages.output_activation(keras.Model(inputs, last(inputs))) == name


def test_a_classifier_has_one_output_of_batch_by_classes(keras):
    inputs = keras.Input((4, 4, 2))
    assert stages.classifier_units(keras.Model(inputs, keras.layers.Flatten()(inputs)), "m.keras") == 32
    with pytest.raises(SpecError) as refused:
        stages.classifier_units(keras.Model(inputs, [inputs, inputs]), "m.keras")
    assert str(refused.value) == "m.keras: the model has 2 outputs; surgery trains a classifier with one"
    with pytest.raises(SpecError) as refused:
        stages.classifier_units(keras.Model(inputs, [inputs, inputs]), "m.keras", doing="evaluates")
    assert str(refused.value) == "m.keras: the model has 2 outputs; surgery evaluates a classifier with one"
    with pytest.raises(SpecError) as refused:
        stages.classifier_units(keras.Model(inputs, inputs), "m.keras")
    assert str(refused.value) == (
        "m.keras: the model's output has shape (None, 4, 4, 2), not (batch, classes); append a head such as "
        "GlobalAveragePooling2D or Flatten, then Dense(units=<classes>)"
    )


def _dense(keras, units, activation=None):
    inputs = keras.Input((4,))
    return keras.Model(inputs, keras.layers.Dense(units, activation=activation)(inputs))


def test_a_head_that_fits_the_classes_and_the_lines_for_one_that_does_not(keras):
    found = stages.head(_dense(keras, 3, "softmax"), ["b", "a", "c"], "m", one_hot=True)
    assert (found.classes, found.units, found.activation, found.one_hot) == (3, 3, "softmax", True)
    binary = stages.head(_dense(keras, 1, "sigmoid"), ["no", "yes"], "m", one_hot=True)
    assert (binary.units, binary.activation, binary.one_hot) == (1, "sigmoid", False)  # one unit: never one-hot
    assert not stages.head(_dense(keras, 3), ["b", "a", "c"], "m").one_hot
    assert stages.head(_dense(keras, 2, "softmax"), ["no", "yes"], "m", one_hot=True).one_hot  # two units: may be
    inputs = keras.Input((4,))
    with pytest.raises(SpecError) as refused:
        stages.head(keras.Model(inputs, [inputs, inputs]), ["a", "b"], "m")
    assert str(refused.value) == "m: the model has 2 outputs; surgery trains a classifier with one"
    cases = [
        (3, ["only"], "m: the data has 1 class (only); a classifier learns to tell classes apart, so give it at "
         "least 2 (one subfolder per class, or 2 distinct labels in y)"),
        (3, ["a", "b"], "m: the data has 2 classes (a, b) but the model's output has 3 units; make the last "
         "layer's units 2 (or 1 with a sigmoid for two classes)"),
        (1, list("abc"), "m: the data has 3 classes (a, b, c) but the model's output has 1 unit; make the last "
         "layer's units 3"),
        (3, list("abcdefg"), "m: the data has 7 classes (a, b, c, d, e, f, ...) but the model's output has 3 "
         "units; make the last layer's units 7"),
        (3, list("abcdef"), "m: the data has 6 classes (a, b, c, d, e, f) but the model's output has 3 "
         "units; make the last layer's units 6"),
    ]  # fmt: skip
    for units, names, says in cases:
        with pytest.raises(SpecError) as refused:
            stages.head(_dense(keras, units), names, "m")
        assert str(refused.value) == says


def test_the_next_stages_optimizer_counts_on_from_the_last_stages_steps(keras):
    model = _dense(keras, 3, "softmax")
    x, y = np.zeros((8, 4), "float32"), np.array([0, 1, 2, 0, 1, 2, 0, 1])
    stages.compile_stage(model, Stage("one", 1, learning_rate=0.1), "sparse_categorical_crossentropy", ["accuracy"])
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    assert set(model.evaluate(x, y, verbose=0, return_dict=True)) == {"loss", "accuracy"}
    assert int(model.optimizer.iterations.numpy()) == 2
    stages.compile_stage(
        model, Stage("two", 1, optimizer="sgd", learning_rate=0.01), "sparse_categorical_crossentropy", []
    )
    assert type(model.optimizer).__name__ == "SGD" and int(model.optimizer.iterations.numpy()) == 2
    assert float(model.optimizer.learning_rate.numpy()) == pytest.approx(0.01)
    fresh = _dense(keras, 3, "softmax")
    stages.compile_stage(fresh, Stage("one", 1), "sparse_categorical_crossentropy", [])
    assert int(fresh.optimizer.iterations.numpy()) == 0


def test_the_trainable_report_counts_params_and_names_the_first_four_layers(keras, model):
    for layer in model.layers:
        layer.trainable = True
    # bn's moving mean and variance (32) are not trainable
    assert stages.trainable_report(model) == "trainable: 643 of 675 params in 4 layers (conv, bn, dense_a, dense_b)"
    inputs = keras.Input((2,))
    x = inputs
    for i in range(6):
        x = keras.layers.Dense(2, name=f"d{i}")(x)
    wide = keras.Model(inputs, x)
    wide.get_layer("d0").trainable = False
    assert stages.trainable_report(wide) == "trainable: 30 of 36 params in 5 layers (d1, d2, d3, d4, ... (1 more))"
    for layer in wide.layers:
        layer.trainable = False
    assert stages.trainable_report(wide) == "trainable: 0 of 36 params in 0 layers (none)"
