"""surgery plan: per step, what changed, built with random weights; --plot draws the graph."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from helpers import SPECS, assert_one_error_line


@pytest.mark.slow
def test_plan_prints_each_steps_changes_without_a_weights_file(cli):
    # The spec asks for ImageNet weights; plan builds with random ones, so it runs offline.
    result = cli("plan", SPECS / "resnet50_two_heads.json")
    assert result.exit_code == 0, result.stderr
    text = result.stdout
    for fragment in [
        "steps[0] backbone: resnet50: 175 layers, 23,587,712 params (random init)",
        "    params 0 -> 23,587,712; trainable 0 -> 23,534,592",
        "steps[1] slice: kept layers 0..142",
        "    removed 32: conv5_block1_1_conv, conv5_block1_1_bn, conv5_block1_1_relu, conv5_block1_2_conv, "
        "conv5_block1_2_bn, ... (26 more), conv5_block3_out",
        "    params 23,587,712 -> 8,589,184; trainable 23,534,592 -> 8,558,592",
        "    output (None, 14, 14, 1024)",
        "steps[2] freeze:",
        # The layers with weights only (53 convolutions, 33 BatchNormalizations), as the freeze note counts.
        "    frozen 86: conv1_conv, conv1_bn, conv2_block1_1_conv, conv2_block1_1_bn, conv2_block1_2_conv, "
        "... (80 more), conv4_block6_3_bn\n",
        "    params 8,589,184 -> 8,589,184; trainable 8,558,592 -> 0",
        'steps[4] append: Dense "classes" -> (None, 10), 10,250 params',
        "    added 1: classes",
        "steps[7] outputs: 2 (classes (None, 10), embedding (None, 128))",
        "    output (None, 10), (None, 128)",
        'steps[5] append: Dense "embedding_dense" on pooled -> (None, 128), 131,200 params\n'
        "    added 1: embedding_dense\n",  # the classes head is set aside for the outputs step, not removed
        'model "resnet50_two_heads": 147 layers, 8,730,634 params (141,450 trainable, 8,589,184 frozen); '
        "built with random weights",
    ]:
        assert fragment in text, f"{fragment!r} not in:\n{text}"


@pytest.mark.slow
def test_plan_json_names_inserted_replaced_and_removed_layers(cli):
    result = cli("plan", SPECS / "resnet50_edit.json", "--json")
    assert result.exit_code == 0, result.stderr
    steps = json.loads(result.stdout)
    assert [s["op"] for s in steps] == ["backbone", "insert", "replace", "remove", "freeze", "append", "append"]
    insert, replace, remove, freeze = steps[1:5]
    assert (insert["added"], insert["removed"], insert["replaced"]) == (["conv4_block6_2_dropout"], [], [])
    assert insert["params"] == [23_587_712, 23_587_712]
    assert (replace["added"], replace["replaced"]) == ([], ["conv5_block3_2_relu"])
    assert (remove["removed"], remove["outputs"]) == (["conv5_block3_out"], ["(None, 7, 7, 2048)"])
    assert len(freeze["frozen"]) == 48 and freeze["frozen"][0] == "conv1_conv"  # the 78 selected, with weights
    assert freeze["trainable"][0] - freeze["trainable"][1] == 1_449_984  # conv1_* .. conv3_*, as Keras counts
    assert steps[-1]["outputs"] == ["(None, 5)"]


@pytest.mark.parametrize("suffix", [".svg", ".png"])
def test_plot_marks_frozen_layers(cli, tmp_path, suffix):
    target = tmp_path / f"graph{suffix}"
    result = cli("plan", SPECS / "vgg16_grayscale.json", "--plot", target)
    assert result.exit_code == 0, result.stderr
    assert f"wrote {target} (22 layers, 7 of 14 with weights frozen)" in result.stdout
    if suffix == ".png":
        from PIL import Image

        with Image.open(target) as image:
            assert image.format == "PNG" and image.size[1] > 22 * 40
        return
    root = ET.parse(target).getroot()
    ns = "{http://www.w3.org/2000/svg}"
    texts = [t.text for t in root.iter(f"{ns}text")]
    for name in ("preprocess", "block1_conv1", "block5_pool", "global_average_pooling2d", "dense"):
        assert name in texts
    dashed = [r for r in root.iter(f"{ns}rect") if r.get("stroke-dasharray")]
    assert len(dashed) == 7 + 1  # the frozen layers, and the legend's sample
    assert texts.count("frozen") == 7 + 1


def test_plot_to_an_unknown_format_fails_before_building(cli, tmp_path):
    result = cli("plan", SPECS / "vgg16_grayscale.json", "--plot", tmp_path / "graph.pdf")
    assert result.exit_code == 2
    assert_one_error_line(result.stderr, "--plot: cannot plot to graph.pdf: give a file ending in .svg or .png")


def test_validating_the_graph_specs_imports_no_tensorflow():
    code = (
        "import sys\nfrom surgery.cli import main\n"
        f"for spec in {[str(p) for p in sorted(SPECS.glob('*.json')) if 'digits' not in p.name]!r}:\n"
        "    try:\n        main(['validate', spec])\n    except SystemExit as e:\n        assert e.code == 0, spec\n"
        "print('LOADED:' + ','.join(m for m in ('tensorflow', 'keras', 'keras_hub') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "LOADED:"


def test_plot_layout_statuses_and_lanes(keras):
    """Statuses as training sees them, and a shortcut edge that runs beside the boxes it skips, never across."""
    from surgery.report.plot import BOX_W, layout

    layers = keras.layers
    x = inputs = keras.Input((8, 8, 3), name="x")
    a = layers.Conv2D(4, 3, padding="same", name="a")(x)
    b = layers.BatchNormalization(name="b")(layers.Conv2D(4, 3, padding="same", name="conv_b")(a))
    c = layers.ReLU(name="c")(layers.Conv2D(4, 3, padding="same", name="conv_c")(b))
    model = keras.Model(inputs, layers.Add(name="sum")([a, c]))
    model.get_layer("conv_b").trainable = False
    lay = layout(model)
    status = {box.name: box.status for box in lay.boxes}
    assert status == {
        "x": "no weights",
        "a": "trainable",
        "conv_b": "frozen",
        "b": "trainable",
        "conv_c": "trainable",
        "c": "no weights",
        "sum": "no weights",
    }
    index = {box.name: i for i, box in enumerate(lay.boxes)}
    lanes = [(s, t, lane) for s, t, lane in lay.edges if lane is not None]
    assert [(lay.boxes[s].name, lay.boxes[t].name) for s, t, _ in lanes] == [("a", "sum")]
    _, _, lane = lanes[0]
    skipped = [box for box in lay.boxes if lay.boxes[index["a"]].rank < box.rank < lay.boxes[index["sum"]].rank]
    assert len(skipped) == 4 and all(box.x + BOX_W < lane for box in skipped)


def test_apply_plots_the_model_it_writes(cli, tmp_path):
    target = tmp_path / "graph.svg"
    result = cli(
        "apply", SPECS / "vgg16_grayscale.json", "--weights", "none", "-o", tmp_path / "m.keras", "--plot", target
    )
    assert result.exit_code == 0, result.stderr
    assert f"wrote {target} (22 layers, 7 of 14 with weights frozen)" in result.stdout
    bad = cli(
        "apply",
        SPECS / "vgg16_grayscale.json",
        "--weights",
        "none",
        "-o",
        tmp_path / "n.keras",
        "--plot",
        tmp_path / "graph.gif",
    )
    assert bad.exit_code == 2 and not (tmp_path / "n.keras").exists()
    assert_one_error_line(bad.stderr, "--plot: cannot plot to graph.gif")
