"""Exported models compute what Keras computes: ONNX (and SavedModel) parity, names, dynamic batch, failure modes.

Weights are random (no downloads) and inputs small, so the whole file runs in
about three minutes on two cores. Every ONNX file is checked here
independently of the exporter's own check: onnxruntime at batch 1 and 3.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import surgery
from surgery.exporting import export_check

from helpers import SPECS, assert_one_error_line, load_spec_json, outputs_without_surgery

pytestmark = pytest.mark.slow  # builds many backbones or starts processes; the full suite runs it

# float32 parity; NASNetMobile's random-weight features reach ~30, where float32
# itself rounds at ~4e-6, so the bound scales with the outputs above 1.
PARITY = 1e-5


def _backbone_spec(name: str, side: int) -> dict:
    return {
        "surgery": 1,
        "name": name,
        "seed": 0,
        "steps": [
            {"op": "backbone", "name": name, "weights": None, "include_top": False, "input_shape": [side, side, 3]}
        ],
    }


def _export(model, folder, options=None, fmt="onnx"):
    """Through the registered exporter and the host's atomic writing, as `surgery apply` does."""
    from surgery.io.writing import atomic_output
    from surgery.plugins.loading import load_plugins

    exporter = load_plugins().registry.exporters[fmt]
    path = folder / f"{model.name}{exporter.suffix}"
    with atomic_output(path) as tmp:
        report = exporter.export(model, tmp, options or {})
    return path, report


def assert_onnx_matches(path, reference, output_name, side_shape, input_name="image"):
    """Names, the symbolic batch dimension, and parity with ``reference`` at batch 1 and 3."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (inp,), (out,) = session.get_inputs(), session.get_outputs()
    assert (inp.name, out.name) == (input_name, output_name)
    assert inp.shape[0] == "batch" and out.shape[0] == "batch"
    assert inp.type == out.type == "tensor(float)"
    rng = np.random.default_rng(1)
    worst = 0.0
    for batch in (1, 3):
        x = rng.standard_normal((batch, *side_shape)).astype("float32")
        want = np.asarray(reference(x, training=False))
        got = session.run([output_name], {input_name: x})[0]
        assert got.shape == want.shape and got.shape[0] == batch
        scale = float(np.abs(want).max())
        assert scale > 0  # an all-zero output would make any parity check pass
        diff = float(np.abs(got - want).max())
        assert diff <= PARITY * max(1.0, scale), (diff, scale)
        assert diff <= 1e-3 * scale, (diff, scale)  # also meaningful where outputs are tiny
        worst = max(worst, diff)
    return worst


@pytest.mark.parametrize(
    "name,side",
    [
        ("mobilenetv2", 32),
        ("efficientnetb0", 32),
        ("inceptionv3", 75),
        ("densenet121", 32),
        ("convnexttiny", 32),
        ("xception", 71),
        ("mobilenetv3small", 32),
        ("nasnetmobile", 32),
    ],
)
def test_backbone_parity(name, side, tmp_path):
    model = surgery.build(_backbone_spec(name, side))
    path, report = _export(model, tmp_path)
    assert "max abs diff vs Keras" in report and "image[batch," in report
    assert_onnx_matches(path, model, model.output_names[0], (side, side, 3))


def test_resnet50_cut_parity(tmp_path):
    spec = load_spec_json("resnet50_cut.json")
    spec["steps"][0].update(weights=None, input_shape=[32, 32, 3])
    model = surgery.build(spec)
    path, _ = _export(model, tmp_path)
    assert_onnx_matches(path, model, "dense", (32, 32, 3))


@pytest.fixture(scope="module")
def seed_outputs(tmp_path_factory):
    """`surgery apply` of the VGG16 seed spec, writing .keras and ONNX, as a user runs it."""
    from click.testing import CliRunner

    from surgery.cli import main

    folder = tmp_path_factory.mktemp("seed")
    result = CliRunner().invoke(
        main,
        [
            "apply",
            str(SPECS / "vgg16_cut_extend.json"),
            "--weights",
            "none",
            "-o",
            str(folder),
            "--onnx",
            str(folder / "seed.onnx"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "max abs diff vs Keras" in result.stdout
    return folder


def test_apply_writes_checked_onnx_of_the_seed_spec(seed_outputs, keras):
    model = keras.saving.load_model(str(seed_outputs / "vgg16_cut_extend.keras"))
    assert_onnx_matches(seed_outputs / "seed.onnx", model, "dense", (224, 224, 3))


def test_keras_output_loads_where_surgery_is_not_importable(seed_outputs, tmp_path):
    import onnxruntime as ort

    x = np.random.default_rng(2).standard_normal((2, 224, 224, 3)).astype("float32")
    (y,) = outputs_without_surgery([seed_outputs / "vgg16_cut_extend.keras"], x, tmp_path)
    onnx_y = ort.InferenceSession(str(seed_outputs / "seed.onnx")).run(None, {"image": x})[0]
    assert y.shape == (2, 2) and np.abs(y - onnx_y).max() <= PARITY


def test_export_command_names_and_saved_model(seed_outputs, tmp_path, cli, keras):
    import tensorflow as tf

    model_path = seed_outputs / "vgg16_cut_extend.keras"
    result = cli(
        "export",
        model_path,
        "--to",
        "onnx",
        "-o",
        tmp_path / "named.onnx",
        "--opset",
        "13",
        "--input-name",
        "pixels",
        "--output-name",
        "probs",
    )
    assert result.exit_code == 0, result.output
    assert "opset 13; pixels[batch,224,224,3] -> probs[batch,2]" in result.stdout
    model = keras.saving.load_model(str(model_path))
    assert_onnx_matches(tmp_path / "named.onnx", model, "probs", (224, 224, 3), input_name="pixels")

    result = cli("export", model_path, "--to", "saved_model", "-o", tmp_path)
    assert result.exit_code == 0, result.output
    serve = tf.saved_model.load(str(tmp_path / "vgg16_cut_extend.savedmodel")).signatures["serving_default"]
    x = np.random.default_rng(3).standard_normal((3, 224, 224, 3)).astype("float32")
    got = serve(image=tf.constant(x))
    assert list(got) == ["dense"]
    assert np.abs(got["dense"].numpy() - np.asarray(model(x))).max() <= PARITY


@pytest.mark.parametrize("fmt", ["onnx", "saved_model"])
def test_failed_verification_leaves_nothing(seed_outputs, tmp_path, cli, monkeypatch, fmt):
    monkeypatch.setattr(export_check, "max_abs_diff", lambda expected, actual: 0.5)
    target = tmp_path / ("out.onnx" if fmt == "onnx" else "out.savedmodel")
    result = cli("export", seed_outputs / "vgg16_cut_extend.keras", "--to", fmt, "-o", target)
    assert result.exit_code == 1
    assert_one_error_line(result.stderr, str(target), "verification failed", "0.5", "atol 0.0001")
    assert list(tmp_path.iterdir()) == []  # neither the file nor its temporary sibling


def test_export_command_bad_input(seed_outputs, tmp_path, cli):
    model_path = seed_outputs / "vgg16_cut_extend.keras"
    cases = [
        (["export", model_path], "--to is required"),
        (["export", model_path, "--to", "onx"], 'did you mean "onnx"'),
        (["export", tmp_path / "missing.keras", "--to", "onnx"], "missing.keras: no such file"),
        (["export", model_path, "--to", "onnx", "-o", seed_outputs / "seed.onnx"], "already exists"),
        (["export", model_path, "--to", "keras", "-o", model_path, "--force"], "is the model being exported"),
        (["export", model_path, "--to", "onnx", "-o", tmp_path, "--opset", "30"], "opset 30 is not supported"),
        (["export", model_path, "--to", "saved_model", "-o", tmp_path, "--opset", "13"], 'no option "opset"'),
        (["export", model_path, "--to", "onnx", "-o", tmp_path, "--output-name", "image"], "names both"),
    ]
    for args, fragment in cases:
        result = cli(*args)
        assert result.exit_code == 2, (args, result.output)
        assert_one_error_line(result.stderr, fragment)
    assert list(tmp_path.iterdir()) == []


def test_mixed_precision_model_exports_a_float32_twin(tmp_path, keras):
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        inputs = keras.Input((16, 16, 3))
        x = keras.layers.Conv2D(8, 3, activation="relu")(inputs)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.GlobalAveragePooling2D()(x)
        outputs = keras.layers.Dense(3, activation="softmax", dtype="float32", name="probs")(x)
        model = keras.Model(inputs, outputs, name="mixed")
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert model.layers[1].compute_dtype == "float16"
    path, report = _export(model, tmp_path)
    assert "float32 twin of a mixed_float16 model" in report
    twin = export_check.float32_twin(model)
    assert all(lay.compute_dtype == "float32" for lay in twin.layers)
    assert_onnx_matches(path, twin, "probs", (16, 16, 3))
    x = np.random.default_rng(4).standard_normal((2, 16, 16, 3)).astype("float32")
    import onnxruntime as ort

    got = ort.InferenceSession(str(path)).run(None, {"image": x})[0]
    assert np.abs(got - np.asarray(model(x), dtype="float32")).max() < 1e-2  # float16 rounding only


def test_random_augmentation_layers_are_left_out(tmp_path, keras):
    import onnx

    inputs = keras.Input((24, 24, 3))
    x = keras.layers.RandomFlip()(inputs)
    x = keras.layers.RandomRotation(0.2)(x)
    x = keras.layers.RandomZoom(0.2)(x)
    x = keras.layers.RandomContrast(0.2)(x)
    x = keras.layers.RandomTranslation(0.1, 0.1)(x)
    x = keras.layers.Conv2D(4, 3)(x)
    outputs = keras.layers.GlobalAveragePooling2D(name="features")(x)
    model = keras.Model(inputs, outputs, name="augmented")
    path, _ = _export(model, tmp_path)
    ops = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert not any("Random" in op or "Transform" in op for op in ops), ops
    assert_onnx_matches(path, model, "features", (24, 24, 3))


def _small_model(keras):
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3)(inputs)
    outputs = keras.layers.GlobalAveragePooling2D(name="features")(x)
    return keras.Model(inputs, outputs, name="small")


@pytest.mark.parametrize("user_setting", [None, "FALSE"])
def test_an_optimizer_pass_that_raises_costs_time_not_the_export(tmp_path, keras, monkeypatch, user_setting):
    """The fast conversion (no copy before each tf2onnx pass) fails on a raising pass; the careful one skips it."""
    import os

    from tf2onnx import optimizer

    seen = []

    class Raising:
        graph_been_opt = False

        def optimize(self, graph, iteration):
            seen.append(os.environ.get("TF2ONNX_CATCH_ERRORS"))
            raise RuntimeError("a pass that breaks")

    monkeypatch.setattr(optimizer, "_optimizers", {**optimizer._optimizers, "raising": Raising})
    if user_setting is None:
        monkeypatch.delenv("TF2ONNX_CATCH_ERRORS", raising=False)
    else:
        monkeypatch.setenv("TF2ONNX_CATCH_ERRORS", user_setting)
    model = _small_model(keras)
    if user_setting is not None:
        # the user's own setting stands: tf2onnx raises, and surgery does not convert again behind their back
        with pytest.raises(export_check.ExportError, match="a pass that breaks"):
            _export(model, tmp_path)
        assert seen == [user_setting] and os.environ["TF2ONNX_CATCH_ERRORS"] == user_setting
        return
    path, report = _export(model, tmp_path)
    assert "max abs diff vs Keras" in report
    assert_onnx_matches(path, model, "features", (8, 8, 3))
    # first the uncopied passes, which the raise ends; then the careful conversion, which skips it
    assert seen[0] == "FALSE" and seen[-1] is None and len(seen) >= 2
    assert "TF2ONNX_CATCH_ERRORS" not in os.environ


def test_the_changes_to_tf2onnx_end_with_the_conversion(tmp_path, keras, monkeypatch):
    """surgery changes four of tf2onnx's internals while it converts (conversion.py says why each); after an
    export, and after one that fails, every one is tf2onnx's own again: no change outlives the export."""
    from tf2onnx import optimizer
    from tf2onnx.graph import Graph
    from tf2onnx.optimizer import back_to_back_optimizer
    from tf2onnx.optimizer.transpose_optimizer import TransposeOptimizer

    def current():
        return (
            optimizer.optimize_graph,
            Graph.update_proto,
            TransposeOptimizer.pre_optimize_action,
            dict(back_to_back_optimizer._func_map),
        )

    before = current()
    path, _ = _export(_small_model(keras), tmp_path)
    assert path.is_file()
    assert current() == before
    import tf2onnx

    during = []

    def failing(*args, **kwargs):
        during.append(current())
        raise RuntimeError("the conversion failed")

    monkeypatch.setattr(tf2onnx.convert, "from_function", failing)
    with pytest.raises(Exception, match="the conversion failed"):
        _export(_small_model(keras), tmp_path)
    # the changes were in effect while it converted (update_proto's only within the passes)
    assert during[0][0] is not before[0] and during[0][2] is not before[2] and during[0][3] != before[3]
    assert current() == before


def test_what_tf2onnx_cannot_trace_alone(tmp_path, keras):
    """The three export workarounds, each on its own layer: captured constants, grouped conv, exact GELU."""
    inputs = keras.Input((12, 12, 4))
    x = keras.layers.Normalization(mean=[0.5, 1.0, 1.5, 2.0], variance=[4.0, 1.0, 0.25, 2.0])(inputs)
    x = keras.layers.Conv2D(6, 3, groups=2)(x)
    x = keras.layers.Activation("gelu")(x)
    outputs = keras.layers.Flatten(name="flat")(x)
    model = keras.Model(inputs, outputs, name="traced")
    path, _ = _export(model, tmp_path)
    assert_onnx_matches(path, model, "flat", (12, 12, 4))


def test_layer_without_onnx_conversion_is_named(tmp_path, keras):
    import tensorflow as tf

    class Bessel(keras.layers.Layer):
        def call(self, x):
            return tf.math.special.bessel_i1e(x)

    inputs = keras.Input((8,))
    model = keras.Model(inputs, Bessel(name="bessel")(keras.layers.Dense(4)(inputs)), name="odd")
    with pytest.raises(export_check.ExportError, match=r'layer "bessel" \(Bessel\) .*BesselI1e'):
        _export(model, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_registering_exporters_imports_no_tensorflow():
    code = (
        "import sys\nfrom click.testing import CliRunner\nfrom surgery.cli import main\n"
        "from surgery.plugins.loading import load_plugins\n"
        "assert {'onnx', 'saved_model'} <= set(load_plugins().registry.exporters)\n"
        "assert CliRunner().invoke(main, ['export', '--help']).exit_code == 0\n"
        "print(json.dumps(sorted(m for m in ('tensorflow', 'keras', 'onnx', 'onnxruntime', 'tf2onnx') "
        "if m in sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", "import json\n" + code], check=False, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []


class _Terminal:
    def __init__(self, tty):
        self.tty, self.text = tty, ""

    def isatty(self):
        return self.tty

    def write(self, text):
        self.text += text

    def flush(self):
        pass


def test_progress_only_on_a_terminal():
    import time

    quiet, terminal = _Terminal(False), _Terminal(True)
    with export_check.progress("exporting", quiet, every=0.01):
        time.sleep(0.05)
    with export_check.progress("exporting", terminal, every=0.01):
        time.sleep(0.05)
    assert quiet.text == ""
    assert terminal.text.startswith("exporting ...\n") and "still exporting (" in terminal.text
