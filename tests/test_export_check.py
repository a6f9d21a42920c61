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
