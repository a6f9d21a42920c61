"""Each stage option changes what Keras does: the optimizer, callbacks and loss are there with the given
values, and they act (early stopping stops, class weights change the loss, schedules set the rate)."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest

import surgery

from helpers import assert_one_error_line, tiny_spec, write_spec


def _train(tmp_path, backbone, images, stages, name="run", callbacks=(), **options):
    spec = write_spec(tmp_path, tiny_spec(backbone, stages), f"{name}.json")
    return surgery.train(
        spec,
        str(images["train"]),
        tmp_path / name,
        validation_data=str(images["val"]),
        callbacks=callbacks,
        echo=None,
        verbose=0,
        **options,
    )


@pytest.mark.slow  # trains several runs: the full suite runs it
def test_optimizer_options_reach_the_keras_optimizer(tmp_path, keras, backbone, images):
    keras.optimizers.SGD()  # made earlier in the process: the run's optimizer is still "sgd", not "sgd_2"
    result = _train(
        tmp_path,
        backbone,
        images,
        [
            {
                "epochs": 1,
                "optimizer": "sgd",
                "learning_rate": 0.05,
                "weight_decay": 0.01,
                "gradient_clip": {"norm": 2.0},
            }
        ],
    )
    config = keras.saving.load_model(str(result.paths["final"])).optimizer.get_config()
    assert config["name"] == "sgd" and config["learning_rate"] == pytest.approx(0.05)
    assert config["weight_decay"] == pytest.approx(0.01) and config["clipnorm"] == pytest.approx(2.0)
    clipped = _train(tmp_path, backbone, images, [{"epochs": 1, "gradient_clip": 1.5}], name="global")
    assert keras.saving.load_model(str(clipped.paths["final"])).optimizer.get_config()["global_clipnorm"] == 1.5


@pytest.mark.slow
def test_early_stopping_stops_a_run_that_stops_improving(tmp_path, backbone, images):
    # A rate of 1e-9 cannot move val_loss by min_delta: patience 1 ends the stage after 2 of its 20 epochs.
    result = _train(
        tmp_path,
        backbone,
        images,
        [
            {
                "name": "head",
                "epochs": 20,
                "learning_rate": 1e-9,
                "early_stopping": {"monitor": "val_loss", "patience": 1, "min_delta": 0.5},
            },
            {"name": "more", "epochs": 2},
        ],
    )
    assert result.history["epoch"] == [1, 2, 3, 4]  # two of stage 1, then stage 2 starts where it ended
    assert result.state.stage_ends == [2, 4]
    state = json.loads((result.paths["final"].parent / "checkpoints" / "state.json").read_text())
    assert state["stage_ends"] == [2, 4] and state["finished"]


@pytest.mark.slow
def test_early_stopping_and_plateau_watch_the_right_direction(tmp_path, keras, backbone, images):
    """A loss that falls every epoch is improving: neither callback acts. The whole training set is one batch
    for a head on a frozen backbone (a convex problem) at a small plain-SGD rate, so the loss falls
    monotonically; watched the wrong way round (max for a loss), early stopping would end the stage after
    2 epochs and the plateau callback would halve the rate after the first."""
    result = _train(
        tmp_path,
        backbone,
        images,
        [
            {
                "epochs": 5,
                "optimizer": "sgd",
                "learning_rate": 0.05,
                "early_stopping": {"monitor": "loss", "patience": 1},
                "reduce_lr_on_plateau": {"monitor": "loss", "patience": 0, "factor": 0.5, "min_delta": 0.0},
            }
        ],
        batch_size=18,
    )
    losses = result.history["loss"]
    assert all(b < a for a, b in zip(losses, losses[1:])), losses  # the input: a loss that moves, downwards
    assert result.history["epoch"] == [1, 2, 3, 4, 5]
    np.testing.assert_allclose(result.history["learning_rate"], [0.05] * 5, rtol=1e-6)


@pytest.mark.parametrize(
    "monitor, mode", [("val_loss", "min"), ("loss", "min"), ("val_accuracy", "max"), ("auc", "max")]
)
def test_callbacks_improve_losses_downwards_and_scores_upwards(monitor, mode):
    from surgery.training.config import Stage
    from surgery.training.options import callbacks

    stage = Stage(name="s", epochs=1, early_stopping={"monitor": monitor}, reduce_lr_on_plateau={"monitor": monitor})
    found = callbacks(stage, 0, "val_accuracy")
    assert [(type(c).__name__, c.monitor, c.mode) for c in found] == [
        ("EarlyStopping", monitor, mode),
        ("ReduceLROnPlateau", monitor, mode),
    ]


@pytest.mark.slow
def test_reduce_lr_on_plateau_lowers_the_rate(tmp_path, backbone, images):
    result = _train(
        tmp_path,
        backbone,
        images,
        [
            {
                "epochs": 4,
                "learning_rate": 1e-9,
                "reduce_lr_on_plateau": {"monitor": "val_loss", "patience": 0, "factor": 0.5, "min_delta": 0.5},
            }
        ],
    )
    rates = result.history["learning_rate"]
    assert rates[0] == pytest.approx(1e-9) and rates[-1] < rates[0] / 3


def _cosine(lr, t, length, alpha=0.0):
    return lr * ((1 - alpha) * 0.5 * (1 + math.cos(math.pi * min(t, length) / length)) + alpha)


@pytest.mark.slow  # trains several runs: the full suite runs it
def test_a_later_stages_cosine_schedule_counts_from_its_own_first_epoch(tmp_path, backbone, images):
    """The schedule starts at the stage's first epoch (3), not the run's: counted from epoch 1, the warmup
    would be over before the stage began. alpha 0.1 is the floor the rate decays to."""
    lr, warmup, epochs, alpha = 0.01, 2, 6, 0.1
    result = _train(
        tmp_path,
        backbone,
        images,
        [
            {"name": "head", "epochs": 2, "learning_rate": 0.05},
            {
                "name": "cosine",
                "epochs": epochs,
                "learning_rate": lr,
                "schedule": {"type": "cosine", "warmup_epochs": warmup, "alpha": alpha},
            },
        ],
    )
    expected = [0.05, 0.05] + [lr * (e + 1) / (warmup + 1) for e in range(warmup)]
    expected += [_cosine(lr, t, epochs - warmup, alpha) for t in range(epochs - warmup)]
    np.testing.assert_allclose(result.history["learning_rate"], expected, rtol=1e-5)


@pytest.mark.slow  # trains several runs: the full suite runs it
def test_exponential_and_piecewise_schedules_with_their_options(tmp_path, backbone, images):
    """decay_rate 0.8 every 2 epochs (not the defaults 0.5 and 1), then a piecewise stage whose boundary
    counts from the stage's own start (epoch 5)."""
    result = _train(
        tmp_path,
        backbone,
        images,
        [
            {
                "name": "exponential",
                "epochs": 4,
                "learning_rate": 0.01,
                "schedule": {"type": "exponential", "decay_rate": 0.8, "decay_epochs": 2},
            },
            {
                "name": "piecewise",
                "epochs": 4,
                "schedule": {"type": "piecewise", "boundaries": [1], "values": [0.02, 0.002]},
            },
        ],
    )
    expected = [0.01 * 0.8 ** (e / 2) for e in range(4)] + [0.02, 0.02, 0.002, 0.002]
    np.testing.assert_allclose(result.history["learning_rate"], expected, rtol=1e-5)


@pytest.mark.slow  # trains several runs: the full suite runs it
def test_class_weights_change_the_loss(tmp_path, backbone, images):
    plain = _train(tmp_path, backbone, images, [{"epochs": 1, "learning_rate": 1e-9}], name="plain")
    weighted = _train(
        tmp_path,
        backbone,
        images,
        [{"epochs": 1, "learning_rate": 1e-9, "class_weight": {"red": 5.0}}],
        name="weighted",
    )
    balanced = _train(
        tmp_path, backbone, images, [{"epochs": 1, "learning_rate": 1e-9, "class_weight": "balanced"}], name="balanced"
    )
    # Same data, same weights (the rate cannot move them): the red images count five times in the loss.
    assert weighted.history["loss"][0] > plain.history["loss"][0] * 1.3
    # Equal class sizes: balanced weighs every class 1, so the loss is the plain one.
    assert balanced.history["loss"][0] == pytest.approx(plain.history["loss"][0], rel=1e-5)
    # Validation is not weighted, as in fit.
    assert weighted.history["val_loss"][0] == pytest.approx(plain.history["val_loss"][0], rel=1e-5)


def test_named_class_weights_weigh_each_sample_of_that_class(tmp_path, keras, backbone):
    """class_weight by name on an .npz whose class_names are red, green, blue (not alphabetical) and whose
    classes hold 2, 5 and 9 samples: the loss of the one batch is the per-sample cross-entropy weighted by
    each sample's class (red 5, blue 0.5, green 1), not with the names sorted or the weights on the wrong
    indices."""
    rng = np.random.default_rng(3)
    names, labels = ["red", "green", "blue"], np.repeat([0, 1, 2], [2, 5, 9])
    x = rng.uniform(0, 255, (len(labels), 16, 16, 3)).astype("float32")
    np.savez(tmp_path / "data.npz", x=x, y=labels, class_names=np.array(names))
    weights = {"red": 5.0, "blue": 0.5}
    stage = {"epochs": 1, "learning_rate": 1e-9, "optimizer": "sgd", "class_weight": weights}
    spec = write_spec(tmp_path, tiny_spec(backbone, [stage], batch_size=32, validation_split=0.0))
    result = surgery.train(spec, str(tmp_path / "data.npz"), tmp_path / "run", echo=None, verbose=0)
    probabilities = keras.saving.load_model(str(result.paths["final"])).predict(x, verbose=0)
    cross_entropy = -np.log(probabilities[np.arange(len(labels)), labels])

    def loss(order):
        return float(np.mean([weights.get(order[y], 1.0) for y in labels] * cross_entropy))

    assert result.history["loss"][0] == pytest.approx(loss(names), rel=1e-4)
    assert abs(loss(sorted(names)) - loss(names)) > 0.1 * loss(names)  # the input tells the orders apart


@pytest.mark.slow  # trains several runs: the full suite runs it
def test_balanced_class_weights_are_sklearns_on_unequal_classes(tmp_path, backbone, images):
    """9 blue, 5 green and 2 red images: "balanced" gives the loss of scikit-learn's balanced weights
    (n / (classes * count): red 2.67, blue 0.59) written out by name, not of their inverse or of 1."""
    from sklearn.utils.class_weight import compute_class_weight

    from helpers import write_pngs

    counts = {"blue": 9, "green": 5, "red": 2}
    data = {"train": write_pngs(tmp_path / "unequal", counts), "val": images["val"]}
    labels = np.repeat(np.arange(3), [counts[c] for c in sorted(counts)])
    reference = compute_class_weight("balanced", classes=np.arange(3), y=labels)
    by_name = {c: float(w) for c, w in zip(sorted(counts), reference)}
    inverse = {c: 1 / w for c, w in by_name.items()}
    stage = {"epochs": 1, "learning_rate": 1e-9, "optimizer": "sgd"}
    losses = {
        name: _train(tmp_path, backbone, data, [{**stage, **weight}], name=name).history["loss"][0]
        for name, weight in (
            ("balanced", {"class_weight": "balanced"}),
            ("sklearn", {"class_weight": by_name}),
            ("inverse", {"class_weight": inverse}),
            ("plain", {}),
        )
    }
    assert losses["balanced"] == pytest.approx(losses["sklearn"], rel=1e-5)
    # The input tells the formulas apart: the inverse weights and no weights give losses further off than
    # 100 times the tolerance above (by how much depends on the backbone's random weights).
    assert abs(losses["inverse"] - losses["sklearn"]) > 1e-3 * losses["sklearn"]
    assert abs(losses["plain"] - losses["sklearn"]) > 1e-3 * losses["sklearn"]


@pytest.mark.slow
def test_a_stage_freezes_then_unfreezes(tmp_path, keras, backbone, images):
    """Stage 2 freezes every layer, the head included, then unfreezes conv2: only conv2 trains. Run the other
    way round, the freeze would undo the unfreeze and leave nothing to train."""
    result = _train(
        tmp_path,
        backbone,
        images,
        [
            {"name": "head", "epochs": 1, "learning_rate": 0.05},
            {
                "name": "conv2",
                "epochs": 1,
                "learning_rate": 0.05,
                "freeze": {"layers": ":"},
                "unfreeze": {"names": ["conv2"]},
            },
        ],
    )
    after_head = keras.saving.load_model(str(result.paths["final"].parent / "checkpoints" / "epoch-0001.keras"))
    final = keras.saving.load_model(str(result.paths["final"]))
    assert [layer.name for layer in final.layers if layer.trainable and layer.weights] == ["conv2"]
    for name, moved in (("head", False), ("conv2", True), ("conv1", False)):
        before, after = after_head.get_layer(name).get_weights()[0], final.get_layer(name).get_weights()[0]
        assert (not np.array_equal(before, after)) == moved, name


@pytest.mark.slow
def test_label_smoothing_and_extra_metrics(tmp_path, keras, backbone, images):
    result = _train(
        tmp_path,
        backbone,
        images,
        [{"epochs": 1, "label_smoothing": 0.2}],
        metrics=["auc", "precision", "recall", {"top_k_accuracy": 2}],
    )
    for name in ("auc", "precision", "recall", "top_2_accuracy", "val_auc", "val_top_2_accuracy"):
        assert name in result.history, sorted(result.history)
    model = keras.saving.load_model(str(result.paths["final"]))
    assert type(model.loss).__name__ == "CategoricalCrossentropy"
    assert model.loss.get_config()["label_smoothing"] == pytest.approx(0.2)


@pytest.mark.slow  # trains several runs: the full suite runs it
def test_a_one_unit_sigmoid_head_trains_with_label_smoothing_and_the_probability_metrics(tmp_path, keras, backbone):
    """Two classes on one sigmoid unit: labels stay 0/1 (one-hot labels would not fit its one column), the
    binary loss smooths them, and the logged validation figures are those of sklearn on the final model."""
    from PIL import Image
    from sklearn.metrics import precision_score, recall_score, roc_auc_score

    from helpers import write_pngs

    two = {"cat": (200, 40, 40), "dog": (40, 40, 200)}
    train = write_pngs(tmp_path / "train", {"cat": 9, "dog": 5}, classes=two)
    val = write_pngs(tmp_path / "val", {"cat": 7, "dog": 4}, classes=two, seed=3)
    spec = tiny_spec(backbone, [{"epochs": 4, "learning_rate": 0.5, "label_smoothing": 0.2}], units=1)
    spec["steps"][2]["config"]["activation"] = "sigmoid"
    spec["train"]["metrics"] = ["auc", "precision", "recall"]
    result = surgery.train(
        write_spec(tmp_path, spec), str(train), tmp_path / "run", validation_data=str(val), echo=None, verbose=0
    )
    model = keras.saving.load_model(str(result.paths["final"]))
    assert type(model.loss).__name__ == "BinaryCrossentropy"
    files = sorted(val.glob("*/*.png"))
    y = np.array([f.parent.name == "dog" for f in files], dtype="float32")
    p = np.asarray(model.predict(np.stack([np.asarray(Image.open(f)) for f in files]).astype("float32"), verbose=0))
    p = p[:, 0]
    assert len(set(p > 0.5)) == 2, p  # both answers given: labels and outputs compared row by row tell
    assert result.history["val_precision"][-1] == pytest.approx(precision_score(y, p > 0.5), abs=1e-6)
    assert result.history["val_recall"][-1] == pytest.approx(recall_score(y, p > 0.5), abs=1e-6)
    assert result.history["val_auc"][-1] == pytest.approx(roc_auc_score(y, p), abs=0.05)
    smoothed = y * 0.8 + 0.1
    bce = -np.mean(smoothed * np.log(p) + (1 - smoothed) * np.log(1 - p))
    assert result.history["val_loss"][-1] == pytest.approx(bce, rel=1e-4)


@pytest.mark.slow
def test_monitor_picks_the_best_checkpoint(tmp_path, backbone, images):
    """Two epochs that learn, then two at a rate that wrecks the head: the best epoch is not the last, and
    best.keras is that epoch's model (its loss on the validation images is the best val_loss)."""
    stages = [{"epochs": 2, "learning_rate": 0.05}, {"epochs": 2, "learning_rate": 50.0, "optimizer": "sgd"}]
    result = _train(tmp_path, backbone, images, stages, monitor="val_loss")
    losses = result.history["val_loss"]
    assert int(np.argmin(losses)) < len(losses) - 1, losses  # the input tells "best" from "last"
    assert result.state.best_epoch == 1 + int(np.argmin(losses))
    assert result.state.best == pytest.approx(min(losses), rel=1e-6)
    best = surgery.evaluate(result.paths["best"], str(images["val"]))
    assert best.metrics["loss"] == pytest.approx(min(losses), rel=1e-4)


@pytest.mark.slow  # trains several runs: the full suite runs it
def test_a_users_callback_runs_in_every_stage_and_the_history_comes_back(tmp_path, keras, backbone, images):
    class Count(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.epochs = []

        def on_epoch_end(self, epoch, logs=None):
            self.epochs.append(epoch)

    seen = Count()
    result = _train(
        tmp_path, backbone, images, [{"epochs": 2}, {"epochs": 1, "unfreeze": {"names": ["conv2"]}}], callbacks=[seen]
    )
    assert seen.epochs == [0, 1, 2]  # Keras' own 0-based indices
    assert result.history["epoch"] == [1, 2, 3] and len(result.history["val_accuracy"]) == 3
    assert set(result.final_metrics) >= {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert result.validation is not None and result.validation.n == 6
    assert result.paths["final"].is_file()


def _events(folder):
    import tensorflow as tf

    for path in sorted(folder.glob("events.out.tfevents.*")):
        yield from tf.compat.v1.train.summary_iterator(str(path))


@pytest.mark.slow  # trains several runs: the full suite runs it
def test_tensorboard_steps_go_on_across_stages_and_the_graph_is_written_once(tmp_path, backbone, images):
    pytest.importorskip("tensorboard")  # a dev dependency: installed wherever the suite runs
    result = _train(tmp_path, backbone, images, [{"epochs": 2}, {"epochs": 2, "unfreeze": {"names": ["conv2"]}}])
    logs = result.paths["tensorboard"]
    epochs, per_step, graphs = [], [], 0
    for event in _events(logs / "validation"):
        for value in event.summary.value:
            if value.tag == "epoch_accuracy":
                epochs.append(event.step)
            elif value.tag == "evaluation_accuracy_vs_iterations":
                per_step.append(event.step)
    for event in _events(logs / "train"):
        graphs += sum(value.tag == "keras" for value in event.summary.value)  # what write_graph writes in Keras 3
    assert epochs == [1, 2, 3, 4]  # as the console and log.csv number them
    assert len(per_step) == 4 and per_step == sorted(set(per_step))  # optimizer steps: on, not restarting
    assert per_step[2] > per_step[1]
    assert graphs == 1


@pytest.mark.slow  # trains several runs: the full suite runs it
def test_arrays_and_a_tf_dataset_as_data(tmp_path, keras, backbone):
    import tensorflow as tf

    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (24, 16, 16, 3)).astype("float32")
    y = np.arange(24) % 3
    spec = write_spec(tmp_path, tiny_spec(backbone, [{"epochs": 2}]))
    from_arrays = surgery.train(
        spec, (x, y), tmp_path / "a", validation_split=0.25, echo=None, verbose=0, class_names=["a", "b", "c"]
    )
    assert json.loads((tmp_path / "a" / "classes.json").read_text())["class_names"] == ["a", "b", "c"]
    assert from_arrays.history["epoch"] == [1, 2]
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(5)
    from_dataset = surgery.train(spec, dataset, tmp_path / "d", validation_data=(x[:6], y[:6]), echo=None, verbose=0)
    assert from_dataset.history["epoch"] == [1, 2] and from_dataset.validation.n == 6


@pytest.mark.slow  # trains several runs: the full suite runs it
def test_resume_with_epochs_extends_a_finished_run(cli, tmp_path, backbone, images):
    """The last stage's cosine schedule is stretched over its new length: from 4 epochs, not its planned 2
    (which would leave epochs 4 and 5 at a rate of 0)."""
    lr = 0.01
    cosine = {"epochs": 2, "learning_rate": lr, "schedule": {"type": "cosine"}, "unfreeze": {"names": ["conv2"]}}
    spec = write_spec(tmp_path, tiny_spec(backbone, [{"epochs": 1}, cosine], validation_split=0.0))
    run = tmp_path / "run"
    assert cli("train", spec, "--data", images["train"], "-o", run).exit_code == 0
    done = cli("train", spec, "--data", images["train"], "-o", run, "--resume")
    assert "finished after 3 epochs (--epochs N trains it on to N)" in done.output
    more = cli("train", spec, "--data", images["train"], "-o", run, "--resume", "--epochs", "5")
    assert more.exit_code == 0, more.stderr
    assert "Epoch 4/5" in more.output and "stage 1/2" not in more.output
    state = json.loads((run / "checkpoints" / "state.json").read_text())
    assert state["epochs_done"] == 5 and state["finished"] and state["stage_ends"] == [1, 5]
    log = (run / "log.csv").read_text().splitlines()
    assert [int(line.split(",")[0]) for line in log[1:]] == [1, 2, 3, 4, 5]
    rate = log[0].split(",").index("learning_rate")
    rates = [float(line.split(",")[rate]) for line in log[1:]]
    np.testing.assert_allclose(rates[1:], [lr, _cosine(lr, 1, 2), _cosine(lr, 2, 4), _cosine(lr, 3, 4)], rtol=1e-5)
    fewer = cli("train", spec, "--data", images["train"], "-o", run, "--resume", "--epochs", "4")
    assert fewer.exit_code == 2
    assert_one_error_line(fewer.stderr, "the run has 5 epochs already; --epochs 4 must be more")


@pytest.mark.slow  # trains several runs: the full suite runs it
def test_a_run_started_with_epochs_on_the_command_line_resumes(cli, tmp_path, backbone, images):
    """The README's usual start, `--epochs 2`, killed in its first stage: resumed with or without the same
    --epochs it goes on with its own stage lengths (2 and 2, not the spec's 1 and 3) to 4 epochs."""
    spec = write_spec(tmp_path, tiny_spec(backbone, [{"epochs": 1}, {"epochs": 3}], validation_split=0.0))
    first = tmp_path / "first"

    class KilledAfterEpochOne(surgery.keras_env.keras().callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            raise KeyboardInterrupt  # after surgery's own callbacks have saved the epoch

    with pytest.raises(surgery.SurgeryError, match="interrupted after 1 epoch; continue with --resume"):
        surgery.train(
            spec, str(images["train"]), first, epochs=2, callbacks=[KilledAfterEpochOne()], echo=None, verbose=0
        )
    for extra, says in (([], "resuming with the run's own stage epochs (2, 2), not 1, 3"), (["--epochs", "2"], None)):
        run = tmp_path / f"again{len(extra)}"
        shutil.copytree(first, run)
        state_file = run / "checkpoints" / "state.json"
        assert json.loads(state_file.read_text())["epochs_done"] == 1
        done = cli("train", spec, "--data", images["train"], "-o", run, "--resume", *extra)
        assert done.exit_code == 0, done.stderr
        assert (says in done.output) if says else ("resuming with" not in done.output)
        state = json.loads(state_file.read_text())
        assert state["epochs_done"] == 4 and state["finished"] and state["stage_ends"] == [2, 4]
        log = (run / "log.csv").read_text().splitlines()
        assert [int(line.split(",")[0]) for line in log[1:]] == [1, 2, 3, 4]
    other = cli("train", spec, "--data", images["train"], "-o", run, "--resume", "--learning-rate", "0.5")
    assert other.exit_code == 2
    assert assert_one_error_line(other.stderr) == (
        f"error: {run}: --resume: stages[0].learning_rate differs from the run in this folder (0.001 then, "
        "0.5 now); resume with the same learning_rate, or start over with --force"
    )


BAD = {
    "schedule and plateau": (
        {"epochs": 2, "schedule": {"type": "cosine"}, "reduce_lr_on_plateau": True},
        "train.stages[0]: schedule and reduce_lr_on_plateau both set the learning rate",
    ),
    "piecewise values": (
        {"epochs": 4, "schedule": {"type": "piecewise", "boundaries": [1, 2], "values": [0.1, 0.01]}},
        "train.stages[0].schedule: 2 boundaries need 3 values, got 2",
    ),
    "warmup too long": (
        {"epochs": 2, "schedule": {"type": "cosine", "warmup_epochs": 2}},
        "warmup_epochs 2 leaves none of the stage's 2 epochs to the schedule",
    ),
    "monitor not logged": (
        {"epochs": 1, "early_stopping": {"monitor": "val_auc"}},
        'train.stages[0].early_stopping: "val_auc" is not logged by this run; use one of loss',
    ),
    "unknown class weight": (
        {"epochs": 1, "class_weight": {"purple": 2}},
        'class_weight names "purple", which is not one of the data\'s classes: blue, green, red',
    ),
    "nan rate": ({"epochs": 1, "learning_rate": "NAN_TOKEN"}, "NaN is not a number JSON allows"),
    "negative decay": ({"epochs": 1, "weight_decay": -1}, "weight_decay: -1 is too small; the minimum is 0"),
    "exponential keys on a cosine": (
        {"epochs": 3, "schedule": {"type": "cosine", "decay_rate": 0.8}},
        'train.stages[0].schedule: "decay_rate" is for the exponential schedule; a cosine schedule takes '
        "warmup_epochs, alpha",
    ),
    "cosine key on a piecewise": (
        {"epochs": 3, "schedule": {"type": "piecewise", "boundaries": [1], "values": [0.1, 0.01], "alpha": 0.1}},
        '"alpha" is for the cosine schedule; a piecewise schedule takes warmup_epochs, boundaries, values',
    ),
    "piecewise key on an exponential": (
        {"epochs": 3, "schedule": {"type": "exponential", "boundaries": [1]}},
        '"boundaries" is for the piecewise schedule; a exponential schedule takes warmup_epochs, decay_rate',
    ),
    "rate beyond float32": (
        {"epochs": 1, "learning_rate": 1e300},
        "train.stages[0].learning_rate: 1e+300 is too large; the maximum is 3.4028234663852886e+38",
    ),
    "decay beyond float32": ({"epochs": 1, "weight_decay": 1e300}, "weight_decay: 1e+300 is too large"),
    "class weight beyond float32": (
        {"epochs": 1, "class_weight": {"red": 1e308}},
        "class_weight.red: 1e+308 is too large",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_stage_options_are_one_line_before_training(cli, tmp_path, backbone, images, case):
    stage, fragment = BAD[case]
    text = json.dumps(tiny_spec(backbone, [stage])).replace('"NAN_TOKEN"', "NaN")
    (tmp_path / "spec.json").write_text(text)
    result = cli("train", tmp_path / "spec.json", "--data", images["train"], "-o", tmp_path / "run")
    assert result.exit_code == 2, result.output
    assert_one_error_line(result.stderr, fragment)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "option, value", [("--learning-rate", "1e300"), ("--weight-decay", "1e300"), ("--learning-rate", "3.5e38")]
)
def test_options_beyond_float32_are_refused_as_the_specs_are(cli, tmp_path, backbone, images, option, value):
    spec = write_spec(tmp_path, tiny_spec(backbone, [{"epochs": 1}]))
    result = cli("train", spec, "--data", images["train"], "-o", tmp_path / "run", option, value)
    assert result.exit_code == 2, result.output
    assert_one_error_line(
        result.stderr, f"{option}: {float(value):g} is too large; the maximum is 3.4028234663852886e+38"
    )
    assert not (tmp_path / "run").exists()
    with pytest.raises(surgery.SurgeryError, match="is too large"):
        surgery.train(
            spec, str(images["train"]), tmp_path / "api", echo=None, **{option[2:].replace("-", "_"): float(value)}
        )
    assert not (tmp_path / "api").exists()
