"""insert / replace / remove inside the residual blocks of ResNet50 and MobileNetV2.

Each edited model is compared with the unedited backbone built from the same
weights file: every layer not edited keeps its weights exactly, and where the
edit is an identity (an Identity layer, a fresh copy of a layer given its
weights) the outputs are the original's.
"""

from __future__ import annotations

import json

import pytest

import surgery
from surgery.model.graph import model_nodes

from graph_helpers import assert_close, assert_differs, assert_weights_kept, backbone, images, predict, run, spec

# Layers inside a residual block of each backbone (names as keras.applications builds them).
BLOCKS = {
    "resnet50": {
        "inside": "conv3_block2_1_relu",  # on the residual path of conv3_block2
        "fork": "conv3_block1_out",  # read by both paths of conv3_block2 (its convs and its Add)
        "conv": "conv3_block2_2_conv",
        "bn": "conv3_block2_2_bn",
        "activation": "conv3_block2_1_relu",
    },
    "mobilenetv2": {
        "inside": "block_2_expand_relu",  # on the residual path of block_2
        "fork": "block_1_project_BN",  # read by block_2_expand and by block_2_add
        "conv": "block_2_depthwise",
        "bn": "block_2_expand_BN",
        "activation": "block_2_expand_relu",
    },
}
WEIGHTS = {"resnet50": "resnet50_notop_weights", "mobilenetv2": "mobilenetv2_notop_weights"}


# ResNet50 in the full suite only: MobileNetV2 has residual blocks and forks too, at a third of the cost.
@pytest.fixture(scope="module", params=[pytest.param("mobilenetv2"), pytest.param("resnet50", marks=pytest.mark.slow)])
def net(request):
    """(backbone name, its step with a weights file, the unedited model, the names to edit)."""
    name = request.param
    step = backbone(name, request.getfixturevalue(WEIGHTS[name]))
    return name, step, surgery.build(spec(step)), BLOCKS[name]


X = images((2, 32, 32, 3))


def readers(model, layer_name) -> list:
    """Names of the layers that read ``layer_name``'s output in ``model``'s graph."""
    layer = model.get_layer(layer_name)
    return sorted(
        n.operation.name
        for n in model_nodes(model)
        if any(t._keras_history.operation is layer for t in n.input_tensors)
    )


@pytest.mark.slow
def test_identity_inserted_inside_a_block_and_at_a_fork_changes_nothing(net):
    _, step, original, names = net
    model = surgery.build(
        spec(
            step,
            {"op": "insert", "after": names["inside"], "layer": "Identity", "name": "probe_a"},
            {"op": "insert", "after": names["fork"], "layer": "Identity", "name": "probe_b"},
        )
    )
    assert len(model.layers) == len(original.layers) + 2
    # The probe took the place of its layer's output for every reader, on both paths of the block.
    assert readers(model, names["inside"]) == ["probe_a"]
    assert readers(model, "probe_a") == readers(original, names["inside"])
    assert readers(model, "probe_b") == readers(original, names["fork"])
    assert len(readers(original, names["fork"])) == 2
    assert assert_weights_kept(model, original) > 100
    assert_close(predict(model, X)[0], predict(original, X)[0])


@pytest.mark.slow
def test_trainable_layer_inserted_before_a_conv_leaves_other_weights_alone(net):
    _, step, original, names = net
    state = run(
        spec(
            step,
            {
                "op": "insert",
                "before": names["conv"],
                "layer": "BatchNormalization",
                "config": {"epsilon": 0.5},
                "name": "extra_bn",
            },
        )
    )
    model = state.model
    assert readers(model, "extra_bn") == [names["conv"]]
    assert state.notes[-1].startswith(f'insert: BatchNormalization "extra_bn" before {names["conv"]} -> ')
    assert assert_weights_kept(model, original, skip={"extra_bn"}) > 100
    assert tuple(model.output.shape) == tuple(original.output.shape)
    assert_differs(predict(model, X)[0], predict(original, X)[0])  # epsilon 0.5 is not an identity


@pytest.mark.slow
def test_replace_with_a_fresh_copy_keeps_weights_and_outputs(net):
    _, step, original, names = net
    target = original.get_layer(names["conv"])
    config = json.loads(json.dumps(target.get_config()))  # what a user would paste into a spec
    for edit in (
        {"op": "replace", "target": names["conv"]},
        {"op": "replace", "target": names["conv"], "layer": type(target).__name__, "config": config},
    ):
        state = run(spec(step, edit))
        new = state.model.get_layer(names["conv"])
        assert new is not target and type(new) is type(target)
        assert "weights kept (" in state.notes[-1]
        assert assert_weights_kept(state.model, original) > 100  # the new layer's weights included
        assert_close(predict(state.model, X)[0], predict(original, X)[0])


def test_replace_with_another_layer(net):
    _, step, original, names = net
    model = surgery.build(
        spec(
            step,
            {"op": "replace", "target": names["activation"], "layer": "Activation", "config": {"activation": "swish"}},
        )
    )
    assert model.get_layer(names["activation"]).get_config()["activation"] in ("swish", "silu")  # Keras calls it silu
    assert len(model.layers) == len(original.layers)
    assert assert_weights_kept(model, original) > 100
    assert_differs(predict(model, X)[0], predict(original, X)[0])


@pytest.mark.slow
def test_replace_with_other_weight_shapes_says_so(net):
    _, step, original, names = net
    state = run(spec(step, {"op": "replace", "target": names["conv"], "config": {"kernel_size": [5, 5]}}))
    assert "new weights, the shapes differ" in state.notes[-1]
    assert "(5, 5, " in state.notes[-1]
    assert tuple(state.model.get_layer(names["conv"]).get_weights()[0].shape[:2]) == (5, 5)
    assert assert_weights_kept(state.model, original, skip={names["conv"]}) > 100


@pytest.mark.slow
def test_replace_in_a_frozen_backbone_keeps_the_flag_with_the_weights(net):
    """In a frozen backbone a changed copy that keeps the weights stays frozen (a fresh, trainable copy would
    start training the pretrained weights); one with new weights, random ones, trains."""
    _, step, _, names = net
    freeze = {"op": "freeze", "layers": ":"}
    kept = surgery.build(
        spec(step, freeze, {"op": "replace", "target": names["conv"], "config": {"activation": "relu"}})
    )
    assert kept.get_layer(names["conv"]).trainable is False
    new = surgery.build(
        spec(step, freeze, {"op": "replace", "target": names["conv"], "config": {"kernel_size": [5, 5]}})
    )
    assert new.get_layer(names["conv"]).trainable is True
    assert new.get_layer(names["bn"]).trainable is False


def test_remove_a_layer_inside_a_block(net):
    _, step, original, names = net
    model = surgery.build(spec(step, {"op": "remove", "target": names["bn"]}))
    assert names["bn"] not in [layer.name for layer in model.layers]
    assert len(model.layers) == len(original.layers) - 1
    # Its readers now read what it read.
    source = [n for n in model_nodes(original) if n.operation.name == names["bn"]][0]
    feeder = source.input_tensors[0]._keras_history.operation.name
    assert readers(model, feeder) == sorted(
        set(readers(original, feeder)) - {names["bn"]} | set(readers(original, names["bn"]))
    )
    assert assert_weights_kept(model, original) > 100
    assert tuple(model.output.shape) == tuple(original.output.shape)


@pytest.mark.slow
def test_insert_then_remove_gives_back_the_original(net):
    _, step, original, names = net
    model = surgery.build(
        spec(
            step,
            {"op": "insert", "after": names["fork"], "layer": "Identity", "name": "probe"},
            {"op": "remove", "target": "probe"},
        )
    )
    assert [layer.name for layer in model.layers][1:] == [layer.name for layer in original.layers][1:]
    assert_close(predict(model, X)[0], predict(original, X)[0])


@pytest.mark.slow
def test_edit_spec_builds_with_kept_weights(resnet50_notop_weights):
    """specs/resnet50_edit.json: an insert, a replace and a remove in one spec, then a new head."""
    from helpers import load_spec_json, with_weights

    state = run(with_weights(load_spec_json("resnet50_edit.json"), resnet50_notop_weights))
    model = state.model
    assert [n.split(":")[0] for n in state.notes[1:4]] == ["insert", "replace", "remove"]
    assert readers(model, "conv4_block6_2_dropout") == ["conv4_block6_3_conv"]
    assert model.get_layer("conv5_block3_2_relu").get_config()["activation"] in ("swish", "silu")  # Keras calls it silu
    assert readers(model, "conv5_block3_add") == ["global_average_pooling2d"]
    reference = surgery.build(spec(backbone("resnet50", resnet50_notop_weights, side=224)))
    assert assert_weights_kept(model, reference, skip={"dense"}) > 300
    frozen = {layer.name for layer in model.layers if layer.weights and not layer.trainable}
    assert "conv3_block4_3_bn" in frozen and "conv4_block1_1_conv" not in frozen
