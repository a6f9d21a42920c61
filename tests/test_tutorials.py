"""The tutorials' models, built from the specs in specs/, with the figures Keras reports."""

from __future__ import annotations

import numpy as np
import pytest

import surgery
from surgery.report.summary import totals

from helpers import load_spec_json, with_weights


def test_vgg16_cut_extend_figures(vgg16_notop_weights):
    model = surgery.build(with_weights(load_spec_json("vgg16_cut_extend.json"), vgg16_notop_weights))
    assert totals(model) == (1_852_514, 555_328, 1_297_186)
    assert tuple(model.output.shape) == (None, 2)
    assert [lay.name for lay in model.layers[:11]][-1] == "block3_pool"
    # freeze "8:" is the tutorial's Sequential model.layers[7:]: block3_conv2 onwards
    frozen = [lay.name for lay in model.layers if lay.weights and not lay.trainable]
    assert frozen == ["block3_conv2", "block3_conv3", "conv2d", "dense"]
    # model.summary() counts the same way
    assert model.count_params() == 1_852_514


def test_vgg16_300_head_figures(vgg16_notop_weights):
    model = surgery.build(with_weights(load_spec_json("vgg16_300_head.json"), vgg16_notop_weights))
    total, trainable, frozen = totals(model)
    assert total == 57_193_290
    assert frozen == 14_714_688  # all of VGG16 frozen, only the new head learns
    assert tuple(model.input.shape) == (None, 300, 300, 3)


@pytest.mark.slow
def test_vgg16_fc2_features(vgg16_top_weights):
    model = surgery.build(with_weights(load_spec_json("vgg16_fc2_features.json"), vgg16_top_weights))
    assert model.count_params() == 134_260_544
    assert tuple(model.output.shape) == (None, 4096)
    assert model.layers[-1].name == "fc2"


@pytest.mark.slow
def test_resnet50_cut(resnet50_notop_weights):
    model = surgery.build(with_weights(load_spec_json("resnet50_cut.json"), resnet50_notop_weights))
    names = [lay.name for lay in model.layers]
    assert names[-3:] == ["conv4_block6_out", "global_average_pooling2d", "dense"]
    assert not any(n.startswith("conv5_") for n in names)
    assert tuple(model.output.shape) == (None, 10)
    _, trainable, _ = totals(model)
    assert trainable == 1024 * 10 + 10  # only the new head trains


def test_mobilenetv2_frozen_head(mobilenetv2_notop_weights):
    model = surgery.build(with_weights(load_spec_json("mobilenetv2_frozen_head.json"), mobilenetv2_notop_weights))
    _, trainable, _ = totals(model)
    assert trainable == 1280 * 5 + 5
    assert tuple(model.output.shape) == (None, 5)
    bn = [lay for lay in model.layers if type(lay).__name__ == "BatchNormalization"]
    assert bn and not any(lay.trainable for lay in bn)  # frozen BN runs in inference mode in Keras 3


@pytest.mark.parametrize(
    "spec_name,fixture",
    [
        ("vgg16_cut_extend.json", "vgg16_notop_weights"),
        ("resnet50_cut.json", "resnet50_notop_weights"),
    ],
)
@pytest.mark.slow
def test_kept_layers_keep_their_weights(spec_name, fixture, request, keras):
    weights = request.getfixturevalue(fixture)
    spec = with_weights(load_spec_json(spec_name), weights)
    model = surgery.build(spec)
    backbone = spec["steps"][0]
    reference = getattr(keras.applications, {"vgg16": "VGG16", "resnet50": "ResNet50"}[backbone["name"]])(
        weights=None, include_top=False, input_shape=tuple(backbone["input_shape"])
    )
    reference.load_weights(str(weights))
    compared = 0
    for layer in model.layers:
        try:
            source = reference.get_layer(layer.name)
        except ValueError:
            continue  # a new layer
        for a, b in zip(layer.get_weights(), source.get_weights()):
            np.testing.assert_array_equal(a, b)
            compared += 1
    assert compared > 10
    # a random init differs, so the equality above means the file was loaded
    other = surgery.build(with_weights(load_spec_json(spec_name), None))
    first = next(lay for lay in model.layers if lay.weights)
    assert not np.array_equal(first.get_weights()[0], other.get_layer(first.name).get_weights()[0])


def test_same_spec_same_weights(vgg16_notop_weights):
    spec = with_weights(load_spec_json("vgg16_cut_extend.json"), vgg16_notop_weights)
    a = surgery.build(spec)
    b = surgery.build(spec)
    # Keras numbers auto-named inputs per process (input_layer_1, ...); every other name is the spec's.
    assert [lay.name for lay in a.layers[1:]] == [lay.name for lay in b.layers[1:]]
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)


def test_new_layers_depend_on_the_random_seed(vgg16_notop_weights):
    spec = with_weights(load_spec_json("vgg16_cut_extend.json"), vgg16_notop_weights)
    a = surgery.build(spec)
    spec["seed"] = 1
    b = surgery.build(spec)
    assert not np.array_equal(a.get_layer("dense").get_weights()[0], b.get_layer("dense").get_weights()[0])
    np.testing.assert_array_equal(
        a.get_layer("block1_conv1").get_weights()[0], b.get_layer("block1_conv1").get_weights()[0]
    )
