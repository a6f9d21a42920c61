"""The example third-party plugin, plugins/surgery-tinynet, used as a user would use it.

It must be installed (`pip install -e plugins/surgery-tinynet`, as .ci/run
does): these tests fail at import otherwise, rather than skip and hide it.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from fault_plugins import no_plugin_selection_from_the_shell  # noqa: F401
from jsonschema import Draft202012Validator

import surgery
import surgery_tinynet  # noqa: F401  (not installed? pip install -e plugins/surgery-tinynet)
from surgery.testing import check_plugin

from helpers import ROOT, assert_one_error_line, write_spec

EXAMPLE = ROOT / "plugins" / "surgery-tinynet" / "examples" / "tinynet_se_head.json"
DOCS = ROOT / "docs" / "plugins.md"


def example() -> dict:
    return json.loads(EXAMPLE.read_text())


def with_steps(*steps, **top) -> dict:
    return {"surgery": 1, "name": "t", **top, "steps": list(steps)}


BACKBONE = {"op": "backbone", "name": "tinynet", "weights": None, "include_top": False, "input_shape": [32, 32, 3]}


def test_tinynet_passes_the_conformance_helper():
    checked = check_plugin(surgery_tinynet, name="tinynet")
    assert checked.ops == ["head", "squeeze_excite"]
    assert checked.backbones == ["tinynet"] and checked.exporters == ["layers_json"]


@pytest.mark.slow
def test_example_spec_applies_through_the_cli(cli, tmp_path, keras):
    # The example writes only where -o points (tests/test_docs_commands.py runs it as documented); a spec's
    # "outputs" entry for the plugin's exporter is written relative to the spec.
    spec = write_spec(tmp_path, {**example(), "outputs": {"layers_json": "tinynet_se_head.layers.json"}}, EXAMPLE.name)
    done = cli("apply", spec, "-o", tmp_path / "out")
    assert done.exit_code == 0, done.stderr
    assert "squeeze_excite: 4 layers after block2_relu (ratio 4)" in done.stdout
    assert "head: GlobalAveragePooling2D -> Dropout -> Dense, 10 classes" in done.stdout
    table = json.loads((tmp_path / "tinynet_se_head.layers.json").read_text())["layers"]
    names = [row["name"] for row in table]
    assert names[names.index("block2_relu") + 1 : names.index("block2_pool")] == [
        "block2_relu_se_squeeze",
        "block2_relu_se_reduce",
        "block2_relu_se_expand",
        "block2_relu_se_excite",
    ]
    assert [row["trainable"] for row in table if row["name"] == "block1_conv"] == ["no"]
    model = keras.saving.load_model(tmp_path / "out" / "tinynet_se_head.keras", safe_mode=True)
    assert tuple(model.output.shape) == (None, 10)
    assert [layer.name for layer in model.layers] == names


def test_schema_contains_the_plugins_ops_backbone_and_exporter(cli):
    done = cli("schema")
    assert done.exit_code == 0, done.stderr
    schema = json.loads(done.stdout)
    step = schema["$defs"]["step"]
    assert {"head", "squeeze_excite"} <= set(step["properties"]["op"]["enum"])
    head = next(rule["then"] for rule in step["allOf"] if rule["if"]["properties"]["op"]["const"] == "head")
    assert head["required"] == ["op", "classes"] and head["properties"]["pooling"]["enum"] == ["avg", "max", "flatten"]
    assert "layers_json" in schema["properties"]["outputs"]["properties"]
    backbone = next(rule["then"] for rule in step["allOf"] if rule["if"]["properties"]["op"]["const"] == "backbone")
    tinynet = next(rule["then"] for rule in backbone["allOf"] if rule["if"]["properties"]["name"]["const"] == "tinynet")
    assert tinynet["properties"]["width"]["minimum"] == 1 and "tinynet" in backbone["properties"]["name"]["enum"]
    # What an editor does with it: the example validates, a bad head does not.
    validator = Draft202012Validator(schema)
    assert not list(validator.iter_errors(example()))
    bad = example()
    bad["steps"][2]["classes"] = 0
    assert list(validator.iter_errors(bad))


def test_plugins_and_ops_name_the_distribution_and_the_plugin(cli):
    done = cli("plugins", "--json")
    entry = next(r for r in json.loads(done.stdout) if r["name"] == "tinynet")
    assert entry == {
        "name": "tinynet",
        "distribution": "surgery-tinynet",
        "version": "0.1.0",
        "builtin": False,
        "status": "ok",
        "error": None,
        "ops": ["head", "squeeze_excite"],
        "backbones": ["tinynet"],
        "exporters": ["layers_json"],
        "channel_rules": [],
    }
    ops = cli("ops").stdout
    assert re.search(r"^head\s+tinynet\s+Pooling, dropout", ops, re.M), ops


@pytest.mark.parametrize(
    "step, fragments",
    [
        ({"op": "head", "classes": 0}, ["steps[1] (head)", "classes: 0 is too small; the minimum is 1"]),
        ({"op": "head", "classes": 1}, ["steps[1] (head)", 'use "activation": "sigmoid"']),
        (
            {"op": "squeeze_excite", "after": "block2_relu", "ratio": 4, "gate": "hard"},
            ["steps[1] (squeeze_excite)", 'unknown key "gate"'],
        ),
    ],
)
def test_validate_reports_bad_plugin_params_in_one_line(cli, tmp_path, step, fragments):
    done = cli("validate", write_spec(tmp_path, with_steps(BACKBONE, step)))
    assert done.exit_code == 2
    assert_one_error_line(done.stderr, *fragments)


def test_an_op_error_at_build_time_is_one_line(tmp_path, cli):
    spec = write_spec(tmp_path, with_steps(BACKBONE, {"op": "squeeze_excite", "after": "block2_rleu"}))
    result = cli("apply", spec, "-o", tmp_path)
    assert result.exit_code == 2
    assert_one_error_line(
        result.stderr, "steps[1] (squeeze_excite)", 'no layer named "block2_rleu"', 'did you mean "block2_relu"?'
    )
    assert not list(tmp_path.glob("*.keras"))


@pytest.mark.parametrize(
    "after, message",
    [
        ("predictions", '"predictions" has output shape (None, 10); squeeze_excite needs a 4-D (image) output'),
        ("block1_relu", 'layers named "block1_relu_se_..." already exist'),
    ],
)
def test_squeeze_excite_refuses_what_it_cannot_do(after, message):
    steps = [{**BACKBONE, "include_top": True}, {"op": "squeeze_excite", "after": "block1_relu"}]
    if after != "block1_relu":
        steps.pop()
    with pytest.raises(surgery.SpecError, match=re.escape(message)):
        surgery.build(with_steps(*steps, {"op": "squeeze_excite", "after": after}))


@pytest.fixture(scope="module")
def tinynet_weights(tmp_path_factory, keras):
    from surgery_tinynet.backbone import build

    model = build(include_top=False)
    path = tmp_path_factory.mktemp("tinynet") / "tinynet_notop.weights.h5"
    model.save_weights(str(path))
    return path, {w.path: w.numpy() for w in model.weights}


def test_squeeze_excite_keeps_the_backbones_weights_and_output_shape(tinynet_weights):
    path, saved = tinynet_weights
    backbone = {**BACKBONE, "weights": str(path)}
    plain = surgery.build(with_steps(backbone))
    gated = surgery.build(with_steps(backbone, {"op": "squeeze_excite", "after": "block2_relu", "ratio": 8}))
    assert gated.output.shape == plain.output.shape
    assert gated.get_layer("block2_relu_se_reduce").filters == 32 // 8
    for layer in plain.layers:
        for w in gated.get_layer(layer.name).weights:
            np.testing.assert_array_equal(w.numpy(), saved[w.path])


def test_head_weights_follow_the_seed():
    def head_kernel(seed):
        model = surgery.build(with_steps(BACKBONE, {"op": "head", "classes": 3, "pooling": "max"}, seed=seed))
        return model.get_layer("head_dense").kernel.numpy()

    np.testing.assert_array_equal(head_kernel(1), head_kernel(1))
    assert not np.array_equal(head_kernel(1), head_kernel(2))


@pytest.mark.parametrize(
    "options, message",
    [
        ({"weights": "imagenet"}, "tinynet has no ImageNet weights"),
        ({"width": 8}, "does not fit tinynet with these options"),
        ({"blocks": 6}, "6 blocks need a side of at least 64"),
    ],
)
def test_tinynet_option_errors_are_clear(tinynet_weights, options, message):
    backbone = {**BACKBONE, "weights": str(tinynet_weights[0]), **options}
    with pytest.raises(surgery.SpecError, match=re.escape(message)):
        surgery.build(with_steps(backbone))


def test_the_docs_tutorial_shows_the_example_spec():
    blocks = re.findall(r"```json\n(.*?)```", DOCS.read_text(), re.S)
    shown = [json.loads(b) for b in blocks if '"tinynet_se_head"' in b]
    assert shown == [example()], "docs/plugins.md must show plugins/surgery-tinynet/examples/tinynet_se_head.json"
