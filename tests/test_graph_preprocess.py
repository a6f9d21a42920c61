"""preprocess: the backbone's preprocess_input inside the model, as built-in layers.

model(raw pixels) must equal model_without(preprocess_input(raw pixels)) for
each style keras.applications uses: caffe (BGR and ImageNet means: VGG16),
tf (scale to [-1, 1]: ResNet50V2, MobileNetV2) and torch (scale to [0, 1],
ImageNet mean and std: DenseNet), and the files must load without custom objects.
"""

from __future__ import annotations

import importlib
import json

import pytest

import surgery

from graph_helpers import assert_close, assert_weights_kept, backbone, images, predict, run, spec
from helpers import load_spec_json, with_weights

STYLES = [
    # backbone, keras.applications module, the layer that does it
    ("vgg16", "vgg16", "Conv2D"),  # caffe: a channel swap needs a (frozen 1x1) convolution
    ("resnet50v2", "resnet_v2", "Rescaling"),  # tf
    ("mobilenetv2", "mobilenet_v2", "Rescaling"),  # tf
    ("densenet121", "densenet", "Rescaling"),  # torch: per-channel scale and offset
]
RAW = images((2, 32, 32, 3), seed=3)


def preprocess_input(module: str):
    return importlib.import_module(f"keras.applications.{module}").preprocess_input


@pytest.mark.slow
@pytest.mark.parametrize("name,module,layer_type", STYLES)
def test_model_on_raw_pixels_equals_model_on_preprocessed_pixels(name, module, layer_type):
    plain = surgery.build(spec(backbone(name)))
    state = run(spec(backbone(name), {"op": "preprocess"}))
    model = state.model
    assert assert_weights_kept(model, plain, skip={"preprocess"}) > 10  # same seed and weights: a fair comparison
    pre = model.get_layer("preprocess")
    assert type(pre).__name__ == layer_type
    assert not pre.trainable_weights  # training must not move it
    assert state.preprocess is None  # nothing left for the data pipeline to do
    assert f"keras.applications.{module}.preprocess_input as " in state.notes[-1]
    expected = predict(plain, preprocess_input(module)(RAW.copy()))[0]
    assert_close(predict(model, RAW)[0], expected, rel=1e-4)


@pytest.mark.parametrize("mode", ["caffe", "tf", "torch"])
def test_each_mode_saves_loads_and_exports_without_custom_objects(mode, cli, keras, tmp_path):
    """A mode instead of the backbone's own, on a small cut of VGG16 so saving and ONNX stay quick."""
    from keras.applications import imagenet_utils

    # Scaled down: block1's raw features reach ~1e3, where float32 rounding exceeds the exporter's absolute atol.
    steps = [
        backbone("vgg16"),
        {"op": "slice", "to": "block1_pool"},
        {"op": "append", "layer": "Rescaling", "config": {"scale": 0.001}},
    ]
    plain = surgery.build(spec(*steps))
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec(*steps[:1], {"op": "preprocess", "mode": mode}, *steps[1:])))
    result = cli("apply", path, "-o", tmp_path / "m.keras", "--onnx", tmp_path / "m.onnx")
    assert result.exit_code == 0, result.stderr
    model = keras.saving.load_model(str(tmp_path / "m.keras"), safe_mode=True)
    expected = predict(plain, imagenet_utils.preprocess_input(RAW.copy(), mode=mode))[0]
    assert_close(predict(model, RAW)[0], expected, rel=1e-4)
    assert "max abs diff vs Keras" in result.stdout  # the exporter ran the ONNX file on raw pixels and compared


def test_a_model_that_preprocesses_itself_gets_nothing():
    state = run(spec(backbone("efficientnetb0"), {"op": "preprocess"}))
    assert "is the identity" in state.notes[-1] and "nothing added" in state.notes[-1]
    assert "preprocess" not in [layer.name for layer in state.model.layers]


@pytest.mark.slow
def test_raw_pixels_spec(mobilenetv2_notop_weights):
    """specs/mobilenetv2_raw_pixels.json: the pooled features of raw pixels are those of preprocessed ones."""
    data = with_weights(load_spec_json("mobilenetv2_raw_pixels.json"), mobilenetv2_notop_weights)
    data["steps"][0]["input_shape"] = [96, 96, 3]  # smaller than the spec's 224, to keep the test quick
    model = run(data).model
    assert not any(layer.trainable_weights for layer in model.layers[:-1])
    features = surgery.build({**data, "steps": data["steps"][:1]})  # the backbone alone, without preprocessing
    with_preprocess = surgery.build({**data, "steps": data["steps"][:2]})
    raw = images((2, 96, 96, 3), seed=4)
    assert_close(
        predict(with_preprocess, raw)[0], predict(features, preprocess_input("mobilenet_v2")(raw.copy()))[0], rel=1e-4
    )
    assert tuple(model.output.shape) == (None, 5)


@pytest.mark.parametrize("order", [[1, 2, 0], [2, 0, 1]])
def test_a_cyclic_channel_order_becomes_a_kernel_that_moves_each_channel_where_the_function_does(keras, order):
    """caffe's RGB->BGR swap is its own inverse, so a transposed kernel would pass with it; a 3-cycle with
    unequal scales and offsets is not: the layer gives the function's output on random pixels."""
    import numpy as np

    from surgery.model.preprocess_layers import affine_layers, measure

    scale, offset = np.array([1.0, 2.0, 3.0]), np.array([-10.0, -20.0, -30.0])

    def fn(x):
        return x[..., order] * scale + offset

    m, b = measure(fn, 3, "cycle")
    [layer], described = affine_layers(keras, m, b, 3, "cycle")
    assert type(layer).__name__ == "Conv2D" and "Conv2D" in described
    x = np.random.default_rng(0).uniform(0, 255, (2, 4, 4, 3)).astype("float32")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(x)), fn(x), rtol=1e-5, atol=1e-3)
