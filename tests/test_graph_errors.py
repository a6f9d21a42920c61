"""Bad input to the graph ops: one line naming the spec file, the step and op, what is wrong and what is valid."""

from __future__ import annotations

import pytest

from graph_helpers import backbone, spec
from helpers import assert_one_error_line, write_spec

RESNET = backbone("resnet50")
CUT = {"op": "slice", "to": "conv4_block6_out"}
EARLY = {"op": "append", "input": "conv3_block4_out", "layer": "GlobalAveragePooling2D", "as": "early"}
LATE = {"op": "append", "input": "conv4_block6_out", "layer": "GlobalAveragePooling2D", "as": "late"}
SMALL_VGG = [
    backbone("vgg16"),
    {"op": "append", "layer": "Flatten"},
    {"op": "append", "layer": "Dense", "config": {"units": 2}},
]

CASES = {
    # branches and names
    "branch from a layer that does not exist": (
        [RESNET, CUT, {"op": "append", "input": "conv4_block6_outt", "layer": "Flatten"}],
        ['steps[2] (append): no named tensor or layer "conv4_block6_outt"; did you mean "conv4_block6_out"?'],
    ),
    "merge an unknown name": (
        [RESNET, CUT, EARLY, {"op": "merge", "layer": "Add", "inputs": ["erly", "zzz"]}],
        ['steps[3] (merge): no named tensor or layer "erly"; did you mean "early"?'],
    ),
    "name nothing like anything": (
        [RESNET, CUT, EARLY, {"op": "outputs", "tensors": ["qqqqqqqqqq"]}],
        ['steps[3] (outputs): no named tensor or layer "qqqqqqqqqq"; named tensors: early'],
    ),
    "name stranded by a slice with a new input": (
        [
            backbone("vgg16", **{"as": "full"}),
            {"op": "slice", "layers": "4:"},
            {"op": "merge", "layer": "Add", "inputs": ["full", "block5_pool"]},
        ],
        ['steps[2] (merge): tensor "full" is not computed from the model\'s input any more'],
    ),
    # merge shapes
    "add tensors of different shapes": (
        [RESNET, CUT, EARLY, LATE, {"op": "merge", "layer": "Add", "inputs": ["early", "late"]}],
        ["steps[4] (merge): Add needs tensors of the same shape; got early (None, 512), late (None, 1024)"],
    ),
    "concatenate feature maps of different sizes": (
        [RESNET, CUT, {"op": "merge", "layer": "Concatenate", "inputs": ["conv3_block4_out", "conv4_block6_out"]}],
        [
            "steps[2] (merge): Concatenate on axis -1 needs the same shape on every other axis; "
            "got conv3_block4_out (None, 4, 4, 512), conv4_block6_out (None, 2, 2, 1024)"
        ],
    ),
    "subtract three tensors": (
        [RESNET, CUT, EARLY, {"op": "merge", "layer": "Subtract", "inputs": ["early", "early", "early"]}],
        ["steps[3] (merge): Subtract takes exactly 2 inputs, got 3"],
    ),
    "merge with a class that is not a merge": (
        [RESNET, CUT, EARLY, {"op": "merge", "layer": "Dense", "inputs": ["early", "early"]}],
        ['steps[3] (merge): layer: "Dense" is not one of "Add", "Subtract"'],
    ),
    # outputs
    "two outputs with one name": (
        [
            RESNET,
            CUT,
            EARLY,
            LATE,
            {"op": "outputs", "tensors": [{"tensor": "early", "name": "x"}, {"tensor": "late", "name": "x"}]},
        ],
        ['steps[4] (outputs): two outputs are named "x"; output names must differ'],
    ),
    "one layer as two outputs": (
        [RESNET, CUT, EARLY, {"op": "outputs", "tensors": ["early", "global_average_pooling2d"]}],
        ['steps[3] (outputs): two outputs would be named "global_average_pooling2d"'],
    ),
    # insert / replace / remove
    "insert after an unknown layer": (
        [RESNET, {"op": "insert", "after": "conv2_block1_1_reluu", "layer": "Identity"}],
        ['steps[1] (insert): no layer named "conv2_block1_1_reluu"; did you mean "conv2_block1_1_relu"?'],
    ),
    "insert with both after and before": (
        [RESNET, {"op": "insert", "after": "conv1_conv", "before": "conv1_bn", "layer": "Identity"}],
        ['steps[1] (insert): give exactly one of "after" or "before"'],
    ),
    "insert before a merge": (
        [RESNET, {"op": "insert", "before": "conv2_block1_add", "layer": "Identity"}],
        [
            'steps[1] (insert): "conv2_block1_add" (Add) takes 2 input tensors (conv2_block1_0_bn, conv2_block1_3_bn); '
            "insert before works on single-input layers"
        ],
    ),
    "insert a Lambda": (
        [RESNET, {"op": "insert", "after": "conv1_conv", "layer": "Lambda"}],
        ['steps[1] (insert): layer "Lambda" is refused'],
    ),
    "remove where the shapes differ": (
        [RESNET, {"op": "remove", "target": "conv2_block1_3_conv"}],
        [
            'steps[1] (remove): cannot remove "conv2_block1_3_conv" (Conv2D): its input (None, 8, 8, 64) and output '
            "(None, 8, 8, 256) shapes differ"
        ],
    ),
    "remove a merge": (
        [RESNET, {"op": "remove", "target": "conv2_block1_add"}],
        ['steps[1] (remove): "conv2_block1_add" (Add) takes 2 input tensors'],
    ),
    "remove the input layer": (
        # slice "1:" gives the model an input named after the first kept layer
        [RESNET, {"op": "slice", "layers": "1:"}, {"op": "remove", "target": "conv1_pad_input"}],
        ['steps[2] (remove): "conv1_pad_input" is the model\'s input layer, which cannot be edited'],
    ),
    "replace changes a shape the next layer needs": (
        [RESNET, {"op": "replace", "target": "conv2_block1_2_conv", "config": {"filters": 32}}],
        [
            'steps[1] (replace): layer "conv2_block1_2_bn" (BatchNormalization) cannot take its new input '
            "(None, 8, 8, 32)",
            "expected axis 3 of input shape to have value 64",
        ],
    ),
    "replace with a bad config": (
        [RESNET, {"op": "replace", "target": "conv1_conv", "config": {"filterz": 3}}],
        ["steps[1] (replace): bad config for Conv2D: ", "filterz"],
    ),
    "replace an unknown layer": (
        [RESNET, {"op": "replace", "target": "conv1_cnv"}],
        ['steps[1] (replace): no layer named "conv1_cnv"; did you mean "conv1_conv"?'],
    ),
    # adapt_input
    "adapt below the minimum size": (
        [RESNET, {"op": "adapt_input", "size": [16, 16]}],
        ["steps[1] (adapt_input): size [16, 16]: resnet50 needs at least 32x32 pixels"],
    ),
    "adapt the size of a model with a Flatten/Dense head": (
        SMALL_VGG + [{"op": "adapt_input", "size": [64, 64]}],
        ['steps[3] (adapt_input): layer "dense" (Dense) cannot take its new input (None, 2048)'],
    ),
    "adapt channels behind per-channel preprocessing": (
        [backbone("efficientnetb0"), {"op": "adapt_input", "channels": 1}],
        ['steps[1] (adapt_input): cannot adapt the input channels: "normalization', "(Normalization)"],
    ),
    "zeros rule with fewer channels": (
        [RESNET, {"op": "adapt_input", "channels": 2, "rule": "zeros"}],
        ['steps[1] (adapt_input): rule "zeros" needs more channels than the kernel has (3); got 2'],
    ),
    "a rule without channels": (
        [RESNET, {"op": "adapt_input", "size": [64, 64], "rule": "mean"}],
        ['steps[1] (adapt_input): "rule" applies when "channels" is given'],
    ),
    # preprocess
    "preprocess like an unknown backbone": (
        [RESNET, {"op": "preprocess", "backbone": "resnet05"}],
        ['steps[1] (preprocess): unknown backbone "resnet05"; did you mean "resnet50"?'],
    ),
    "preprocess twice": (
        [RESNET, {"op": "preprocess"}, {"op": "preprocess"}],
        ["steps[2] (preprocess): no preprocessing left to add"],
    ),
    "preprocess a vector input": (
        [
            backbone("resnet50", pooling="avg"),
            {"op": "append", "layer": "Dense", "config": {"units": 4}},
            {"op": "slice", "layers": "-1:"},
            {"op": "preprocess"},
        ],
        [
            "steps[3] (preprocess): preprocess needs one image input (None, height, width, channels); "
            "the model has (None, 2048)"
        ],
    ),
}


# One case of each kind runs in the quick lane (each builds ResNet50, about a second); the full suite runs all.
QUICK = {
    "branch from a layer that does not exist",
    "add tensors of different shapes",
    "two outputs with one name",
    "insert before a merge",
    "remove where the shapes differ",
    "replace changes a shape the next layer needs",
    "adapt below the minimum size",
    "preprocess twice",
}
assert QUICK <= CASES.keys(), QUICK - CASES.keys()


@pytest.mark.parametrize("case", [c if c in QUICK else pytest.param(c, marks=pytest.mark.slow) for c in sorted(CASES)])
def test_bad_graph_step(case, cli, tmp_path):
    steps, fragments = CASES[case]
    path = write_spec(tmp_path, spec(*steps))
    result = cli("apply", path, "-o", tmp_path / "out.keras")
    assert result.exit_code == 2, result.stdout + result.stderr
    line = assert_one_error_line(result.stderr, *fragments)
    assert line.startswith(f"error: {path}: steps[")
    assert not (tmp_path / "out.keras").exists()
