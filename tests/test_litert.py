"""The litert exporter: a .tflite file that ai-edge-litert runs as Keras does, builtin ops unless allowed."""

from __future__ import annotations

import numpy as np
import pytest

import surgery

from helpers import assert_one_error_line, tiny_spec, write_spec

pytestmark = pytest.mark.slow  # converts models (TensorFlow's converter, seconds each); the full suite runs it


def _litert(path):
    from ai_edge_litert.interpreter import Interpreter

    return Interpreter(model_path=str(path)).get_signature_runner("serving_default")


def _pixels(size=16, n=4, seed=1):
    return np.random.default_rng(seed).uniform(0, 255, (n, size, size, 3)).astype("float32")


@pytest.fixture(scope="module")
def applied(tmp_path_factory, backbone):
    """A tiny CNN with a linear (logit) head, built by `surgery apply --litert` in process."""
    from click.testing import CliRunner

    from surgery.cli import main

    folder = tmp_path_factory.mktemp("litert")
    spec = tiny_spec(backbone, [{"epochs": 1}])
    spec["steps"][-1]["config"]["activation"] = None
    path = write_spec(folder, spec)
    result = CliRunner().invoke(
        main, ["apply", str(path), "-o", str(folder / "out"), "--litert", str(folder / "out" / "m.tflite")]
    )
    assert result.exit_code == 0, result.output
    return folder / "out", result.output


def test_apply_writes_a_litert_file_that_runs_as_keras_does(applied, keras):
    out, output = applied
    assert "m.tflite (signature serving_default: image[batch,16,16,3] -> head[batch,3]; builtin ops only" in output
    model = keras.saving.load_model(out / "tiny.keras")
    x = _pixels()
    want = model.predict(x, verbose=0)
    got = _litert(out / "m.tflite")(image=x)["head"]
    # Logits that differ by class and by image, so a constant or a swapped output cannot match by chance.
    assert np.ptp(want, axis=1).min() > 1e-3 and np.ptp(want, axis=0).min() > 1e-3
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_export_names_the_files_input_and_output(applied, cli, tmp_path, keras):
    out, _ = applied
    result = cli(
        "export",
        out / "tiny.keras",
        "--to",
        "litert",
        "-o",
        tmp_path,
        "--input-name",
        "pixels",
        "--output-name",
        "logits",
    )
    assert result.exit_code == 0, result.output
    written = tmp_path / "tiny.tflite"
    assert f"wrote {written} (signature serving_default: pixels[batch,16,16,3] -> logits[batch,3]" in result.output
    x = _pixels(seed=2)
    want = keras.saving.load_model(out / "tiny.keras").predict(x, verbose=0)
    np.testing.assert_allclose(_litert(written)(pixels=x)["logits"], want, atol=1e-4)


@pytest.mark.parametrize("switch", ["allow_flex", "int8_io"])
def test_a_bad_switch_is_one_line_and_writes_nothing(applied, tmp_path, switch):
    out, _ = applied
    with pytest.raises(surgery.SpecError, match=f"{switch} must be true or false, got 'yes'"):
        surgery.export(out / "tiny.keras", "litert", output=str(tmp_path), options={switch: "yes"})
    assert not list(tmp_path.iterdir())


def _model_with(keras, fn, name):
    inputs = keras.Input((8,), name="x")
    y = keras.layers.Dense(8, name="dense")(inputs)
    return keras.Model(inputs, keras.layers.Lambda(fn, name=name)(y))


@pytest.fixture
def exporter():
    return surgery.load_plugins().registry.exporters["litert"].export


def test_an_op_with_only_a_flex_kernel_is_refused_by_name_unless_allowed(exporter, keras, tmp_path):
    model = _model_with(keras, keras.ops.erf, "erf")
    with pytest.raises(surgery.SurgeryError) as refused:
        exporter(model, tmp_path / "m.tflite", {})
    assert_one_error_line(f"error: {refused.value}\n", "LiteRT has no builtin kernel for: Erf;", "--allow-flex")
    assert not (tmp_path / "m.tflite").exists()
    report = exporter(model, tmp_path / "m.tflite", {"allow_flex": True})
    assert "Flex ops Erf (needs a LiteRT runtime with Flex)" in report
    assert "not run here (no Flex runtime in ai-edge-litert)" in report
    # The file holds the op as a Flex op: the runtime here refuses it for exactly that reason.
    from ai_edge_litert.interpreter import Interpreter

    with pytest.raises(RuntimeError, match="Select TensorFlow op"):
        Interpreter(model_path=str(tmp_path / "m.tflite")).allocate_tensors()


def test_an_op_no_litert_runtime_has_is_refused_even_with_flex(exporter, keras, tmp_path):
    import tensorflow as tf

    model = _model_with(keras, tf.math.erfc, "erfc")
    for options in ({}, {"allow_flex": True}):
        with pytest.raises(surgery.SurgeryError, match="ops that no LiteRT runtime has: Erfc;"):
            exporter(model, tmp_path / "m.tflite", options)
    assert not (tmp_path / "m.tflite").exists()
