"""Models of a shape a command cannot use: refused in one line that names the file the model came from (the
spec, the model file or the checkpoint, never the data), and a size option where the model leaves size open."""

from __future__ import annotations

import json

import numpy as np
import pytest

from helpers import assert_one_error_line, tiny_spec, write_spec


@pytest.fixture(scope="module")
def open_size(tmp_path_factory, keras):
    """A classifier whose input size is not fixed (what adapt_input makes), with its conv layer named."""
    folder = tmp_path_factory.mktemp("open")
    inputs = keras.Input((None, None, 3), name="image")
    x = keras.layers.Conv2D(2, 3, padding="same", name="conv")(inputs)
    out = keras.layers.Dense(3, activation="softmax", name="head")(keras.layers.GlobalAveragePooling2D()(x))
    keras.Model(inputs, out).save(str(folder / "open.keras"))
    rng = np.random.default_rng(0)
    # Classes of unequal size, so that a count from the wrong axis would differ.
    np.savez(folder / "data.npz", x=rng.uniform(0, 255, (7, 20, 20, 3)).astype("uint8"), y=[0, 0, 0, 1, 1, 2, 0])
    return folder


def _train_refused(cli, spec, images, tmp_path, says):
    """train refuses ``spec`` with the one line ``says`` and makes no run folder."""
    done = cli("train", spec, "--data", images["train"], "-o", tmp_path / "run")
    assert done.exit_code == 2, done.output
    assert_one_error_line(done.stderr, says)
    assert not (tmp_path / "run").exists()


def test_an_open_size_model_asks_each_command_for_a_size_naming_the_model(cli, open_size, tmp_path):
    model, data = open_size / "open.keras", open_size / "data.npz"
    says = (
        f"{model}: the model's input size is not fixed (NonexNone); give --image-size HEIGHT WIDTH, "
        "the size it was trained at"
    )
    for args in (
        ("evaluate", model, "--data", data),
        ("features", model, "--data", data, "-o", tmp_path / "f.npz"),
        ("predict", model, tmp_path / "x.png"),
    ):
        if args[0] == "predict":
            from PIL import Image

            Image.new("RGB", (20, 20)).save(tmp_path / "x.png")
        done = cli(*args)
        assert done.exit_code == 2, done.output
        assert_one_error_line(done.stderr, says)
    assert not (tmp_path / "f.npz").exists()


def test_image_size_sizes_an_open_model_and_classes_json_remembers_the_trained_size(cli, open_size, tmp_path, images):
    """--image-size is the size a folder's images are resized to (a conv layer's output has that size);
    without it, the size classes.json says the model was trained at; a given option beats the sidecar. An
    .npz is not resized: its images must have the size given."""
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "open.keras").write_bytes((open_size / "open.keras").read_bytes())
    model, data = folder / "open.keras", images["val"]

    def conv_size(*extra):
        out = tmp_path / f"f{len(list(tmp_path.glob('f*.npz')))}.npz"
        done = cli("features", model, "--data", data, "--layer", "conv", "-o", out, *extra)
        assert done.exit_code == 0, done.output
        return np.load(out)["features"].shape[1:3]

    assert conv_size("--image-size", 8, 12) == (8, 12)
    (folder / "classes.json").write_text(json.dumps({"class_names": ["0", "1", "2"], "input_shape": [10, 6, 3]}))
    assert conv_size() == (10, 6)
    assert conv_size("--image-size", 4, 4) == (4, 4)
    done = cli("evaluate", model, "--data", open_size / "data.npz", "--image-size", 20, 20, "--json")
    assert done.exit_code == 0, done.output
    found = json.loads(done.stdout)
    assert found["images"] == 7 and [sum(row) for row in found["confusion"]] == [4, 2, 1]
    done = cli("evaluate", model, "--data", open_size / "data.npz", "--json")
    assert done.exit_code == 2, done.output
    assert_one_error_line(done.stderr, "x holds images of shape (20, 20, 3) but the model's input is (10, 6, 3)")


def test_the_python_api_takes_an_image_size(open_size):
    import surgery

    found = surgery.evaluate(open_size / "open.keras", open_size / "data.npz", image_size=(20, 20))
    assert found.n == 7
    with pytest.raises(surgery.SurgeryError) as caught:
        surgery.evaluate(open_size / "open.keras", open_size / "data.npz", image_size=(12,))
    assert str(caught.value).startswith(
        "surgery.evaluate(): image_size must be (height, width), two whole numbers >= 1 or None, not tuple (12,)"
    )


@pytest.mark.slow
def test_a_size_option_on_a_model_of_fixed_size_says_it_does_not_apply(cli, tmp_path, images, backbone):
    """train.image_size on a 16x16 model: the option is named, not the data (which fits the model)."""
    spec = write_spec(tmp_path, tiny_spec(backbone, [{"epochs": 1}], image_size=[32, 24]))
    _train_refused(
        cli,
        spec,
        images,
        tmp_path,
        f"{spec}: train.image_size 32x24 does not apply: the model's input is fixed at 16x16; leave "
        "train.image_size out (images are resized to 16x16)",
    )
    same = write_spec(tmp_path, tiny_spec(backbone, [{"epochs": 1}], image_size=[16, 16]), "same.json")
    done = cli("train", same, "--data", images["train"], "-o", tmp_path / "run")
    assert done.exit_code == 0, done.output
    out = tmp_path / "x.npz"
    done = cli("features", tmp_path / "run" / "tiny.keras", "--data", images["val"], "--image-size", 8, 8, "-o", out)
    assert done.exit_code == 2, done.output
    assert_one_error_line(
        done.stderr, "tiny.keras: --image-size 8x8 does not apply: the model's input is fixed at 16x16"
    )
    assert not out.exists()


def test_predict_on_a_two_output_model_says_it_has_two_outputs(cli, tmp_path, keras, images):
    inputs = keras.Input((16, 16, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(inputs)
    model = keras.Model(inputs, [keras.layers.Dense(3)(pooled), keras.layers.Dense(2)(pooled)])
    model.save(str(tmp_path / "two.keras"))
    done = cli("predict", tmp_path / "two.keras", images["val"] / "red" / "0.png")
    assert done.exit_code == 2, done.output
    assert_one_error_line(
        done.stderr,
        f"{tmp_path / 'two.keras'}: the model has 2 outputs; predict needs a classifier with one "
        "(use `surgery features` for other outputs)",
    )


def test_a_two_input_source_model_is_refused_naming_the_spec(cli, tmp_path, keras, images):
    a, b = keras.Input((16, 16, 3)), keras.Input((16, 16, 3))
    joined = keras.layers.GlobalAveragePooling2D()(keras.layers.Add()([a, b]))
    keras.Model([a, b], joined).save(str(tmp_path / "two_in.keras"))
    spec = write_spec(tmp_path, tiny_spec(tmp_path / "two_in.keras", [{"epochs": 1}]))
    _train_refused(
        cli,
        spec,
        images,
        tmp_path,
        f"{spec}: the model's input is 2 tensors; surgery feeds images to a model with one "
        "(batch, height, width, channels) input",
    )


def test_resume_onto_a_swapped_checkpoint_names_the_checkpoint(cli, tmp_path, keras, images, backbone):
    """A checkpoint replaced by a two-output model: the refusal names the checkpoint, not the unchanged spec."""
    spec = write_spec(tmp_path, tiny_spec(backbone, [{"epochs": 1}], validation_split=0.0))
    run = tmp_path / "run"
    done = cli("train", spec, "--data", images["train"], "-o", run)
    assert done.exit_code == 0, done.output
    checkpoint = run / "checkpoints" / "epoch-0001.keras"
    inputs = keras.Input((16, 16, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(inputs)
    swapped = keras.Model(inputs, [keras.layers.Dense(3)(pooled), keras.layers.Dense(3)(pooled)])
    swapped.compile(optimizer="sgd", loss=["mse", "mse"])
    checkpoint.unlink()
    swapped.save(str(checkpoint))
    done = cli("train", spec, "--data", images["train"], "-o", run, "--resume", "--epochs", "2")
    assert done.exit_code == 2, done.output
    assert_one_error_line(done.stderr, f"{checkpoint}: the model has 2 outputs; surgery trains a classifier with one")
    assert json.loads((run / "checkpoints" / "state.json").read_text())["epochs_done"] == 1


@pytest.mark.parametrize(
    "metrics, where",
    [
        (["auc", "recall", "auc"], "train.metrics"),
        (["top_k_accuracy", {"top_k_accuracy": 5}], "train.metrics"),
        ("auc,auc", "--metrics"),
    ],
    ids=["spec", "two spellings of one", "option"],
)
def test_a_metric_named_twice_is_refused(cli, tmp_path, backbone, images, metrics, where):
    option = isinstance(metrics, str)
    spec = write_spec(tmp_path, tiny_spec(backbone, [{"epochs": 1}], **({} if option else {"metrics": metrics})))
    name = "auc" if "auc" in str(metrics) else "top_5_accuracy"
    file = "" if option else f"{spec}: "
    for args in (["validate", spec], ["train", spec, "--data", images["train"], "-o", tmp_path / "run"]):
        if option and args[0] == "validate":
            continue
        done = cli(*args, *(["--metrics", metrics] if option else []))
        assert done.exit_code == 2, done.output
        assert_one_error_line(done.stderr, f'{file}{where}: names the metric "{name}" twice; give each metric once')
    assert not (tmp_path / "run").exists()
