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
