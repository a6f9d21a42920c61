"""freeze / unfreeze: named bounds (`from`, `to`), slices out of range refused, and notes that count
frozen layers as the layer table and the plot do (summary.trainable_status) in correct English.

The refusals' exact lines are golden files: tests/bad_specs/19, 20 and 90-96.
"""

from __future__ import annotations

import pytest

import surgery
from surgery import plan

from helpers import load_spec_json, save_tiny_backbone, with_weights

VGG16 = {"op": "backbone", "name": "vgg16", "weights": None, "include_top": False, "input_shape": [32, 32, 3]}
# VGG16's layers: 0 input_layer, 1-3 block1 (conv1, conv2, pool), 4-6 block2, 7-10 block3, 11-14 block4, 15-18 block5.


def frozen_after(*steps) -> list[int]:
    """Indices of the layers that do not train after the steps (weightless ones by their flag)."""
    model = surgery.build({"surgery": 1, "steps": [VGG16, *steps]})
    return [i for i, layer in enumerate(model.layers) if not layer.trainable]


@pytest.mark.parametrize(
    "selector, frozen",
    [
        ({"from": "block4_conv1"}, list(range(11, 19))),
        ({"to": "block1_pool"}, [0, 1, 2, 3]),
        ({"from": "block2_conv1", "to": "block3_pool"}, list(range(4, 11))),
        ({"from": "block3_conv3", "to": "block3_conv3"}, [9]),
        # A union with the other selectors, as they unite with each other.
        ({"from": "block5_conv1", "names": ["block1_*"]}, [1, 2, 3, 15, 16, 17, 18]),
        ({"to": "block1_conv1", "layers": "-2:", "types": ["MaxPooling2D"]}, [0, 1, 3, 6, 10, 14, 17, 18]),
    ],
)
def test_freeze_by_named_bounds(selector, frozen, keras):
    assert frozen_after({"op": "freeze", **selector}) == frozen


def test_unfreeze_by_named_bounds_keeps_batchnorm_frozen(tmp_path, keras):
    tiny = save_tiny_backbone(
        tmp_path / "tiny.keras", keras
    )  # image, scale, conv1, bn1, relu1, conv2, bn2, relu2, pool
    spec = {
        "surgery": 1,
        "steps": [
            {"op": "backbone", "name": "keras_file", "path": str(tiny)},
            {"op": "freeze", "layers": ":"},
            {"op": "unfreeze", "from": "conv2", "to": "relu2"},
        ],
    }
    planned = plan(spec)
    assert planned.changes[-1].note == (
        "unfreeze: 3 layers selected (conv2 .. relu2), 1 with weights now trainable; "
        "1 BatchNormalization layer kept frozen (inference mode)"
    )
    model = planned.state.model
    assert [layer.name for layer in model.layers if layer.trainable_weights] == ["conv2"]


def test_freeze_note_counts_frozen_layers_as_the_table_and_the_plot_do(keras):
    """The README's figures: 6 layers selected, 2 without weights, so 4 frozen; the plot says 4 of 9."""
    planned = plan(with_weights(load_spec_json("vgg16_cut_extend.json"), None))
    assert planned.changes[-1].note == (
        "freeze: 6 layers selected (block3_conv2 .. dense), 4 with weights now frozen, 1,297,186 params"
    )
    from surgery.report.summary import trainable_status

    status = [trainable_status(layer) for layer in planned.state.model.layers]
    assert (status.count("frozen"), len(status) - status.count("no weights")) == (4, 9)


@pytest.mark.parametrize(
    "step, note",
    [
        (
            {"op": "freeze", "names": ["block1_conv1"]},
            "freeze: 1 layer selected (block1_conv1), 1 with weights now frozen, 1,792 params",
        ),
        (
            {"op": "freeze", "names": ["block1_pool"]},
            "freeze: 1 layer selected (block1_pool), 0 with weights now frozen, 0 params",
        ),
    ],
)
def test_notes_say_one_layer_not_one_layers(step, note, keras):
    assert plan({"surgery": 1, "steps": [VGG16, step]}).changes[-1].note == note


def test_a_training_stage_takes_named_bounds_too():
    """The stages' freeze and unfreeze share the ops' selector schema."""
    spec = {
        "surgery": 1,
        "steps": [VGG16, {"op": "freeze", "layers": ":"}],
        "train": {"stages": [{"epochs": 1, "unfreeze": {"from": "block5_conv1"}}]},
    }
    surgery.load(spec)  # validates without TensorFlow
    spec["train"]["stages"][0]["unfreeze"] = {"form": "block5_conv1"}
    with pytest.raises(surgery.SpecError, match='unknown key "form"; did you mean "from"'):
        surgery.load(spec)


def test_a_slice_may_start_exactly_as_many_layers_back_as_there_are_and_not_one_more(keras):
    """VGG16 has 19 layers here: "-19:" is every layer (as in Python), "-20:" is past the first one."""
    assert frozen_after({"op": "freeze", "layers": "-19:"}) == list(range(19))
    with pytest.raises(surgery.SurgeryError, match="layer index -20 is out of range; the model has 19 layers"):
        frozen_after({"op": "freeze", "layers": "-20:"})


def test_a_name_like_no_layer_says_how_many_layers_there_are(keras):
    with pytest.raises(
        surgery.SurgeryError,
        match=r'names: "qqqqqqqq" matches no layer; the model has 19 layers \(see the layer table\)',
    ):
        frozen_after({"op": "freeze", "names": ["qqqqqqqq"]})


def _nested_backbone(path, keras):
    """image -> block (conv_a, bn_a, and a sub-model "inner" holding conv_b, bn_b) -> pool: a BatchNormalization
    layer one and one two models deep, as in a backbone saved with its blocks as models."""
    keras.utils.set_random_seed(3)
    x = inner_in = keras.Input((6, 6, 4))
    x = keras.layers.Conv2D(4, 1, name="conv_b")(x)
    inner = keras.Model(inner_in, keras.layers.BatchNormalization(name="bn_b")(x), name="inner")
    x = block_in = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, name="conv_a")(x)
    x = keras.layers.BatchNormalization(name="bn_a")(x)
    block = keras.Model(block_in, inner(x), name="block")
    image = keras.Input((8, 8, 3), name="image")
    keras.Model(image, keras.layers.GlobalAveragePooling2D(name="pool")(block(image))).save(str(path))
    return path


def test_unfreeze_keeps_batchnorm_frozen_at_every_depth_and_counts_each(tmp_path, keras):
    """Unfreezing a block that is a model keeps its BatchNormalization layers frozen however deep they sit
    (two here, at depths one and two), counts both, and calls the block "partly" trainable, as the layer
    table does."""
    from surgery.report.summary import trainable_status

    path = _nested_backbone(tmp_path / "nested.keras", keras)
    steps = [{"op": "backbone", "name": "keras_file", "path": str(path)}, {"op": "freeze", "layers": ":"}]
    planned = plan({"surgery": 1, "steps": [*steps, {"op": "unfreeze", "names": ["block"]}]})
    assert planned.changes[-1].note == (
        "unfreeze: 1 layer selected (block), 1 with weights now trainable; "
        "2 BatchNormalization layers kept frozen (inference mode)"
    )
    block = planned.state.model.get_layer("block")
    inner = block.get_layer("inner")
    assert not block.get_layer("bn_a").trainable and not inner.get_layer("bn_b").trainable
    assert block.get_layer("conv_a").trainable and inner.get_layer("conv_b").trainable
    assert (trainable_status(block), trainable_status(inner)) == ("partly", "partly")
    # The whole model's frozen variables are two and three models down: "partly" only if the walk goes there.
    assert trainable_status(planned.state.model) == "partly"

    trained = plan(
        {"surgery": 1, "steps": [*steps, {"op": "unfreeze", "names": ["block"], "batchnorm": "train"}]}
    ).state.model.get_layer("block")
    assert trained.get_layer("bn_a").trainable and trained.get_layer("inner").get_layer("bn_b").trainable
    assert trainable_status(trained) == "trainable"


def test_trainable_status_of_each_kind_of_layer(keras):
    """Frozen, trainable, no weights, a trainable BatchNormalization (its moving statistics never train: still
    "trainable"), and a LoRA Dense (its kernel frozen around trainable LoRA matrices: "partly")."""
    from surgery.report.summary import trainable_status

    def built(layer, shape=(3, 4)):
        layer.build(shape)
        return layer

    frozen = built(keras.layers.Dense(2))
    frozen.trainable = False
    lora = built(keras.layers.Dense(2))
    lora.enable_lora(1)
    statuses = [
        trainable_status(layer)
        for layer in (
            frozen,
            built(keras.layers.Dense(2)),
            keras.layers.Flatten(),
            built(keras.layers.BatchNormalization()),
            lora,
        )
    ]
    assert statuses == ["frozen", "trainable", "no weights", "trainable", "partly"]
