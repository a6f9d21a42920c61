"""`surgery backbones` and `surgery ops`: glob filters and --json, like timm's list_models; and what
`surgery schema` gives an editor (the keras.layers classes for `layer`, the backbone options' defaults)."""

from __future__ import annotations

import json

import pytest
from jsonschema import Draft202012Validator

from helpers import assert_one_error_line

MOBILENETS = ["mobilenet", "mobilenetv2", "mobilenetv3large", "mobilenetv3small"]


@pytest.fixture(autouse=True)
def builtins_only(monkeypatch):
    """What is listed must not depend on which third-party plugins this machine has."""
    monkeypatch.setenv("SURGERY_LOAD_PLUGINS", "")


def _json(result):
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def _table_names(result) -> list[str]:
    assert result.exit_code == 0, result.stderr
    return [line.split()[0] for line in result.stdout.splitlines()[1:]]


def test_backbones_json_lists_the_40_applications_keras_file_and_keras_hub(cli):
    listed = _json(cli("backbones", "--json"))
    names = [b["name"] for b in listed]
    assert len(names) == 42 and names == sorted(names) and {"keras_file", "keras_hub"} <= set(names)
    assert sum(b["plugin"] == "applications" for b in listed) == 40
    vgg16 = next(b for b in listed if b["name"] == "vgg16")
    assert vgg16 == {
        "name": "vgg16",
        "plugin": "applications",
        "description": "keras.applications.VGG16",
        "input_shape": [224, 224, 3],
        "min_input_size": 32,
        "preprocess": "keras.applications.vgg16.preprocess_input",
        "options": ["classes", "classifier_activation", "include_top", "input_shape", "pooling", "weights"],
    }
    keras_file = next(b for b in listed if b["name"] == "keras_file")
    assert keras_file["input_shape"] is None and keras_file["options"] == ["path", "weights"]
    keras_hub = next(b for b in listed if b["name"] == "keras_hub")
    assert keras_hub["plugin"] == "keras_hub" and keras_hub["options"] == [
        "image_shape",
        "part",
        "preprocess",
        "preset",
        "weights",
    ]


def test_backbones_glob_filters_the_table_and_the_json(cli):
    assert _table_names(cli("backbones", "mobile*")) == MOBILENETS
    assert [b["name"] for b in _json(cli("backbones", "mobile*", "--json"))] == MOBILENETS
    # Several patterns are a union; case does not matter (the class names are CamelCase).
    assert _table_names(cli("backbones", "vgg*", "ResNet50")) == ["resnet50", "vgg16", "vgg19"]
    assert _table_names(cli("backbones", "efficientnetv2b?")) == [f"efficientnetv2b{i}" for i in range(4)]


def test_ops_json_and_glob(cli):
    ops = {o["name"]: o for o in _json(cli("ops", "--json"))}
    assert ops["backbone"]["source"] is True and ops["backbone"]["required"] == ["name"]
    assert ops["freeze"] == {
        "name": "freeze",
        "plugin": "freeze",
        "description": ops["freeze"]["description"],
        "source": False,
        "params": ["from", "layers", "names", "to", "types"],
        "required": [],
    }
    assert _table_names(cli("ops", "*freeze")) == ["freeze", "unfreeze"]
    assert [o["name"] for o in _json(cli("ops", "*freeze", "--json"))] == ["freeze", "unfreeze"]


@pytest.mark.parametrize(
    "args, line",
    [
        (["backbones", "vgg"], 'error: no backbone matches "vgg"; did you mean "vgg*" (vgg16, vgg19)?'),
        (
            ["backbones", "zz*"],
            'error: no backbone matches "zz*"; 42 are installed (a pattern is a glob such as "mobile*")',
        ),
        (["ops", "frezee", "--json"], 'error: no op matches "frezee"; did you mean "freeze"?'),
    ],
)
def test_a_pattern_that_matches_nothing_is_one_error_line(cli, args, line):
    result = cli(*args)
    assert result.exit_code == 2 and result.stdout == ""
    assert assert_one_error_line(result.stderr) == line


def _op_schema(schema, op):
    step = schema["$defs"]["step"]
    return next(rule["then"] for rule in step["allOf"] if rule["if"]["properties"]["op"]["const"] == op)


def test_schema_completes_layer_classes_and_backbone_options(cli):
    schema = _json(cli("schema"))
    Draft202012Validator.check_schema(schema)
    for op in ("append", "insert", "replace"):
        layer = _op_schema(schema, op)["properties"]["layer"]
        assert {"Dense", "Conv2D", "GlobalAveragePooling2D", "BatchNormalization"} <= set(layer["enum"]), op
        assert not {"Lambda", "TFSMLayer", "InputLayer", "Layer"} & set(layer["enum"]), op  # refused in specs
        assert layer["enum"] == sorted(layer["enum"]) and layer["description"]
    backbone = _op_schema(schema, "backbone")

    def options(name):
        return next(r["then"] for r in backbone["allOf"] if r["if"]["properties"]["name"]["const"] == name)[
            "properties"
        ]

    vgg16 = options("vgg16")
    assert {
        k: vgg16[k].get("default") for k in ("weights", "include_top", "pooling", "classes", "classifier_activation")
    } == {
        "weights": "imagenet",
        "include_top": True,
        "pooling": None,
        "classes": 1000,
        "classifier_activation": "softmax",
    }
    assert "default" in vgg16["pooling"]  # a null default is still a default
    assert vgg16["input_shape"]["default"] == [224, 224, 3]
    assert options("inceptionv3")["input_shape"]["default"] == [299, 299, 3]
    for key in ("weights", "include_top", "input_shape", "pooling", "classes", "classifier_activation"):
        assert vgg16[key]["description"], key
    assert options("keras_file")["weights"]["default"] == "file"
    # What an editor does with it: a spec with a layer class and the defaults written out validates.
    spec = {
        "surgery": 1,
        "steps": [
            {"op": "backbone", "name": "vgg16", **{k: v["default"] for k, v in vgg16.items() if "default" in v}},
            {"op": "append", "layer": "Dense", "config": {"units": 2}},
        ],
    }
    assert not list(Draft202012Validator(schema).iter_errors(spec))
    spec["steps"][1]["layer"] = "Dense2"
    assert list(Draft202012Validator(schema).iter_errors(spec))
