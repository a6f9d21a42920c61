"""The export check's measure: the largest difference of any element of any output, so one element off is
a failure however many others are exact (a mean, or the first output only, would pass it)."""

from __future__ import annotations

import numpy as np
import pytest

from surgery.exporting import export_check


def _outputs():
    rng = np.random.default_rng(0)
    return {"logits": rng.standard_normal((8, 10)).astype("float32"), "boxes": rng.standard_normal((8, 4))}


@pytest.mark.parametrize("output", ["logits", "boxes"])
def test_one_element_off_is_the_difference(output):
    expected = _outputs()
    actual = {name: value.copy() for name, value in expected.items()}
    actual[output][5, 2] += 1.0
    actual["logits"][0, 0] -= 0.25  # a smaller difference elsewhere does not hide the larger one
    assert export_check.max_abs_diff(expected, actual) == pytest.approx(1.0, abs=1e-6)


def test_nan_or_another_shape_is_an_infinite_difference():
    expected = _outputs()
    nan = {name: value.copy() for name, value in expected.items()}
    nan["boxes"][7, 3] = np.nan
    assert export_check.max_abs_diff(expected, nan) == float("inf")
    short = {**expected, "logits": expected["logits"][:7]}
    assert export_check.max_abs_diff(expected, short) == float("inf")
    empty = {"none": np.zeros((8, 0), dtype="float32")}
    assert export_check.max_abs_diff(empty, {"none": empty["none"].copy()}) == 0.0  # nothing to differ


def test_a_difference_of_exactly_atol_passes(keras):
    inputs = keras.Input((6,), name="x")
    model = keras.Model(inputs, keras.layers.Dense(5, kernel_initializer="zeros", name="scores")(inputs))
    target = export_check.prepare(model, {}, float32=True)

    def quarter_off(batch):
        out = export_check.keras_outputs(target, batch)
        return {name: value + 0.25 for name, value in out.items()}  # 0 + 0.25: exact in float32

    assert export_check.compare(target, quarter_off, 0.25, "onnxruntime") == 0.25


def test_compare_fails_above_atol_and_keeps_what_is_within(keras):
    inputs = keras.Input((6,), name="x")
    model = keras.Model(inputs, keras.layers.Dense(5, name="scores")(inputs))
    target = export_check.prepare(model, {}, float32=True)

    def off_by(delta):
        def run(batch):
            out = export_check.keras_outputs(target, batch)
            name = target.output_names[0]
            out[name] = out[name].copy()
            out[name][-1, 1] += delta
            return out

        return run

    assert export_check.compare(target, off_by(5e-5), 1e-4, "onnxruntime") == pytest.approx(5e-5, rel=1e-2)
    with pytest.raises(export_check.ExportError, match=r"differ by up to 0\.0002 .* more than atol 0\.0001"):
        export_check.compare(target, off_by(2e-4), 1e-4, "onnxruntime")
    # Within the default but above a tighter atol the user typed: their tolerance fails it (exit 2), not the export.
    with pytest.raises(
        export_check.TooStrictError, match=r"more than atol 1e-05.*\(the default atol 0\.0001 passes it\)"
    ):
        export_check.compare(target, off_by(5e-5), 1e-5, "onnxruntime")
    assert export_check.TooStrictError("x").exit_code == 2 and export_check.ExportError("x").exit_code == 1


def _nested(keras, inner_dtype, outer_dtype="float32"):
    """Input -> Dense (outer_dtype) -> a sub-model whose second Dense has inner_dtype -> Dense (float32)."""
    inner_in = keras.Input((4,))
    h = keras.layers.Dense(4, name="inner_a")(inner_in)
    inner = keras.Model(inner_in, keras.layers.Dense(4, dtype=inner_dtype, name="inner_b")(h), name="inner")
    inputs = keras.Input((4,))
    x = keras.layers.Dense(4, dtype=outer_dtype, name="outer")(inputs)
    return keras.Model(inputs, keras.layers.Dense(2, name="out")(inner(x)))


@pytest.mark.parametrize(
    "inner,outer,found",
    [
        ("float32", "float32", None),
        ("mixed_bfloat16", "float32", "mixed_bfloat16"),  # only inside the sub-model, not its first layer
        ("float16", "float32", "float16"),  # a plain low-precision policy, not only the mixed ones
        ("float32", "mixed_float16", "mixed_float16"),
        ("float64", "float32", None),  # more precision is not less
    ],
)
def test_low_precision_is_found_anywhere_in_the_model(keras, inner, outer, found):
    assert export_check._low_precision(_nested(keras, inner, outer)) == found


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "float16"])
def test_the_float32_twin_is_float32_inside_sub_models_too_and_keeps_the_weights(keras, policy):
    model = _nested(keras, policy)
    twin = export_check.float32_twin(model)
    assert export_check._low_precision(twin) is None
    assert {layer.compute_dtype for layer in export_check._all_layers(twin)} == {"float32"}
    for a, b in zip(model.get_weights(), twin.get_weights()):
        np.testing.assert_array_equal(np.asarray(a, dtype="float32"), b)


def _two_outputs_of_one_layer(keras):
    """Outputs d, d, e: Keras names the first two after their layer, "d" both."""
    inputs = keras.Input((3,), name="x")
    d = keras.layers.Dense(2, name="d")(inputs)
    return keras.Model(inputs, [d, d, keras.layers.Dense(1, name="e")(inputs)])


def test_outputs_of_one_layer_are_numbered_in_order_and_the_others_keep_their_names(keras):
    """Each of a repeated name's outputs gets its number, the second too (it once kept the bare name)."""
    target = export_check.prepare(_two_outputs_of_one_layer(keras), {}, float32=True)
    assert target.output_names == ["d_0", "d_1", "e"]
    assert target.describe() == "image[batch,3] -> d_0[batch,2], d_1[batch,2], e[batch,1]"


@pytest.mark.parametrize(
    "options, message",
    [
        ({"output_name": ["a", "b"]}, "the model has 3 outputs but 2 output names were given"),
        ({"output_name": "abc"}, "the model has 3 outputs but 1 output names were given"),  # a string is one name
        ({"output_name": ["a", "9b", "c"]}, "output name '9b' is not valid; use letters, digits, _ . - (starting"),
        ({"output_name": ["a", "b", "a"]}, "output names must be distinct, got ['a', 'b', 'a']"),
        ({"input_name": 7}, "input name 7 is not valid"),
    ],
)
def test_bad_names_are_refused_with_what_is_wrong(keras, options, message):
    with pytest.raises(export_check.SpecError) as refused:
        export_check.prepare(_two_outputs_of_one_layer(keras), options, float32=True)
    assert str(refused.value).startswith(message)


def test_a_runtime_that_fails_is_one_line_naming_it_and_its_reason(keras):
    inputs = keras.Input((6,), name="x")
    target = export_check.prepare(keras.Model(inputs, keras.layers.Dense(5)(inputs)), {}, float32=True)

    def broken(batch):
        raise ValueError("no kernel for op Erfc\nsecond line")

    with pytest.raises(export_check.ExportError) as failed:
        export_check.compare(target, broken, 1e-4, "onnxruntime")
    assert str(failed.value) == (
        "onnxruntime could not run the exported model: ValueError: no kernel for op Erfc second line"
    )


def test_a_difference_of_exactly_the_default_atol_is_the_tolerance_asked_for_failing(keras):
    """1e-4 exactly (float64 outputs on a model whose outputs are exactly 0): within the default, so a tighter
    atol is what fails it (exit 2), not the export."""
    inputs = keras.Input((6,), name="x")
    model = keras.Model(inputs, keras.layers.Dense(5, kernel_initializer="zeros", name="scores")(inputs))
    target = export_check.prepare(model, {}, float32=True)

    def off(batch):
        return {
            n: v.astype("float64") + export_check.DEFAULT_ATOL
            for n, v in export_check.keras_outputs(target, batch).items()
        }

    with pytest.raises(export_check.TooStrictError):
        export_check.compare(target, off, 5e-5, "onnxruntime")


def test_a_float32_copy_that_keras_cannot_make_is_one_line(keras, monkeypatch):
    model = _nested(keras, "mixed_float16")

    def refuse(*args, **kwargs):
        raise ValueError("x" * 400)

    monkeypatch.setattr(keras.models, "clone_model", refuse)
    with pytest.raises(export_check.ExportError) as failed:
        export_check.float32_twin(model)
    assert str(failed.value) == "could not make a float32 copy of the mixed-precision model: ValueError: " + "x" * 300


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16", "float16", "bfloat16"])
def test_every_sixteen_bit_policy_becomes_float32_in_a_config_wherever_it_is(policy):
    config = {"dtype": {"class_name": "DTypePolicy", "config": {"name": policy}}, "layers": [{"dtype": policy}]}
    assert export_check._float32_config(config) == {
        "dtype": {"class_name": "DTypePolicy", "config": {"name": "float32"}},
        "layers": [{"dtype": "float32"}],
    }
    assert export_check._float32_config({"dtype": "float64", "name": "float16_branch"}) == {
        "dtype": "float64",
        "name": "float16_branch",  # a layer's name is not a policy
    }


def test_a_model_whose_own_policy_is_mixed_but_whose_layers_compute_in_float32_needs_no_twin(keras):
    """The policy that counts is each layer's: a functional model computes nothing itself."""
    inputs = keras.Input((4,))
    outputs = keras.layers.Dense(2)(inputs)
    keras.config.set_dtype_policy("mixed_float16")
    try:
        model = keras.Model(inputs, outputs)
    finally:
        keras.config.set_dtype_policy("float32")
    assert model.dtype_policy.name == "mixed_float16"
    assert export_check._low_precision(model) is None


def _two_inputs_with_dropout(keras, policy="float32"):
    """pixels (free height and width; float16 in a 16-bit model) and 50 class ids (int32) -> RandomFlip,
    Dropout -> Dense: two inputs named by Keras, and two layers whose output changes when called in training
    mode (RandomFlip is in training mode unless told otherwise)."""
    pixels = keras.Input((None, None, 1), dtype="float16" if "16" in policy else "float32", name="pixels")
    label = keras.Input((50,), dtype="int32", name="label")
    flipped = keras.layers.RandomFlip("horizontal_and_vertical", seed=1, name="flip")(pixels)
    # An average is the same flipped or not: weighting the rows by a ramp (as tall as the checked batch) makes a
    # flip change it.
    x = keras.layers.GlobalAveragePooling2D()(
        flipped * keras.ops.arange(1.0, 2.0, 1.0 / export_check.FREE_DIM_SIZE)[:, None, None]
    )
    x = keras.layers.Concatenate()([x, keras.layers.Flatten()(keras.layers.Embedding(10, 1, name="embed")(label))])
    x = keras.layers.Dropout(0.9, name="drop")(x)
    return keras.Model([pixels, label], keras.layers.Dense(3, dtype=policy, name="scores")(x), name="two")


def test_a_two_input_model_is_wrapped_in_inference_mode_with_its_own_input_names(keras):
    model = _two_inputs_with_dropout(keras)
    target = export_check.prepare(model, {}, float32=True)
    assert (target.input_names, target.input_dtypes, target.notes) == (["pixels", "label"], ["float32", "int32"], [])
    assert [(t.name, t.dtype) for t in target.model.inputs] == [("pixels", "float32"), ("label", "int32")]
    assert target.model.name == "two_export" and target.output_names == ["scores"]
    assert target.describe() == "pixels[batch,?,?,1], label[batch,50] -> scores[batch,3]"
    pixels, label = target.signature()[0]
    assert (pixels.name, pixels.dtype, tuple(pixels.shape)) == ("pixels", "float32", (None, None, None, 1))
    assert (label.name, label.dtype, tuple(label.shape)) == ("label", "int32", (None, 50))

    batch = export_check.random_inputs(target)
    assert batch["pixels"].shape == (2, 224, 224, 1) and batch["pixels"].dtype == "float32"  # free sides: 224
    assert 0.9 < batch["pixels"].std() < 1.1  # standard normal
    assert (batch["label"].dtype, batch["label"].min(), batch["label"].max()) == ("int32", 0, 9)
    again = export_check.random_inputs(target)
    assert all(np.array_equal(batch[n], again[n]) for n in batch)  # the same batch every time (a fixed seed)
    expected = np.asarray(model([batch["pixels"], batch["label"]], training=False))
    np.testing.assert_array_equal(export_check.keras_outputs(target, batch)["scores"], expected)
    # Flipped or dropped in training mode, the scores would differ: the wrapped model runs in inference mode
    # even when called as an exporter traces it, with training unset.
    np.testing.assert_array_equal(np.asarray(target.model([batch["pixels"], batch["label"]])["scores"]), expected)


def test_an_exporters_options_are_checked_and_atol_defaults(keras):
    assert export_check.read_options(None, ("atol", "opset"), "onnx") == {"atol": 1e-4}
    assert export_check.read_options({"atol": 0, "opset": 17}, ("atol", "opset"), "onnx") == {"atol": 0.0, "opset": 17}
    with pytest.raises(export_check.SpecError) as refused:
        export_check.read_options({"opset": 17, "atoll": 1, "zz": 2}, ("atol", "opset"), "onnx")
    assert str(refused.value) == 'the onnx exporter takes no option "atoll"; it takes: atol, opset'
    for bad in (True, -1e-9, "0.1", None):
        with pytest.raises(export_check.SpecError) as refused:
            export_check.read_options({"atol": bad}, ("atol",), "onnx")
        assert str(refused.value) == f"atol must be a number >= 0, got {bad!r}"


def test_a_mixed_precision_model_is_exported_as_its_float32_twin_and_says_so(keras):
    model = _two_inputs_with_dropout(keras, policy="mixed_float16")
    target = export_check.prepare(model, {}, float32=True)
    assert target.notes == ["float32 twin of a mixed_float16 model"]
    assert model.inputs[0].dtype == "float16"
    assert target.input_dtypes == ["float32", "int32"]  # a float input becomes float32, an integer one stays
    assert export_check._low_precision(target.model) is None
    assert export_check.prepare(model, {}, float32=False).notes == []  # SavedModel keeps the model's policy


def test_an_output_named_as_an_input_is_refused(keras):
    with pytest.raises(export_check.SpecError) as refused:
        export_check.prepare(_two_inputs_with_dropout(keras), {"output_name": "label"}, float32=True)
    assert str(refused.value) == (
        '"label" names both an input and an output; give the output another name (option output_name, --output-name)'
    )


def test_a_one_input_model_has_one_tensor_spec_and_a_two_input_model_a_list(keras):
    """Keras' export takes [spec] for one input and [[spec, spec]] for two: a list of one would be an input
    that is a list."""
    inputs = keras.Input((6,), name="x")
    target = export_check.prepare(keras.Model(inputs, keras.layers.Dense(5)(inputs)), {}, float32=True)
    (spec,) = target.signature()
    assert (spec.name, tuple(spec.shape)) == ("image", (None, 6))
    two = export_check.prepare(_two_inputs_with_dropout(keras), {}, float32=True).signature()
    assert len(two) == 1 and [s.name for s in two[0]] == ["pixels", "label"]
