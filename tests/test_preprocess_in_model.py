"""A model `surgery train` writes holds its backbone's preprocessing (the default), so it takes raw 0-255
pixels: plain Keras, onnxruntime on its ONNX export and `surgery predict` give the same scores on the same raw
images. With --no-preprocess-in-model the file has no preprocessing layer and classes.json names it, and
predict and evaluate apply it as Keras users would (the backbone's preprocess_input)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from helpers import write_pngs, write_spec

SIDE = 32
# Backbones whose preprocessing is a per-pixel affine map: "caffe" (RGB->BGR and means: a frozen 1x1 Conv2D)
# and "tf" (x / 127.5 - 1: Rescaling); each cut a few layers in, with random weights.
BACKBONES = {
    "vgg16": ("block1_pool", "vgg16"),
    "mobilenetv2": ("block_1_expand_relu", "mobilenet_v2"),
}


def _spec(backbone: str, extra_steps=()) -> dict:
    cut, _ = BACKBONES[backbone]
    return {
        "surgery": 1,
        "name": backbone,
        "seed": 0,
        "steps": [
            {"op": "backbone", "name": backbone, "weights": None, "include_top": False, "input_shape": [SIDE, SIDE, 3]},
            *extra_steps,
            {"op": "slice", "to": cut},
            {"op": "freeze", "layers": ":"},
            {"op": "append", "layer": "GlobalAveragePooling2D", "name": "pool"},
            # No activation: predict shows logits, which unlike saturated probabilities show any difference.
            {"op": "append", "layer": "Dense", "config": {"units": 3}, "name": "head"},
        ],
        "train": {"batch_size": 4, "validation_split": 0.0, "stages": [{"epochs": 1, "learning_rate": 0.01}]},
    }


def _invoke(*args):
    from click.testing import CliRunner

    from surgery.cli import main

    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def _raw(images):
    """The PNGs as float32 0-255 pixels, in the order predict lists a folder (class folders, then names)."""
    from PIL import Image

    files = sorted(images.glob("*/*.png"))
    return files, np.array([np.asarray(Image.open(p), dtype="float32") for p in files])


def _preprocess_input(keras, backbone, x):
    return np.asarray(getattr(keras.applications, BACKBONES[backbone][1]).preprocess_input(x.copy()))


def _assert_close(got, want, tol=1e-4):
    got, want = np.asarray(got, dtype="float64"), np.asarray(want, dtype="float64")
    assert got.shape == want.shape
    scale = float(np.abs(want).max())
    assert scale > 0
    assert float(np.abs(got - want).max()) <= tol * max(1.0, scale), (got, want)


@pytest.fixture(scope="module", params=sorted(BACKBONES))
def trained(request, tmp_path_factory):
    """One backbone trained twice by `surgery train` on the same PNGs: preprocessing in the model (default)
    and outside it."""
    backbone = request.param
    root = tmp_path_factory.mktemp(f"pim_{backbone}")
    images = write_pngs(root / "images", 2, size=SIDE)
    spec = write_spec(root, _spec(backbone))
    runs, outputs = {}, {}
    for key, extra in (("in", []), ("out", ["--no-preprocess-in-model"])):
        result = _invoke("train", spec, "--data", images, "-o", root / key, *extra)
        assert result.exit_code == 0, result.output
        runs[key], outputs[key] = root / key, result.output
    assert "the trained model takes raw 0-255 pixels" in outputs["in"]
    assert "raw 0-255" not in outputs["out"]
    return {"backbone": backbone, "root": root, "images": images, "runs": runs}


def _final(keras, trained, key):
    run = trained["runs"][key]
    return keras.saving.load_model(str(run / f"{trained['backbone']}.keras")), run


def _after(keras, model, first):
    """Plain Keras: the model's layers from ``first`` on, applied one after another (the cut graphs are chains)."""
    names = [layer.name for layer in model.layers]
    inputs = keras.Input(model.input.shape[1:])
    x = inputs
    for layer in model.layers[names.index(first) :]:
        x = layer(x)
    return keras.Model(inputs, x)


def test_the_model_holds_the_backbones_preprocessing(keras, trained):
    """By default the final .keras starts with a "preprocess" layer that computes the backbone's
    preprocess_input on raw pixels, then the backbone: model(raw) == rest(preprocess_input(raw)); and
    classes.json names no preprocessing, so nothing applies it a second time."""
    model, run = _final(keras, trained, "in")
    assert json.loads((run / "classes.json").read_text())["preprocess"] is None
    names = [layer.name for layer in model.layers]
    assert names[1] == "preprocess" and sum(n.startswith("preprocess") for n in names) == 1
    layer = model.get_layer("preprocess")
    assert not layer.trainable_weights  # frozen (a Conv2D) or weightless (Rescaling)
    _, raw = _raw(trained["images"])
    expected = _preprocess_input(keras, trained["backbone"], raw)
    _assert_close(layer(raw), expected, tol=1e-5)
    rest = _after(keras, model, names[2])
    _assert_close(model(raw), rest(expected))
    # The preprocessing matters: the same network on raw pixels computes something else.
    assert not np.allclose(model(raw), rest(raw), rtol=1e-3)


def test_keras_onnx_and_predict_agree_on_raw_pixels(cli, tmp_path, keras, trained):
    """On the same raw PNG pixels: plain Keras on final.keras, onnxruntime on `surgery export --to onnx`,
    and `surgery predict` (--json logits, and the text report) give the same scores."""
    import onnxruntime as ort

    model, run = _final(keras, trained, "in")
    files, raw = _raw(trained["images"])
    want = np.asarray(model(raw))

    onnx = tmp_path / "model.onnx"
    exported = cli("export", run / f"{trained['backbone']}.keras", "--to", "onnx", "-o", onnx)
    assert exported.exit_code == 0, exported.output
    session = ort.InferenceSession(str(onnx), providers=["CPUExecutionProvider"])
    got_onnx = session.run(None, {session.get_inputs()[0].name: raw})[0]
    _assert_close(got_onnx, want)

    predicted = cli("predict", run, trained["images"], "--top", 3, "--json")
    assert predicted.exit_code == 0, predicted.output
    found = json.loads(predicted.stdout)
    assert found["classes"] == "classes.json" and found["score"] == "logit"
    assert [r["image"] for r in found["results"]] == [str(f) for f in files]
    scores = np.zeros_like(want)
    for i, r in enumerate(found["results"]):
        for entry in r["top"]:
            scores[i, entry["index"]] = entry["logit"]
    _assert_close(scores, want)

    text = cli("predict", run, *files[:2], "--top", 1)
    assert text.exit_code == 0, text.output
    lines = text.stdout.splitlines()
    names = json.loads((run / "classes.json").read_text())["class_names"]
    for k, i in enumerate((0, 1)):
        assert lines[2 * k] == str(files[i])
        rank, score, name = lines[2 * k + 1].split()
        best = int(np.argmax(want[i]))
        assert rank == "1." and name == names[best]
        assert float(score) == pytest.approx(float(want[i, best]), abs=1e-4 * max(1.0, float(np.abs(want).max())))


def test_without_preprocess_in_model_predict_applies_it(cli, keras, trained):
    """--no-preprocess-in-model: no preprocessing layer in the file, classes.json names the backbone, and
    predict's scores are plain Keras' on preprocess_input(raw), not on raw pixels."""
    model, run = _final(keras, trained, "out")
    assert json.loads((run / "classes.json").read_text())["preprocess"] == trained["backbone"]
    names = [layer.name for layer in model.layers]
    assert not any(n.startswith("preprocess") for n in names)
    assert type(model.layers[1]).__name__ == "Conv2D"  # the backbone's first convolution straight after the input

    files, raw = _raw(trained["images"])
    want = np.asarray(model(_preprocess_input(keras, trained["backbone"], raw)))
    result = cli("predict", run, trained["images"], "--top", 3, "--json")
    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout)
    assert [r["image"] for r in found["results"]] == [str(f) for f in files]
    assert [r["top"][0]["index"] for r in found["results"]] == want.argmax(axis=1).tolist()
    scores = np.zeros_like(want)
    for i, r in enumerate(found["results"]):
        for entry in r["top"]:
            scores[i, entry["index"]] = entry["logit"]
    _assert_close(scores, want)
    assert not np.allclose(scores, np.asarray(model(raw)), rtol=1e-3)


@pytest.mark.slow
def test_evaluate_feeds_each_run_what_it_expects(keras, trained):
    """surgery.evaluate on both run folders gives Keras' own evaluate: raw pixels for the model holding its
    preprocessing, preprocess_input(raw) for the one trained without it."""
    import surgery

    _, raw = _raw(trained["images"])
    y = np.repeat([0, 1, 2], 2)  # blue, green, red: 2 each, in file order
    for key, x in (("in", raw), ("out", _preprocess_input(keras, trained["backbone"], raw))):
        model, run = _final(keras, trained, key)
        want = model.evaluate(x, y, batch_size=4, verbose=0, return_dict=True)
        got = surgery.evaluate(run, str(trained["images"]), batch_size=4)
        assert got.metrics["loss"] == pytest.approx(want["loss"], rel=1e-5, abs=1e-5), key
        assert got.metrics["accuracy"] == pytest.approx(want["accuracy"], abs=1e-6), key


@pytest.mark.slow
def test_a_spec_with_its_own_preprocess_step_is_not_preprocessed_twice(cli, tmp_path, keras):
    """A spec that already has {"op": "preprocess"}: the trained model holds one preprocessing layer, and
    model(raw) == rest(preprocess_input(raw)), not the preprocessing applied twice."""
    images = write_pngs(tmp_path / "images", 1, size=SIDE)
    spec = write_spec(tmp_path, _spec("vgg16", [{"op": "preprocess"}]))
    result = cli("train", spec, "--data", images, "-o", tmp_path / "run")
    assert result.exit_code == 0, result.output
    model = keras.saving.load_model(str(tmp_path / "run" / "vgg16.keras"))
    names = [layer.name for layer in model.layers]
    assert sum(n.startswith("preprocess") for n in names) == 1 and names[1] == "preprocess"
    assert json.loads((tmp_path / "run" / "classes.json").read_text())["preprocess"] is None
    _, raw = _raw(images)
    expected = _preprocess_input(keras, "vgg16", raw)
    _assert_close(model(raw), _after(keras, model, names[2])(expected))
