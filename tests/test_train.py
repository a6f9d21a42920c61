"""`surgery train`: stages change exactly what they leave trainable, BN statistics of frozen layers stay,
precision policies, checkpoints, --resume after a kill, and one clear error for each kind of bad input."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from helpers import CLASSES, assert_one_error_line, tiny_spec, wait_for_epochs, write_pngs, write_spec


def weights_by_path(model) -> dict:
    return {w.path: np.array(w.numpy()) for w in model.weights}


def changed(before: dict, after: dict) -> set:
    assert before.keys() == after.keys()
    return {p for p in before if not np.array_equal(before[p], after[p])}


HEAD = {"head/kernel", "head/bias"}
BN2 = {"bn2/gamma", "bn2/beta", "bn2/moving_mean", "bn2/moving_variance"}


@pytest.mark.slow
@pytest.mark.parametrize("batchnorm", ["keep_frozen", "train"])
def test_two_stages_change_exactly_what_each_stage_trains(cli, tmp_path, keras, images, backbone, batchnorm):
    import surgery

    unfreeze = {"names": ["conv2", "bn2"]} | ({"batchnorm": "train"} if batchnorm == "train" else {})
    spec = write_spec(
        tmp_path,
        tiny_spec(
            backbone,
            [
                {"name": "head", "epochs": 2, "learning_rate": 0.01},
                {"name": "fine_tune", "epochs": 1, "learning_rate": 0.001, "unfreeze": unfreeze},
            ],
        ),
    )
    initial = weights_by_path(surgery.build(spec))
    result = cli("train", spec, "--data", images["train"], "--validation-data", images["val"], "-o", tmp_path / "run")
    assert result.exit_code == 0, result.output + result.stderr
    assert "stage 1/2 head" in result.output and "stage 2/2 fine_tune" in result.output
    run = tmp_path / "run"
    after_head = weights_by_path(keras.saving.load_model(str(run / "checkpoints" / "epoch-0002.keras")))
    final = weights_by_path(keras.saving.load_model(str(run / "tiny.keras")))

    assert changed(initial, after_head) == HEAD
    expected = HEAD | {"conv2/kernel", "conv2/bias"} | (BN2 if batchnorm == "train" else set())
    assert changed(after_head, final) == expected
    # The BN layers of the frozen backbone kept the source's moving statistics through both stages.
    for stat in ("bn1/moving_mean", "bn1/moving_variance"):
        assert np.array_equal(initial[stat], final[stat])
    if batchnorm == "keep_frozen":
        assert "1 BatchNormalization layer kept frozen" in result.output


@pytest.mark.slow
def test_run_folder_holds_best_final_log_and_class_names(cli, tmp_path, keras, images, backbone):
    spec = write_spec(tmp_path, tiny_spec(backbone, [{"epochs": 3, "learning_rate": 0.05}], validation_split=0.25))
    result = cli("train", spec, "--data", images["train"], "-o", tmp_path / "run")
    assert result.exit_code == 0, result.stderr
    run = tmp_path / "run"
    assert json.loads((run / "classes.json").read_text())["class_names"] == ["blue", "green", "red"]
    with (run / "log.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]  # numbered from 1, as on the console
    state = json.loads((run / "checkpoints" / "state.json").read_text())
    best = max(float(r["val_accuracy"]) for r in rows)
    assert state["finished"] and state["best"] == pytest.approx(best)
    first_best = 1 + next(i for i, r in enumerate(rows) if float(r["val_accuracy"]) == best)
    assert state["best_epoch"] == first_best
    assert f"best val_accuracy {best:.4f} at epoch {first_best}" in result.output
    assert keras.saving.load_model(str(run / "best.keras")).output.shape[-1] == 3
    # 18 images, a quarter held out: 14 train, 4 validate.
    assert "training on 14, validating on 4" in result.output
    from surgery.training.callbacks import tensorboard_available

    if tensorboard_available():
        assert list((run / "tensorboard" / "validation").glob("events.out.tfevents.*"))
    else:
        assert "note: no TensorBoard logs: the tensorboard package is not installed" in result.output


@pytest.mark.slow
@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_precision_policy_and_float32_output(cli, tmp_path, keras, images, backbone, policy):
    spec = write_spec(tmp_path, tiny_spec(backbone, [{"epochs": 1}]))
    result = cli(
        "train",
        spec,
        "--data",
        images["train"],
        "--validation-data",
        images["val"],
        "--precision",
        policy,
        "-o",
        tmp_path / "run",
    )
    assert result.exit_code == 0, result.stderr
    assert keras.mixed_precision.global_policy().name == "float32"  # restored for whoever runs next
    keras.mixed_precision.set_global_policy(policy)  # so the loss-scale optimizer is restored as saved
    try:
        model = keras.saving.load_model(str(tmp_path / "run" / "tiny.keras"))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    policies = {layer.name: layer.dtype_policy.name for layer in model.layers[1:]}
    assert policies.pop("head_softmax") == "float32"
    assert set(policies.values()) == {policy}  # the backbone loaded from a float32 file included
    assert model.get_layer("head").get_config()["activation"] == "linear"
    assert model.output.dtype == "float32"
    assert (type(model.optimizer).__name__ == "LossScaleOptimizer") == (policy == "mixed_float16")


@pytest.mark.slow
def test_resume_after_kill_continues_from_the_checkpoint(cli, tmp_path, keras, images, backbone):
    stages = [
        {"name": "head", "epochs": 2, "learning_rate": 0.01},
        {"name": "fine_tune", "epochs": 20, "learning_rate": 0.001, "unfreeze": {"names": ["conv2"]}},
    ]
    spec = write_spec(tmp_path, tiny_spec(backbone, stages))
    args = ["train", spec, "--data", images["train"], "--validation-data", images["val"], "-o", tmp_path / "run"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "surgery", *map(str, args)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    state_file = tmp_path / "run" / "checkpoints" / "state.json"
    try:
        wait_for_epochs(state_file, 4, proc)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    killed_at = json.loads(state_file.read_text())["epochs_done"]
    assert 4 <= killed_at < 22

    again = cli(*args)  # the killed process is the one under test; the ones after it may run in this one
    assert again.exit_code == 2
    assert_one_error_line(again.stderr, "already holds a training run", "--resume")

    resumed = cli(*args, "--resume")
    assert resumed.exit_code == 0, resumed.stderr
    assert f"resuming {tmp_path / 'run'} after epoch {killed_at}" in resumed.stdout
    assert f"Epoch {killed_at + 1}/22" in resumed.stdout and "Epoch 1/22" not in resumed.stdout
    assert "stage 1/2" not in resumed.stdout  # the finished stage is not trained again
    with (tmp_path / "run" / "log.csv").open() as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == list(range(1, 23))
    # The fine-tune stage's optimizer went on from the checkpoint, and its step count continues the first
    # stage's (TensorBoard's per-step curves go on): 22 epochs of 5 steps (18 images, batch 4).
    final = keras.saving.load_model(str(tmp_path / "run" / "tiny.keras"))
    assert int(final.optimizer.iterations) == 22 * 5
    # Stage ends are kept; the latest epoch is the last one.
    kept = sorted(p.name for p in (tmp_path / "run" / "checkpoints").glob("*.keras"))
    assert kept == ["epoch-0002.keras", "epoch-0022.keras"]

    done = cli(*args, "--resume")
    assert done.exit_code == 0 and "nothing to resume" in done.stdout


# --- bad input: one line, exit 2, nothing written -------------------------------------------


def _bad_inputs(tmp_path, keras, images, backbone):
    flat = tmp_path / "flat"
    flat.mkdir()
    for name in ("a.png", "b.png", "c.png"):
        (flat / name).write_bytes((images["train"] / "red" / "0.png").read_bytes())
    unreadable = write_pngs(tmp_path / "unreadable", 2)
    (unreadable / "green" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    four = write_pngs(tmp_path / "four", 2, classes={**CLASSES, "black": (0, 0, 0)})
    np.savez(tmp_path / "noxy.npz", images=np.zeros((4, 16, 16, 3)), x=np.zeros((4, 16, 16, 3)))
    np.savez(tmp_path / "xy.npz", x=np.zeros((4, 8, 8, 3)), y=np.array([0, 1, 2, 0]))
    other_val = write_pngs(tmp_path / "otherval", 1, classes={"red": (1, 1, 1), "cyan": (0, 9, 9)})
    return {
        "no class subfolders": (["--data", flat], ["has no class subfolders", "3 image files directly"]),
        "unreadable image": (["--data", unreadable], ["1 of 7 image files cannot be read as images", "broken.png"]),
        "class count differs": (
            ["--data", four],
            [
                "the data has 4 classes (black, blue, green, red)",
                "the model's output has 3 units",
                "make the last layer's units 4",
            ],
        ),
        "npz without y": (["--data", tmp_path / "noxy.npz"], ["needs arrays x", "missing y", "it has: images, x"]),
        "npz images of another size": (
            ["--data", tmp_path / "xy.npz"],
            ["x holds images of shape (8, 8, 3)", "the model's input is (16, 16, 3)"],
        ),
        "validation classes differ": (
            ["--data", images["train"], "--validation-data", other_val],
            ["the validation data's classes (cyan, red) differ"],
        ),
        "no data": ([], ["no training data: pass --data PATH"]),
        "missing data": (["--data", tmp_path / "nope"], ["nope: --data: no such file or folder"]),
        "nothing to resume": (["--data", images["train"], "--resume"], ["nothing to resume"]),
    }


BAD = [
    "no class subfolders",
    "unreadable image",
    "class count differs",
    "npz without y",
    "npz images of another size",
    "validation classes differ",
    "no data",
    "missing data",
    "nothing to resume",
]


@pytest.mark.parametrize("case", BAD)
def test_bad_input_gives_one_error_line_and_writes_nothing(cli, tmp_path, keras, images, backbone, case):
    spec = write_spec(tmp_path, tiny_spec(backbone, [{"epochs": 1}]))
    args, fragments = _bad_inputs(tmp_path, keras, images, backbone)[case]
    result = cli("train", spec, *args, "-o", tmp_path / "run")
    assert result.exit_code == 2, result.output
    assert_one_error_line(result.stderr, *fragments)
    assert not (tmp_path / "run").exists()


def test_a_stage_selector_that_matches_nothing_fails_before_training(cli, tmp_path, keras, images, backbone):
    spec = write_spec(tmp_path, tiny_spec(backbone, [{"epochs": 1}, {"epochs": 1, "unfreeze": {"names": ["conv9"]}}]))
    result = cli("train", spec, "--data", images["train"], "-o", tmp_path / "run")
    assert result.exit_code == 2
    assert_one_error_line(result.stderr, 'train.stages[1].unfreeze: names: "conv9" matches no layer')
    assert "Epoch" not in result.output and not (tmp_path / "run").exists()


def test_train_section_is_checked_by_validate(cli, tmp_path, backbone):
    spec = tiny_spec(backbone, [{"epochs": 1, "optimizer": "adamm"}])
    result = cli("validate", write_spec(tmp_path, spec))
    assert result.exit_code == 2
    assert_one_error_line(result.stderr, "train.stages[0].optimizer", '"adamm" is not one of')
