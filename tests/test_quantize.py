"""Quantized exports (surgery export --quantize) on a CNN trained here on scikit-learn's digits: int8 ONNX and
LiteRT within a point of the float model with integer weights really in the file, and the accuracy check
that refuses what loses more, with nothing written."""

from __future__ import annotations

import sys

import numpy as np
import pytest

import surgery

from helpers import ROOT, assert_one_error_line

sys.path.insert(0, str(ROOT / "examples" / "digits"))
from source_model import ten_digit_classifier  # noqa: E402

pytestmark = pytest.mark.slow  # trains a model and converts it several times


@pytest.fixture(scope="module")
def trained(tmp_path_factory, keras):
    """A 10-digit CNN (8x8 inputs, 0-16 pixels, its Rescaling inside) and held-out digits it was not fit on."""
    folder = tmp_path_factory.mktemp("quantize")
    model, _, (x, y) = ten_digit_classifier(keras)
    model.save(folder / "digits.keras")
    names = np.array([str(i) for i in range(10)])
    np.savez(folder / "held.npz", x=x, y=y, class_names=names)
    accuracy = float(np.mean(model.predict(x, verbose=0).argmax(1) == y))
    assert accuracy > 0.9  # a model worth quantizing: a point of it is a real change
    return {"folder": folder, "model": folder / "digits.keras", "data": folder / "held.npz", "x": x, "y": y}


def _export(cli, trained, fmt, out, *args):
    return cli("export", trained["model"], "--to", fmt, "-o", out, "--calibration", trained["data"], *args)


def _litert_scores(path, x):
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=str(path)).get_signature_runner("serving_default")
    return runner(image=x.astype("float32"))["digits"]


def _onnx_scores(path, x):
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["digits"], {"image": x.astype("float32")})[0]


@pytest.mark.parametrize("fmt, scores", [("onnx", _onnx_scores), ("litert", _litert_scores)])
def test_int8_stays_within_a_point_of_the_float_model(cli, trained, keras, tmp_path, fmt, scores):
    suffix = {"onnx": ".onnx", "litert": ".tflite"}[fmt]
    out = tmp_path / f"digits{suffix}"
    result = _export(cli, trained, fmt, out, "--quantize", "int8")
    assert result.exit_code == 0, result.output
    assert "int8: " in result.output and "% quantized; top-1 agreement with the float model" in result.output
    x, y = trained["x"], trained["y"]
    float_accuracy = np.mean(keras.saving.load_model(trained["model"]).predict(x, verbose=0).argmax(1) == y)
    int8_accuracy = np.mean(scores(out, x).argmax(1) == y)
    assert abs(float_accuracy - int8_accuracy) <= 0.01, (float_accuracy, int8_accuracy)


def test_the_int8_files_hold_integer_weights(cli, trained, tmp_path):
    import onnx
    from ai_edge_litert.interpreter import Interpreter

    assert _export(cli, trained, "onnx", tmp_path / "d.onnx", "--quantize", "int8").exit_code == 0
    proto = onnx.load(str(tmp_path / "d.onnx"))
    ops = {node.op_type for node in proto.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops
    int8 = [t.name for t in proto.graph.initializer if t.data_type == onnx.TensorProto.INT8]
    assert any("conv2" in name for name in int8) and any("features" in name for name in int8), int8
    assert _export(cli, trained, "litert", tmp_path / "d.tflite", "--quantize", "int8", "--int8-io").exit_code == 0
    interpreter = Interpreter(model_path=str(tmp_path / "d.tflite"))
    runner = interpreter.get_signature_runner("serving_default")
    assert runner.get_input_details()["image"]["dtype"] == np.int8
    assert runner.get_output_details()["digits"]["dtype"] == np.int8
    kernels = [t for t in interpreter.get_tensor_details() if "conv2" in t["name"] and len(t["shape"]) == 4]
    assert kernels and all(t["dtype"] == np.int8 for t in kernels), kernels


def test_dynamic_and_float16_are_smaller_and_checked(cli, trained, tmp_path):
    for fmt, kind, name in (("onnx", "dynamic", "d.onnx"), ("litert", "float16", "d.tflite")):
        result = _export(cli, trained, fmt, tmp_path / name, "--quantize", kind)
        assert result.exit_code == 0, result.output
        sizes = result.output.split(f"({kind}: ", 1)[1].split(";", 1)[0]  # "0.10 MB -> 0.05 MB"
        before, after = (float(part.split()[0]) for part in sizes.split("->"))
        assert after < before
        assert "top-1 agreement with the float model" in result.output


def test_a_calibration_that_ruins_accuracy_is_refused_and_nothing_is_written(cli, trained, tmp_path):
    # Calibrated on faint images (a hundredth of the ink), int8 ranges clip the real ones.
    faint = tmp_path / "faint.npz"
    np.savez(faint, x=trained["x"] / 100, y=trained["y"], class_names=np.array([str(i) for i in range(10)]))
    for fmt, name in (("onnx", "d.onnx"), ("litert", "d.tflite")):
        result = cli(
            "export", trained["model"], "--to", fmt, "-o", tmp_path / name, "--quantize", "int8",
            "--calibration", faint, "--eval", trained["data"],
        )  # fmt: skip
        assert result.exit_code == 2, result.output
        assert_one_error_line(
            result.stderr, "is too far from the float model", "points of accuracy", "nothing was written"
        )
        assert not (tmp_path / name).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["faint.npz"]


def test_the_python_api_quantizes_with_the_same_check(trained, tmp_path):
    path, report = surgery.export(
        trained["model"],
        "litert",
        output=str(tmp_path),
        options={"quantize": "dynamic", "calibration": trained["data"]},
    )
    assert path == tmp_path / "digits.tflite" and path.exists()
    assert report.startswith("dynamic: ") and "top-1 agreement" in report


BAD = {
    "no calibration": (["--quantize", "int8"], "needs data to check the result against the float model"),
    "missing data": (["--quantize", "int8", "--calibration", "nowhere.npz"], "nowhere.npz"),
    "option without quantize": (["--max-drop", "2"], "max_drop applies to a quantized export"),
    "int8 io without int8": (["--quantize", "dynamic", "--int8-io", "--calibration", "DATA"], "int8_io applies to"),
    "a kind onnx lacks": (["--quantize", "float16", "--calibration", "DATA"], "quantize must be one of int8, dynamic"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_quantization_options_are_one_line(cli, trained, tmp_path, case):
    args, fragment = BAD[case]
    fmt = "litert" if "int8 io" in case else "onnx"
    args = [str(trained["data"]) if a == "DATA" else a for a in args]
    result = cli("export", trained["model"], "--to", fmt, "-o", tmp_path / "out", *args)
    assert result.exit_code == 2, result.output
    assert_one_error_line(result.stderr, fragment)
    assert not (tmp_path / "out").exists()


def test_bad_calibration_data_is_one_line(cli, trained, tmp_path):
    names = np.array([str(i) for i in range(10)])
    cases = {
        "few.npz": (dict(x=trained["x"][:12], y=trained["y"][:12]), "12 images are too few"),
        "shape.npz": (dict(x=np.zeros((40, 16, 16, 3)), y=np.arange(40) % 10), "x holds images of shape (16, 16, 3)"),
    }
    for name, (arrays, fragment) in cases.items():
        np.savez(tmp_path / name, class_names=names, **arrays)
        result = cli(
            "export", trained["model"], "--to", "onnx", "-o", tmp_path / "out.onnx", "--quantize", "int8",
            "--calibration", tmp_path / name,
        )  # fmt: skip
        assert result.exit_code == 2, result.output
        assert_one_error_line(result.stderr, fragment)
        assert not (tmp_path / "out.onnx").exists()


def test_a_format_without_quantization_refuses_it(cli, trained, tmp_path):
    result = _export(cli, trained, "saved_model", tmp_path / "d.savedmodel", "--quantize", "int8")
    assert result.exit_code == 2, result.output
    assert_one_error_line(result.stderr, 'the saved_model exporter takes no option "calibration"')


def test_bench_puts_every_form_side_by_side(cli, trained, keras, tmp_path):
    """The model's input is not called `image`, the name every exported file gives a single input: each form
    is fed through its own file's name."""
    import json

    model = keras.saving.load_model(trained["model"])
    renamed = keras.models.clone_model(model, input_tensors=keras.Input((8, 8, 1), name="pixels"))
    renamed.set_weights(model.get_weights())
    assert renamed.inputs[0].name == "pixels"
    renamed.save(tmp_path / "pixels.keras")
    result = cli("bench", tmp_path / "pixels.keras", "--data", trained["data"], "--repeats", "2", "--json")
    assert result.exit_code == 0, result.output
    found = json.loads(result.output)
    rows = {r["form"]: r for r in found["forms"]}
    assert list(rows) == ["keras", "onnx float32", "onnx int8", "litert float32", "litert int8"]
    assert found["images"] == "397 held-out images of held.npz"
    # The float forms compute what Keras does; the int8 ones stay within the check's point and are smaller.
    assert rows["onnx float32"]["accuracy"] == rows["keras"]["accuracy"] == rows["litert float32"]["accuracy"]
    for fmt in ("onnx", "litert"):
        assert abs(rows[f"{fmt} int8"]["accuracy"] - rows[f"{fmt} float32"]["accuracy"]) <= 0.01
        assert rows[f"{fmt} int8"]["bytes"] < rows[f"{fmt} float32"]["bytes"] / 2
    assert rows["onnx float32"]["speedup"] == 1.0
    assert all(r["batch_1_s"] > 0 and r["batch_8_s"] > 0 for r in rows.values())


def test_bench_on_missing_data_is_one_line(cli, trained, tmp_path):
    result = cli("bench", trained["model"], "--data", tmp_path / "none.npz")
    assert result.exit_code == 2, result.output
    assert_one_error_line(result.stderr, "none.npz")


def test_a_pruned_model_quantizes_and_keeps_its_pruned_shapes(cli, trained, tmp_path):
    import onnx

    from helpers import write_spec

    spec = {
        "surgery": 1,
        "name": "pruned",
        "seed": 0,
        "steps": [
            {"op": "backbone", "name": "keras_file", "path": str(trained["model"])},
            {"op": "prune", "ratio": 0.25, "names": ["conv1", "conv2"]},
        ],
    }
    built = cli("apply", write_spec(tmp_path, spec), "-o", tmp_path / "pruned.keras")
    assert built.exit_code == 0, built.output
    result = _export(
        cli, trained | {"model": tmp_path / "pruned.keras"}, "onnx", tmp_path / "p.onnx", "--quantize", "int8"
    )
    assert result.exit_code == 0, result.output
    assert "int8: " in result.output
    proto = onnx.load(str(tmp_path / "p.onnx"))
    kernels = {t.name: list(t.dims) for t in proto.graph.initializer if t.data_type == onnx.TensorProto.INT8}
    conv2 = [dims for name, dims in kernels.items() if "conv2" in name and len(dims) == 4]
    assert conv2 == [[24, 12, 3, 3]], kernels  # 32 filters less a quarter, on conv1's 16 less a quarter


def test_a_feature_extractor_is_judged_by_cosine_similarity(cli, trained, keras, tmp_path):
    model = keras.saving.load_model(trained["model"])
    features = keras.Model(model.inputs, model.get_layer("features").output)  # 64 ReLU units, no classes
    features.save(tmp_path / "features.keras")
    result = _export(
        cli, trained | {"model": tmp_path / "features.keras"}, "litert", tmp_path / "f.tflite", "--quantize", "int8"
    )
    assert result.exit_code == 0, result.output
    import re

    cosine = float(re.search(r"cosine similarity to the float model ([0-9.]+) on 397 images", result.output)[1])
    assert 0.99 <= cosine <= 1
    assert "agreement" not in result.output.split("float32 file:")[0]


def _quantizing_spec(folder, trained, onnx: dict):
    import shutil

    from helpers import write_spec

    shutil.copy(trained["data"], folder / "held.npz")
    steps = [{"op": "backbone", "name": "keras_file", "path": str(trained["model"])}]
    return write_spec(folder, {"surgery": 1, "steps": steps, "outputs": {"keras": "d.keras", "onnx": onnx}})


def test_a_spec_output_is_quantized_and_checked_as_export_does(cli, trained, tmp_path):
    import onnx

    spec = _quantizing_spec(tmp_path, trained, {"path": "d.onnx", "quantize": "int8", "calibration": "held.npz"})
    result = cli("apply", spec)
    assert result.exit_code == 0, result.output
    assert "int8: " in result.output and "top-1 agreement with the float model" in result.output
    ops = {node.op_type for node in onnx.load(str(tmp_path / "d.onnx")).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    accuracy = np.mean(_onnx_scores(tmp_path / "d.onnx", trained["x"]).argmax(1) == trained["y"])
    assert accuracy > 0.9
    assert (tmp_path / "d.keras").exists()


@pytest.mark.filterwarnings("ignore:.*does not have a `quantize` method:UserWarning")  # Keras, per layer kind
def test_a_spec_keras_output_is_int8_and_the_other_outputs_stay_float(cli, trained, keras, tmp_path):
    """The int8 .keras is made from a copy: the ONNX output written after it, from the same model in
    memory, is still the float model (a quantized-in-place model would differ from it by far more)."""
    import onnxruntime as ort

    from helpers import write_spec

    steps = [{"op": "backbone", "name": "keras_file", "path": str(trained["model"])}]
    outputs = {"keras": {"path": "d.int8.keras", "quantize": "int8", "calibration": str(trained["data"])},
               "onnx": "d.onnx"}  # fmt: skip
    result = cli("apply", write_spec(tmp_path, {"surgery": 1, "steps": steps, "outputs": outputs}))
    assert result.exit_code == 0, result.output
    assert "int8: 2 layers" in result.output
    x = trained["x"][:50]
    float_model = keras.saving.load_model(trained["model"])
    onnx_out = ort.InferenceSession(str(tmp_path / "d.onnx")).run(None, {"image": x})[0]
    np.testing.assert_allclose(onnx_out, float_model.predict(x, verbose=0), atol=1e-5, rtol=0)
    int8 = keras.saving.load_model(tmp_path / "d.int8.keras")
    assert str(int8.get_layer("features")._kernel.dtype) == "int8"
    float_model.quantize("int8")
    np.testing.assert_allclose(int8.predict(x, verbose=0), float_model.predict(x, verbose=0), atol=1e-6, rtol=0)


def test_a_spec_output_whose_quantization_fails_writes_none_of_the_outputs(cli, trained, tmp_path):
    faint = tmp_path / "faint.npz"
    np.savez(faint, x=trained["x"] / 100, y=trained["y"], class_names=np.array([str(i) for i in range(10)]))
    onnx = {"path": "d.onnx", "quantize": "int8", "calibration": "faint.npz", "eval": "held.npz"}
    spec = _quantizing_spec(tmp_path, trained, onnx)
    result = cli("apply", spec)
    assert result.exit_code == 2, result.output
    assert_one_error_line(
        result.stderr, "d.onnx: output onnx", "is too far from the float model", "nothing was written"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["faint.npz", "held.npz", "spec.json"]


def test_a_spec_outputs_missing_calibration_data_is_refused_before_the_build(cli, trained, tmp_path, monkeypatch):
    import surgery.executor

    def no_build(*args, **kwargs):
        raise AssertionError("the model was built before the data was checked")

    monkeypatch.setattr(surgery.executor, "run_steps", no_build)
    spec = _quantizing_spec(tmp_path, trained, {"path": "d.onnx", "quantize": "int8", "calibration": "none.npz"})
    result = cli("apply", spec)
    assert result.exit_code == 2, result.output
    assert_one_error_line(result.stderr, "none.npz", "outputs.onnx.calibration", "no such file or folder")


@pytest.mark.filterwarnings("ignore:.*does not have a `quantize` method:UserWarning")  # Keras, per layer kind
def test_keras_int8_is_kerass_own_quantization_checked_and_loads_in_plain_keras(cli, trained, keras, tmp_path):
    out = tmp_path / "digits_int8.keras"
    result = _export(cli, trained, "keras", out, "--quantize", "int8")
    assert result.exit_code == 0, result.output
    original = keras.saving.load_model(trained["model"])
    dense = original.get_layer("features").count_params() + original.get_layer("digits").count_params()
    share = round(100 * dense / original.count_params())
    assert 50 < share < 100  # the convolutions hold the rest, which Keras does not quantize
    assert f"int8: 2 layers, {share}% of the weights;" in result.output
    assert "top-1 agreement with the float model" in result.output

    loaded = keras.saving.load_model(out, safe_mode=True)  # plain Keras: no custom objects, no surgery loader
    kernels = {layer.name: str(layer._kernel.dtype) for layer in loaded.layers if hasattr(layer, "_kernel")}
    assert kernels == {"conv1": "float32", "conv2": "float32", "features": "int8", "digits": "int8"}
    # What Keras' own quantize makes of the float model, computed here independently of the exporter.
    original.quantize("int8")
    x, y = trained["x"], trained["y"]
    np.testing.assert_allclose(loaded.predict(x, verbose=0), original.predict(x, verbose=0), atol=1e-6)
    float_accuracy = np.mean(keras.saving.load_model(trained["model"]).predict(x, verbose=0).argmax(1) == y)
    int8_accuracy = np.mean(loaded.predict(x, verbose=0).argmax(1) == y)
    assert abs(float_accuracy - int8_accuracy) <= 0.01, (float_accuracy, int8_accuracy)


def test_keras_int8_that_ruins_accuracy_is_refused_and_nothing_is_written(cli, trained, keras, tmp_path):
    # A features unit that is always 0 (no input weights, no bias) with an outgoing weight of 1e4 to every
    # class: the float model does not change, but each class's int8 scale becomes 1e4 / 127 and every other
    # weight of the head rounds to zero.
    model = keras.saving.load_model(trained["model"])
    features, digits = model.get_layer("features"), model.get_layer("digits")
    kernel, bias = features.get_weights()
    kernel[:, 0], bias[0] = 0.0, 0.0
    features.set_weights([kernel, bias])
    head, head_bias = digits.get_weights()
    head[0, :] = 1e4
    digits.set_weights([head, head_bias])
    model.save(tmp_path / "outlier.keras")
    float_accuracy = np.mean(model.predict(trained["x"], verbose=0).argmax(1) == trained["y"])
    assert float_accuracy > 0.85  # still a good float model: one unit of 64 lost
    out = tmp_path / "int8.keras"
    result = _export(cli, trained | {"model": tmp_path / "outlier.keras"}, "keras", out, "--quantize", "int8")
    assert result.exit_code == 2, result.output
    assert_one_error_line(
        result.stderr,
        "the int8 Keras model is too far from the float model",
        "points of accuracy",
        "nothing was written",
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["outlier.keras"]


def test_keras_export_refuses_what_keras_cannot_quantize_and_options_it_does_not_take(cli, trained, keras, tmp_path):
    inputs = keras.Input((8, 8, 1), name="image")
    x = keras.layers.Conv2D(10, 3, name="conv")(inputs)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    keras.Model(inputs, keras.layers.Softmax(name="digits")(x)).save(tmp_path / "convs.keras")
    convs = trained | {"model": tmp_path / "convs.keras"}
    cases = [
        (convs, ["--quantize", "int8"], "found no Dense, EinsumDense or Embedding layer to quantize"),
        (trained, ["--quantize", "dynamic"], "quantize must be one of int8 for this format, not 'dynamic'"),
    ]
    for model, args, fragment in cases:
        result = _export(cli, model, "keras", tmp_path / "out.keras", *args)
        assert result.exit_code == 2, result.output
        assert_one_error_line(result.stderr, fragment)
    result = cli("export", trained["model"], "--to", "keras", "-o", tmp_path / "out.keras", "--opset", "13")
    assert result.exit_code == 2, result.output
    assert_one_error_line(result.stderr, 'the keras exporter takes no option "opset"; it takes: quantize, calibration')
    assert not (tmp_path / "out.keras").exists()
