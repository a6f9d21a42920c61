"""A stage's options as the Keras objects surgery hands to fit (training/options.py), checked without training:
each input is one where a likely mistake gives another object or another number (a loss watched for a
maximum, logits thresholded at 0.5, a schedule counted from the run's first epoch instead of the stage's,
weights inverted on unequal classes). test_train_options.py checks that the objects act in a real fit."""

from __future__ import annotations

import math

import pytest

import surgery
from surgery.training import options
from surgery.training.config import Stage
from surgery.training.options import Head


def _config(obj) -> dict:
    return obj.get_config()


@pytest.mark.parametrize(
    "head, label_smoothing, cls, from_logits",
    [
        (Head(2, 1, "sigmoid"), 0.2, "BinaryCrossentropy", False),
        (Head(2, 1, "linear"), 0.0, "BinaryCrossentropy", True),
        (Head(3, 3, "softmax", one_hot=True), 0.1, "CategoricalCrossentropy", False),
        (Head(3, 3, "linear", one_hot=True), 0.1, "CategoricalCrossentropy", True),
        (Head(3, 3, "softmax"), 0.0, "SparseCategoricalCrossentropy", False),
        (Head(3, 3, "linear"), 0.0, "SparseCategoricalCrossentropy", True),
    ],
)
def test_the_loss_fits_the_head(keras, head, label_smoothing, cls, from_logits):
    loss = options.loss(head, label_smoothing)
    assert type(loss).__name__ == cls and _config(loss)["from_logits"] is from_logits
    if cls != "SparseCategoricalCrossentropy":
        assert _config(loss)["label_smoothing"] == label_smoothing


def test_accuracy_fits_the_head_and_thresholds_logits_at_zero(keras):
    sigmoid, logit = options.metrics(Head(2, 1, "sigmoid"))[0], options.metrics(Head(2, 1, "linear"))[0]
    assert (type(sigmoid).__name__, sigmoid.name, _config(sigmoid)["threshold"]) == ("BinaryAccuracy", "accuracy", 0.5)
    assert _config(logit)["threshold"] == 0.0
    assert [type(options.metrics(Head(3, 3, "softmax", one_hot=one_hot))[0]).__name__ for one_hot in (True, False)] == [
        "CategoricalAccuracy",
        "SparseCategoricalAccuracy",
    ]


def test_extra_metrics_in_order_with_their_settings(keras):
    found = options.metrics(Head(5, 5, "softmax", one_hot=True), ("recall", "auc", "top_3_accuracy", "precision"))
    assert [(type(m).__name__, m.name) for m in found] == [
        ("CategoricalAccuracy", "accuracy"),
        ("Recall", "recall"),
        ("AUC", "auc"),
        ("TopKCategoricalAccuracy", "top_3_accuracy"),
        ("Precision", "precision"),
    ]
    assert _config(found[2])["from_logits"] is False and _config(found[3])["k"] == 3
    sparse = options.metrics(Head(5, 5, "linear"), ("auc", "top_4_accuracy"))
    assert _config(sparse[1])["from_logits"] is True
    assert (type(sparse[2]).__name__, _config(sparse[2])["k"]) == ("SparseTopKCategoricalAccuracy", 4)


@pytest.mark.parametrize(
    "head, name, message",
    [
        (Head(5, 5, "linear"), "precision", "precision needs a probability output (softmax or sigmoid)"),
        (Head(5, 5, "linear"), "recall", "recall needs a probability output"),
        (Head(3, 3, "softmax"), "top_3_accuracy", "top_3_accuracy needs more than 3 classes; the model has 3 outputs"),
        (Head(2, 1, "sigmoid"), "top_1_accuracy", "top_1_accuracy needs more than 1 classes; the model has 1 outputs"),
    ],
)
def test_a_metric_the_head_cannot_have_is_refused(keras, head, name, message):
    with pytest.raises(surgery.SpecError) as refused:
        options.metrics(head, (name,), "spec.json")
    assert str(refused.value).startswith(f"spec.json: train.metrics: {message}")


@pytest.mark.parametrize(
    "clip, key, value",
    [(1.5, "global_clipnorm", 1.5), ({"norm": 2.0}, "clipnorm", 2.0), ({"value": 0.5}, "clipvalue", 0.5)],
)
def test_the_optimizer_has_the_stages_rate_decay_clipping_and_its_own_name(keras, clip, key, value):
    keras.optimizers.SGD()  # made earlier in the process: the run's optimizer is still "sgd", not "sgd_1"
    made = options.optimizer(Stage("s", 1, optimizer="sgd", learning_rate=0.05, weight_decay=0.01, gradient_clip=clip))
    config = made.get_config()
    assert (type(made).__name__, config["name"]) == ("SGD", "sgd")
    assert config["learning_rate"] == pytest.approx(0.05) and config["weight_decay"] == pytest.approx(0.01)
    assert {k: config[k] for k in ("clipnorm", "clipvalue", "global_clipnorm")} == {
        k: (value if k == key else None) for k in ("clipnorm", "clipvalue", "global_clipnorm")
    }
    assert options.optimizer(Stage("s", 1, optimizer="adam")).get_config()["weight_decay"] is None


def test_callbacks_watch_in_the_direction_of_their_metric_with_keras_defaults_overridden(keras):
    stage = Stage(
        "s",
        4,
        early_stopping=True,
        reduce_lr_on_plateau={"monitor": "val_loss", "factor": 0.5},
        schedule={"type": "cosine"},
    )
    stop, plateau, schedule = options.callbacks(stage, 0, "val_accuracy")
    assert (stop.monitor, stop.mode, stop.patience, stop.min_delta, stop.restore_best_weights) == (
        "val_accuracy",
        "max",
        3,
        0.0,
        True,
    )
    assert (plateau.monitor, plateau.mode, plateau.factor, plateau.patience, plateau.min_delta) == (
        "val_loss",
        "min",
        0.5,
        2,
        1e-4,
    )
    assert (plateau.min_lr, plateau.cooldown) == (0.0, 0) and type(schedule).__name__ == "LearningRateScheduler"
    stop = options.callbacks(Stage("s", 4, early_stopping={"monitor": "loss", "patience": 7}), 0, "val_accuracy")[0]
    assert (stop.monitor, stop.mode, stop.patience) == ("loss", "min", 7)
    assert options.callbacks(Stage("s", 4), 0, "val_loss") == []


def _rates(stage, start, epochs=None):
    rate = options.rate_schedule(stage, start, epochs)
    return [rate(start + e, 99.0) for e in range(epochs or stage.epochs)]


def test_a_cosine_schedule_warms_up_then_decays_over_the_stages_own_epochs(keras):
    """The stage starts at epoch 3 of the run: its first epoch is the warmup's first, whatever came before."""
    stage = Stage("s", 6, learning_rate=0.3, schedule={"type": "cosine", "warmup_epochs": 2, "alpha": 0.1})
    cosine = [0.3 * (0.1 + 0.9 * (1 + math.cos(math.pi * e / 4)) / 2) for e in range(4)]
    assert _rates(stage, 3) == pytest.approx([0.1, 0.2, *cosine], rel=1e-6)
    longer = [0.3 * (0.1 + 0.9 * (1 + math.cos(math.pi * e / 8)) / 2) for e in range(8)]
    assert _rates(stage, 3, epochs=10) == pytest.approx([0.1, 0.2, *longer], rel=1e-6)  # --resume --epochs 10


def test_exponential_and_piecewise_schedules_count_from_the_stage_start(keras):
    exponential = Stage(
        "s", 4, learning_rate=0.1, schedule={"type": "exponential", "decay_epochs": 2, "decay_rate": 0.25}
    )
    assert _rates(exponential, 5) == pytest.approx([0.1 * 0.25 ** (e / 2) for e in range(4)], rel=1e-6)
    piecewise = Stage("s", 4, schedule={"type": "piecewise", "boundaries": [1, 2], "values": [0.3, 0.2, 0.1]})
    assert _rates(piecewise, 2) == pytest.approx([0.3, 0.3, 0.2, 0.1], rel=1e-6)


def test_class_weights_balanced_named_or_none():
    balanced = options.class_weights(Stage("s", 1, class_weight="balanced"), ["c", "a", "b"], [9, 5, 2])
    assert balanced == pytest.approx({0: 16 / 27, 1: 16 / 15, 2: 16 / 6})  # n / (classes * count), as sklearn
    assert options.class_weights(Stage("s", 1, class_weight="balanced"), ["a", "b"], [4, 0]) == {0: 0.5, 1: 0.0}
    named = options.class_weights(Stage("s", 1, class_weight={"b": 2.5}), ["c", "a", "b"], [9, 5, 2])
    assert named == {0: 1.0, 1: 1.0, 2: 2.5}
    assert options.class_weights(Stage("s", 1), ["a"], [3]) is None
    with pytest.raises(surgery.SpecError) as refused:
        options.class_weights(Stage("head", 1, class_weight={"d": 1, "e": 2}), ["c", "a", "b"], [1, 1, 1], "s.json")
    assert str(refused.value) == (
        's.json: train.stages (head).class_weight: class_weight names "d", which is not one of the data\'s '
        "classes: c, a, b"
    )


def test_plateau_reduction_with_surgerys_defaults_watches_the_runs_monitor(keras):
    (plateau,) = options.callbacks(Stage("s", 4, reduce_lr_on_plateau=True), 0, "val_accuracy")
    assert (plateau.monitor, plateau.mode, plateau.factor, plateau.patience) == ("val_accuracy", "max", 0.1, 2)


def test_the_schedule_callback_runs_the_stages_schedule_from_its_first_epoch(keras):
    stage = Stage("s", 3, learning_rate=0.3, schedule={"type": "cosine", "warmup_epochs": 2})
    (callback,) = options.callbacks(stage, 4, "val_loss", epochs=5)
    assert [callback.schedule(4 + e, 99.0) for e in range(5)] == pytest.approx(_rates(stage, 4, epochs=5))
    assert callback.schedule(4, 99.0) == pytest.approx(0.1)  # the warmup's first epoch is the stage's first


def test_an_unknown_class_name_lists_at_most_twelve_classes():
    names = [f"k{i:02d}" for i in range(14)]
    with pytest.raises(surgery.SpecError) as refused:
        options.class_weights(Stage("s", 1, class_weight={"zz": 1}), names, [1] * 14)
    assert str(refused.value).endswith("classes: " + ", ".join(names[:12]))


def _train_config(**train):
    from surgery.training.config import resolve

    spec = {
        "surgery": 1,
        "steps": [{"op": "backbone", "name": "mobilenetv2", "weights": None, "input_shape": [32, 32, 3]}],
        "train": {"data": "x", "stages": [{"epochs": 1}], **train},
    }
    return resolve(surgery.load(spec)[0], {}, need_data=False)


def test_the_logged_metrics_are_the_ones_fit_logs_with_validation_or_without(keras):
    assert options.logged_metrics(_train_config(metrics=["auc"], validation_split=0)) == ["loss", "accuracy", "auc"]
    assert options.logged_metrics(_train_config(metrics=["auc"], validation_split=0.2)) == [
        "loss",
        "accuracy",
        "auc",
        "val_loss",
        "val_accuracy",
        "val_auc",
    ]


@pytest.mark.parametrize(
    "change, where, metric",
    [
        ({"monitor": "val_auc"}, "train.monitor", "val_auc"),
        ({"early_stopping": {"monitor": "val_acc"}}, "train.stages[1].early_stopping", "val_acc"),
        ({"reduce_lr_on_plateau": {"monitor": "auc"}}, "train.stages[1].reduce_lr_on_plateau", "auc"),
    ],
)
def test_a_monitored_metric_the_run_does_not_log_is_refused_where_it_is_named(keras, change, where, metric):
    """Checked when the spec is read (surgery validate); here on a config changed after that check."""
    from dataclasses import replace

    config = _train_config(validation_split=0.2, stages=[{"epochs": 1}, {"epochs": 1, "early_stopping": True}])
    options.check_monitors(config, "s.json")  # everything it watches is logged
    if "monitor" in change:
        config = replace(config, monitor=change["monitor"])
    else:
        config = replace(config, stages=(config.stages[0], replace(config.stages[1], **change)))
    with pytest.raises(surgery.SpecError) as refused:
        options.check_monitors(config, "s.json")
    assert str(refused.value) == (
        f's.json: {where}: "{metric}" is not logged by this run; use one of loss, accuracy, val_loss, val_accuracy'
    )


def test_one_hot_labels_only_where_label_smoothing_or_a_probability_metric_needs_them(keras):
    assert not options.needs_one_hot(_train_config(metrics=["top_2_accuracy"]))
    assert options.needs_one_hot(_train_config(metrics=["top_2_accuracy", "recall"]))
    assert options.needs_one_hot(_train_config(stages=[{"epochs": 1}, {"epochs": 1, "label_smoothing": 0.1}]))


def test_left_out_settings_take_surgerys_documented_defaults(keras):
    """No label smoothing; metrics named as logged; cosine to 0 (alpha 0); exponential halving every epoch."""
    assert _config(options.loss(Head(3, 3, "softmax", one_hot=True)))["label_smoothing"] == 0.0
    assert options.metrics(Head(3, 3, "softmax"))[0].name == "accuracy"
    cosine = Stage("s", 3, learning_rate=0.3, schedule={"type": "cosine"})
    assert _rates(cosine, 0) == pytest.approx([0.3 * (1 + math.cos(math.pi * e / 3)) / 2 for e in range(3)], rel=1e-6)
    exponential = Stage("s", 3, learning_rate=0.4, schedule={"type": "exponential"})
    assert _rates(exponential, 0) == pytest.approx([0.4, 0.2, 0.1], rel=1e-6)
