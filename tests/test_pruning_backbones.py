"""keras.applications backbones (random weights, small inputs): pruned == masked twin, coupled channels right."""

from __future__ import annotations

import numpy as np
import pytest

from pruning_helpers import check_twin, inputs_for, keras, outputs, randomize

pytestmark = pytest.mark.slow


def _backbone(name, side, **kw):
    k = keras()
    k.utils.set_random_seed(0)
    model = getattr(k.applications, name)(weights=None, include_top=False, input_shape=(side, side, 3), **kw)
    return randomize(model, 0)


def _global(model):
    from surgery.pruning import analyze, select

    a = analyze(model)
    return a, select(a, model, 0.3, scope="global")


@pytest.fixture(scope="module")
def vgg16():
    return _backbone("VGG16", 32)


def test_vgg16_chain(vgg16):
    from surgery.pruning import analyze

    a = analyze(vgg16)
    removal = a.removal({"block1_conv1": [3, 7], "block3_conv2": list(range(0, 256, 5))})
    pruned, report, _, _ = check_twin(vgg16, removal)
    assert pruned.get_layer("block1_conv1").filters == 62 and pruned.get_layer("block3_conv2").filters == 204
    assert report.params_after < report.params_before
    check_twin(vgg16, _global(vgg16)[1])


def test_vgg16_with_flatten_and_dense_head():
    from surgery.pruning import analyze

    k = keras()
    base = _backbone("VGG16", 64)  # block5_pool is 2x2x512
    x = k.layers.Flatten(name="flatten")(base.output)
    x = k.layers.Dense(16, activation="relu", name="fc1")(x)
    y = k.layers.Dense(10, name="predictions")(x)
    model = randomize(k.Model(base.input, y), 1)
    a = analyze(model)
    removal = a.removal({"block5_conv3": [0, 511], "fc1": [2]})
    assert removal.channels_of("flatten") == [0, 511, 512, 1023, 1024, 1535, 1536, 2047]
    pruned, _, _, _ = check_twin(model, removal)
    assert pruned.get_layer("fc1").get_weights()[0].shape == (2040, 15)
    check_twin(model, _global(model)[1])


@pytest.fixture(scope="module")
def resnet50():
    return _backbone("ResNet50", 32)


def test_resnet50_residual_stage_is_one_group(resnet50):
    from surgery.pruning import analyze

    a = analyze(resnet50)
    removal = a.coupled("conv2_block1_out", [0, 5, 17])
    for layer in (
        "conv2_block1_0_conv",
        "conv2_block1_3_conv",
        "conv2_block1_3_bn",
        "conv2_block2_3_conv",
        "conv2_block3_3_conv",
        "conv2_block2_add",
        "conv2_block3_out",
    ):
        assert removal.channels_of(layer) == [0, 5, 17], layer
    assert removal.channels_of("conv3_block1_0_conv") == []
    (gid,) = removal.by_group()
    assert a.groups[gid].channels == 256 and len(a.groups[gid].producers) == 4
    check_twin(resnet50, removal)
    check_twin(resnet50, _global(resnet50)[1])


@pytest.fixture(scope="module")
def densenet121():
    return _backbone("DenseNet121", 32)


def test_densenet121_concatenation(densenet121):
    from surgery.pruning import analyze

    a = analyze(densenet121)
    # conv2_block1_concat = [pool1 (64), conv2_block1_2_conv (32)]; its channel 64+3 is the new block's channel 3.
    removal = a.coupled("conv2_block1_concat", [1, 67])
    assert removal.channels_of("conv2_block1_2_conv") == [3]
    assert removal.channels_of("conv2_block6_concat") == [1, 67]
    assert removal.channels_of("conv1_conv") == [1]
    check_twin(densenet121, removal)
    check_twin(densenet121, _global(densenet121)[1])


@pytest.fixture(scope="module")
def mobilenetv2():
    return _backbone("MobileNetV2", 32)


def test_mobilenetv2_depthwise_blocks(mobilenetv2):
    from surgery.pruning import analyze

    a = analyze(mobilenetv2)
    removal = a.removal({"block_1_expand": [0, 10, 95], "block_2_project_BN": [4]})
    assert removal.channels_of("block_1_depthwise") == [0, 10, 95]
    assert removal.channels_of("block_1_project") == [4] and removal.channels_of("block_2_add") == [4]
    check_twin(mobilenetv2, removal)
    check_twin(mobilenetv2, _global(mobilenetv2)[1])


@pytest.fixture(scope="module")
def efficientnetb0():
    return _backbone("EfficientNetB0", 32)


def test_efficientnetb0_squeeze_excitation(efficientnetb0):
    from surgery.pruning import analyze

    a = analyze(efficientnetb0)
    removal = a.removal({"block2a_expand_conv": [1, 2, 50], "block2a_se_reduce": [0]})
    assert removal.channels_of("block2a_se_expand") == [1, 2, 50]
    assert removal.channels_of("block2a_se_excite") == [1, 2, 50]
    assert removal.channels_of("block2a_se_reshape") == [1, 2, 50]
    pruned, _, _, _ = check_twin(efficientnetb0, removal)
    assert pruned.get_layer("block2a_se_reshape").target_shape == (1, 1, 93)
    check_twin(efficientnetb0, _global(efficientnetb0)[1])


@pytest.fixture(scope="module")
def convnext_tiny():
    return _backbone("ConvNeXtTiny", 32)


def test_convnext_tiny_mlp_pruned_stream_unprunable(convnext_tiny, tmp_path):
    from surgery.pruning import analyze

    a = analyze(convnext_tiny)
    prunable = a.prunable_groups
    assert len(prunable) == 18 and all(g.producers[0].endswith("pointwise_conv_1") for g in prunable)
    stream = a.groups[a.class_group[int(a.root[a.record("convnext_tiny_stage_1_block_0_layer_scale").out_ids[0][0]])]]
    assert not stream.prunable and "LayerNormalization" in stream.reason
    with pytest.raises(Exception, match="LayerNormalization"):
        a.coupled("convnext_tiny_stage_1_block_0_pointwise_conv_2", [0])
    removal = a.coupled("convnext_tiny_stage_0_block_0_pointwise_conv_1", [0, 7, 383])
    assert removal.channels_of("convnext_tiny_stage_0_block_0_gelu") == [0, 7, 383]
    check_twin(convnext_tiny, removal)
    _, removal = _global(convnext_tiny)
    pruned, _, _, _ = check_twin(convnext_tiny, removal)
    path = tmp_path / "convnext.keras"
    pruned.save(path)
    loaded = keras().saving.load_model(path, safe_mode=True)
    x = inputs_for(convnext_tiny)
    assert np.array_equal(outputs(loaded, x), outputs(pruned, x))


@pytest.fixture(scope="module")
def inception_v3():
    return _backbone("InceptionV3", 75)


def test_inception_v3_branches(inception_v3):
    from surgery.pruning import analyze

    a = analyze(inception_v3)
    # mixed0 = [1x1 (64), 5x5 (64), 3x3dbl (96), pool (32)]
    removal = a.coupled("mixed0", [0, 64 + 1, 128 + 2, 224 + 3])
    producers = [a.record("mixed0").node.input_tensors[i]._keras_history.operation.name for i in range(4)]
    assert [removal.channels_of(p) for p in producers] == [[0], [1], [2], [3]]
    check_twin(inception_v3, removal)
    check_twin(inception_v3, _global(inception_v3)[1])
