"""adapt_input: backbones at a new size and channel count, from a weights file (made by conftest).

The adapted first kernel must be the rule applied to the original kernel, every
other layer must keep its weights exactly, and the rules must mean what they
say: with "mean", a C-channel image whose channels all equal g gives what the
original gives for (g, g, g); with "zeros", extra bands change nothing at first.
"""

from __future__ import annotations

import numpy as np
import pytest

import surgery

from graph_helpers import assert_close, assert_weights_kept, backbone, images, predict, run, spec
from helpers import load_spec_json, with_weights

FIRST_CONV = {"vgg16": "block1_conv1", "resnet50": "conv1_conv"}
WEIGHTS = {"vgg16": "vgg16_notop_weights", "resnet50": "resnet50_notop_weights"}


# ResNet50 in the full suite only: VGG16 has the same first-convolution cases at a fraction of the cost.
@pytest.fixture(scope="module", params=[pytest.param("vgg16"), pytest.param("resnet50", marks=pytest.mark.slow)])
def net(request):
    """(name, backbone step with a weights file saved at 224x224, the model built at 32x32 from it)."""
    name = request.param
    weights = request.getfixturevalue(WEIGHTS[name])
    step = backbone(name, weights)
    return name, step, surgery.build(spec(step)), weights


@pytest.mark.slow
def test_a_new_input_size_keeps_every_pretrained_weight(net, keras):
    name, _, original, weights = net
    reference = getattr(keras.applications, {"vgg16": "VGG16", "resnet50": "ResNet50"}[name])(
        weights=None, include_top=False, input_shape=(224, 224, 3)
    )
    reference.load_weights(str(weights))
    assert tuple(original.input.shape) == (None, 32, 32, 3)
    assert assert_weights_kept(original, reference) > 20


@pytest.mark.slow
@pytest.mark.parametrize("channels", [1, 4])
def test_mean_rule_on_one_and_four_channels(net, channels):
    name, step, original, _ = net
    first = FIRST_CONV[name]
    state = run(spec(step, {"op": "adapt_input", "channels": channels}))
    model = state.model
    assert tuple(model.input.shape) == (None, 32, 32, channels)
    kernel, bias = original.get_layer(first).get_weights()
    expected = np.repeat(kernel.mean(axis=2, keepdims=True), channels, axis=2) * (3 / channels)
    new_kernel, new_bias = model.get_layer(first).get_weights()
    assert new_kernel.shape == kernel.shape[:2] + (channels, kernel.shape[3])
    np.testing.assert_allclose(new_kernel, expected, rtol=1e-6)
    np.testing.assert_array_equal(new_bias, bias)
    assert assert_weights_kept(model, original, skip={first}) > 10
    assert (
        f"adapted {first} kernel {kernel.shape} -> {new_kernel.shape} by rule mean (x 3/{channels})" in state.notes[-1]
    )
    gray = images((2, 32, 32, 1))
    assert_close(
        predict(model, np.repeat(gray, channels, axis=3))[0], predict(original, np.repeat(gray, 3, axis=3))[0], rel=1e-4
    )


def test_repeat_rule_cycles_the_rgb_kernels(net):
    name, step, original, _ = net
    first = FIRST_CONV[name]
    model = surgery.build(spec(step, {"op": "adapt_input", "channels": 4, "rule": "repeat"}))
    kernel = original.get_layer(first).get_weights()[0]
    np.testing.assert_allclose(model.get_layer(first).get_weights()[0], kernel[:, :, [0, 1, 2, 0]] * 0.75, rtol=1e-6)


@pytest.mark.slow
def test_adapted_model_saves_and_reloads(net, keras, tmp_path):
    _, step, _, _ = net
    model = surgery.build(spec(step, {"op": "adapt_input", "channels": 1, "size": [48, 48]}))
    path = tmp_path / "gray.keras"
    model.save(str(path))
    again = keras.saving.load_model(str(path), safe_mode=True)
    x = images((1, 48, 48, 1))
    assert_close(predict(again, x)[0], predict(model, x)[0])


@pytest.mark.slow
def test_rgbn_spec_starts_as_the_rgb_model(resnet50_notop_weights):
    """specs/resnet50_rgbn.json: rule zeros, so the fourth band adds nothing until it is trained."""
    data = with_weights(load_spec_json("resnet50_rgbn.json"), resnet50_notop_weights)
    model = run(data).model
    original = surgery.build(spec(data["steps"][0]))
    kernel = original.get_layer("conv1_conv").get_weights()[0]
    adapted = model.get_layer("conv1_conv").get_weights()[0]
    np.testing.assert_array_equal(adapted[:, :, :3], kernel)
    np.testing.assert_array_equal(adapted[:, :, 3], 0)
    features = surgery.build({**data, "steps": data["steps"][:2]})  # the adapted backbone, before the head
    rgb = images((1, 128, 128, 3))
    rgbn = np.concatenate([rgb, images((1, 128, 128, 1), seed=5)], axis=3)
    assert_close(predict(features, rgbn)[0], predict(original, rgb)[0], rel=1e-5)
    assert tuple(model.output.shape) == (None, 8)


def test_grayscale_spec(vgg16_notop_weights):
    """specs/vgg16_grayscale.json: adapt to one channel, then the preprocessing (averaged) into the model."""
    state = run(with_weights(load_spec_json("vgg16_grayscale.json"), vgg16_notop_weights))
    model = state.model
    assert tuple(model.input.shape) == (None, 64, 64, 1)
    pre = model.get_layer("preprocess")
    assert type(pre).__name__ == "Rescaling"
    assert pre.scale == pytest.approx(1.0)
    assert pre.offset == pytest.approx(-np.mean([103.939, 116.779, 123.68]), abs=1e-4)
    assert state.preprocess is None  # nothing left for the data pipeline to do
    assert tuple(model.output.shape) == (None, 2)
