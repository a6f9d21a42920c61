"""`surgery features` and `surgery predict`: shapes, labels, file and class names, ImageNet names offline."""

from __future__ import annotations

import json

import numpy as np
import pytest

from helpers import CLASSES, assert_one_error_line, save_tiny_backbone, tiny_spec, write_pngs, write_spec


@pytest.fixture(scope="module")
def setup(tmp_path_factory, keras):
    """PNG folders, the tiny backbone, and a model trained on them by surgery train (so with classes.json).

    It is trained on the PNGs' pixels as an .npz whose class_names are red, green, blue: classes.json is then
    not in alphabetical order, so a command that sorted the names (or took them from the folders) would
    map the model's indices to the wrong names."""
    from PIL import Image

    from surgery import train as train_spec

    root = tmp_path_factory.mktemp("fp")
    images = write_pngs(root / "images", 2)
    order = list(CLASSES)
    files = [images / c / f"{i}.png" for c in order for i in range(2)]
    pixels = np.stack([np.asarray(Image.open(p).convert("RGB"), dtype="float32") for p in files])
    np.savez(root / "train.npz", x=pixels, y=np.repeat(np.arange(3), 2), class_names=np.array(order))
    backbone = save_tiny_backbone(root / "tiny.keras", keras)
    spec = write_spec(root, tiny_spec(backbone, [{"epochs": 1}], validation_split=0.0))
    train_spec(spec, str(root / "train.npz"), root / "run", echo=lambda *_: None, verbose=0)
    return {"root": root, "images": images, "backbone": backbone, "spec": spec, "model": root / "run" / "tiny.keras"}


def test_features_at_a_layer_of_a_trained_model(cli, tmp_path, keras, setup):
    out = tmp_path / "f.npz"
    result = cli("features", setup["model"], "--layer", "pool", "--data", setup["images"], "-o", out)
    assert result.exit_code == 0, result.stderr
    assert f"wrote {out}: features (6, 8), labels (6,), 3 classes" in result.output
    got = np.load(out)
    assert list(got["class_names"]) == ["blue", "green", "red"]
    assert list(got["files"]) == [f"{c}/{i}.png" for c in ("blue", "green", "red") for i in (0, 1)]
    assert list(got["labels"]) == [0, 0, 1, 1, 2, 2]
    # The same numbers as the layer computes on the images as training reads them (Keras' folder loader).
    model = keras.saving.load_model(str(setup["model"]))
    cut = keras.Model(model.inputs, model.get_layer("pool").output)
    ds = keras.utils.image_dataset_from_directory(
        str(setup["images"]), image_size=(16, 16), shuffle=False, verbose=False
    )
    expected = np.concatenate([cut.predict(x, verbose=0) for x, _ in ds])
    np.testing.assert_allclose(got["features"], expected, rtol=1e-5, atol=1e-6)


def test_features_of_a_spec_on_an_npz(cli, tmp_path, setup):
    spec = write_spec(
        tmp_path,
        {
            "surgery": 1,
            "name": "fx",
            "steps": [{"op": "backbone", "name": "keras_file", "path": str(setup["backbone"])}],
        },
    )
    x = np.random.default_rng(0).uniform(0, 255, (5, 16, 16, 3)).astype("float32")
    np.savez(tmp_path / "data.npz", x=x, y=np.array([2, 0, 1, 1, 0]), class_names=np.array(["a", "b", "c"]))
    result = cli("features", spec, "--data", tmp_path / "data.npz", "-o", tmp_path / "f.npz")
    assert result.exit_code == 0, result.stderr
    got = np.load(tmp_path / "f.npz")
    assert got["features"].shape == (5, 8) and got["features"].dtype == np.float32
    assert list(got["labels"]) == [2, 0, 1, 1, 0]
    assert list(got["class_names"]) == ["a", "b", "c"]
    assert list(got["files"]) == [f"data.npz[{i}]" for i in range(5)]


def test_predict_uses_the_class_names_of_a_trained_model(cli, keras, setup):
    """Names and scores are the model's own: its output on the same pixels, in plain Keras, mapped through
    classes.json (a reversed index-to-name mapping, or scores of another image, would fail here)."""
    from PIL import Image

    images = [setup["images"] / "red" / "0.png", setup["images"] / "blue" / "1.png"]
    result = cli("predict", setup["model"], *images, "--top", "3", "--json")
    assert result.exit_code == 0, result.stderr
    found = json.loads(result.output)
    assert found["classes"] == "classes.json" and found["score"] == "probability"
    assert [r["image"] for r in found["results"]] == [str(p) for p in images]
    names = json.loads((setup["model"].parent / "classes.json").read_text())["class_names"]
    assert names == ["red", "green", "blue"]  # the training data's order, not sorted
    model = keras.saving.load_model(str(setup["model"]))
    pixels = np.stack([np.asarray(Image.open(p).convert("RGB"), dtype="float32") for p in images])
    scores = model.predict(pixels, verbose=0)
    for r, own in zip(found["results"], scores):
        order = np.argsort(-own)
        assert [t["name"] for t in r["top"]] == [names[i] for i in order]
        assert [t["index"] for t in r["top"]] == order.tolist()
        np.testing.assert_allclose([t["probability"] for t in r["top"]], own[order], rtol=1e-5, atol=1e-6)
    text = cli("predict", setup["model"], images[0], "--top", "3")
    lines = text.output.splitlines()
    assert lines[0] == str(images[0]) and len(lines) == 4
    assert lines[1].startswith("  1. ") and lines[1].split()[-1] in {"blue", "green", "red"}


@pytest.fixture
def imagenet_model(tmp_path, keras):
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.GlobalAveragePooling2D()(inputs)
    keras.Model(inputs, keras.layers.Dense(1000, activation="softmax")(x)).save(str(tmp_path / "in1k.keras"))
    write_pngs(tmp_path / "img", 1, classes={"x": (9, 9, 9)}, size=8)
    return tmp_path / "in1k.keras", tmp_path / "img" / "x" / "0.png"


def test_predict_imagenet_top_offline_says_so_and_shows_indices(cli, tmp_path, monkeypatch, imagenet_model):
    from surgery.training import predict

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "empty_keras_home"))
    monkeypatch.setattr(predict, "IMAGENET_INDEX_URL", "http://127.0.0.1:9/imagenet_class_index.json")
    model, image = imagenet_model
    result = cli("predict", model, image, "--top", "3")
    assert result.exit_code == 0, result.stderr
    note = result.stderr.strip()
    assert note.startswith("note: ImageNet class names are not available offline") and "\n" not in note
    assert "imagenet_class_index.json" in note and "showing class indices" in note
    lines = result.stdout.splitlines()
    assert lines[0] == str(image) and len(lines) == 4
    assert all(line.split()[-1].isdigit() for line in lines[1:])


def test_predict_imagenet_top_uses_cached_class_index(cli, tmp_path, monkeypatch, imagenet_model):
    home = tmp_path / "keras_home"
    (home / "models").mkdir(parents=True)
    index = {str(i): [f"n{i:08d}", f"class_{i}"] for i in range(1000)}
    (home / "models" / "imagenet_class_index.json").write_text(json.dumps(index))
    monkeypatch.setenv("KERAS_HOME", str(home))
    model, image = imagenet_model
    result = cli("predict", model, image, "--json", "--top", "1")
    assert result.exit_code == 0, result.stderr
    found = json.loads(result.output)
    top = found["results"][0]["top"][0]
    assert found["classes"] == "ImageNet" and top["name"] == f"class_{top['index']}"


def test_bad_input_to_features_and_predict(cli, tmp_path, keras, setup):
    (tmp_path / "bad.png").write_bytes(b"not an image")
    inputs = keras.Input((16, 16, 3))
    keras.Model(inputs, keras.layers.Conv2D(2, 3)(inputs)).save(str(tmp_path / "conv.keras"))
    np.savez(tmp_path / "nox.npz", y=np.array([0, 1]))
    (tmp_path / "two.json").write_text('["a", "b"]')
    cases = [
        (["predict", setup["model"], tmp_path / "bad.png"], ["cannot be read as images", "bad.png"]),
        (["predict", setup["model"], tmp_path / "missing.png"], ["missing.png: no such image file"]),
        (
            ["predict", tmp_path / "conv.keras", setup["images"] / "red" / "0.png"],
            ["output has shape (None, 14, 14, 2), not (batch, classes)"],
        ),
        (
            ["predict", setup["model"], setup["images"] / "red" / "0.png", "--classes", tmp_path / "two.json"],
            ["--classes: names 2 classes but the model outputs 3"],
        ),
        (
            ["features", setup["model"], "--data", tmp_path / "nox.npz", "-o", tmp_path / "f.npz"],
            ["needs arrays x", "missing x"],
        ),
        (
            ["features", setup["model"], "--data", setup["images"], "-o", tmp_path / "f.csv"],
            ["must be an .npz file path"],
        ),
        (
            ["features", setup["model"], "--layer", "pol", "--data", setup["images"], "-o", tmp_path / "f.npz"],
            ['--layer: no layer named "pol"; did you mean "pool"?'],
        ),
        (
            ["features", tmp_path / "nope.keras", "--data", setup["images"], "-o", tmp_path / "f.npz"],
            ["nope.keras: no such model file"],
        ),
    ]
    for args, fragments in cases:
        result = cli(*args)
        assert result.exit_code == 2, (args, result.output)
        assert_one_error_line(result.stderr, *fragments)
    assert not (tmp_path / "f.npz").exists()
