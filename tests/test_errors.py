"""Bad input: one line naming the file, the step and what would be valid; exit 2; no output file."""

from __future__ import annotations

import json

import pytest

from conftest import assert_one_error_line, load_spec_json, with_weights, write_spec


def seed_spec():
    return with_weights(load_spec_json("vgg16_seed.json"), None)


def resnet_spec():
    return with_weights(load_spec_json("resnet50_cut.json"), None)


def _set(path, value):
    def mutate(spec):
        target = spec
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        return spec
    return mutate


CASES = {
    "unknown layer class": (seed_spec, _set(["steps", 2, "layer"], "Dense2"),
                            ['steps[2] (append): unknown layer class "Dense2"; did you mean "Dense"?']),
    "slice out of range": (seed_spec, _set(["steps", 1, "layers"], ":40"),
                           ["steps[1] (slice): layer index 40 is out of range; the model has 19 layers (0..18)"]),
    "slice keeps nothing": (seed_spec, _set(["steps", 1, "layers"], "5:5"), ["steps[1] (slice)", "keeps no layer"]),
    "slice text not a slice": (seed_spec, _set(["steps", 1, "layers"], "first eleven"),
                               ["steps[1] (slice)", "is not slice text", '":11"']),
    "slice with a step": (seed_spec, _set(["steps", 1, "layers"], "::2"), ["steps[1] (slice)", "only contiguous"]),
    "cut at unknown layer": (resnet_spec, _set(["steps", 1, "to"], "conv4_block6_outt"),
                             ['steps[1] (slice): no layer named "conv4_block6_outt"; did you mean "conv4_block6_out"?']),
    "cut inside a residual block": (resnet_spec, _set(["steps", 1, "to"], "conv4_block6_2_conv"),
                                    ["steps[1] (slice): cannot cut after conv4_block6_2_conv", "tensors are live",
                                     "nearest valid cut points: conv4_block5_out (index 132), conv4_block6_add (index 141)"]),
    "bad layer config": (seed_spec, _set(["steps", 4, "config"], {"units": -1}),
                         ["steps[4] (append): bad config for Dense"]),
    "unknown activation": (seed_spec, _set(["steps", 4, "config"], {"units": 2, "activation": "relu2"}),
                           ["steps[4] (append): bad config for Dense", "relu2"]),
    "unknown config key": (seed_spec, _set(["steps", 4, "config"], {"units": 2, "unitz": 3}),
                           ["steps[4] (append): bad config for Dense", "unitz"]),
    "conv after a vector": (seed_spec, lambda s: {**s, "steps": s["steps"][:5] + [
                                {"op": "append", "layer": "Conv2D", "config": {"filters": 4, "kernel_size": 3}}]},
                            ["steps[5] (append): cannot append Conv2D to the output of shape (None, 2)"]),
    "freeze matches nothing": (seed_spec, _set(["steps", 5], {"op": "freeze", "names": ["block9_*"]}),
                               ['steps[5] (freeze): names: "block9_*" matches no layer']),
    "freeze unknown type": (seed_spec, _set(["steps", 5], {"op": "freeze", "types": ["BatchNormalization"]}),
                            ['steps[5] (freeze): types: no layer of type "BatchNormalization"', "Conv2D"]),
    "freeze without selector": (seed_spec, _set(["steps", 5], {"op": "freeze"}), ["steps[5] (freeze)"]),
    "weights file missing": (seed_spec, _set(["steps", 0, "weights"], "nope.weights.h5"),
                             ['steps[0] (backbone): weights: file "nope.weights.h5" does not exist']),
    "unknown key in a step": (seed_spec, _set(["steps", 1, "layer"], ":11"),
                              ['steps[1] (slice): unknown key "layer"; did you mean "layers"?']),
    "unknown backbone": (seed_spec, _set(["steps", 0, "name"], "vgg61"),
                         ['steps[0] (backbone): unknown backbone "vgg61"; did you mean "vgg']),
    "unknown backbone option": (seed_spec, _set(["steps", 0, "pooling"], "mean"),
                                ['steps[0] (backbone): pooling: "mean" is not one of null, "avg", "max"']),
    "first step not a backbone": (seed_spec, lambda s: {**s, "steps": s["steps"][1:]},
                                  ['steps[0] (slice): the first step must start a model (backbone), not "slice"']),
    "unknown op": (seed_spec, _set(["steps", 1, "op"], "slise"), ['steps[1]: unknown op "slise"; did you mean "slice"?']),
    "wrong format version": (seed_spec, _set(["surgery"], 2), ["surgery: format version 2 is not supported"]),
    "missing steps": (seed_spec, lambda s: {"surgery": 1}, ['missing required key "steps"']),
    "empty steps": (seed_spec, _set(["steps"], []), ["steps: must not be empty"]),
    "lambda refused": (seed_spec, _set(["steps", 3], {"op": "append", "layer": "Lambda", "config": {}}),
                       ['steps[3] (append): layer "Lambda" is refused', "must not run code"]),
    "input too small": (seed_spec, _set(["steps", 0, "input_shape"], [16, 16, 3]),
                        ["steps[0] (backbone): input_shape [16, 16, 3]: vgg16 needs at least 32x32"]),
    "string for a number": (seed_spec, _set(["seed"], "zero"), ['seed: expected integer, got string "zero"']),
    "number for a list": (seed_spec, _set(["steps", 0, "input_shape"], 224),
                          ["steps[0] (backbone): input_shape: expected array, got integer 224"]),
    "zero size": (seed_spec, _set(["steps", 0, "input_shape"], [224, 0, 3]), ["steps[0] (backbone): input_shape[1]: 0 is too small; the minimum is 1"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_spec(case, cli, tmp_path):
    make, mutate, fragments = CASES[case]
    path = write_spec(tmp_path, mutate(make()))
    out = tmp_path / "out"
    result = cli("apply", path, "-o", out)
    assert result.exit_code == 2, result.stdout + result.stderr
    line = assert_one_error_line(result.stderr, *fragments)
    assert line.startswith(f"error: {path}: ")
    assert not out.exists() or not any(out.iterdir())


def test_weights_file_of_another_backbone(cli, tmp_path, resnet50_notop_weights):
    path = write_spec(tmp_path, with_weights(load_spec_json("vgg16_seed.json"), resnet50_notop_weights))
    result = cli("apply", path, "-o", tmp_path / "m.keras")
    assert result.exit_code == 2
    assert_one_error_line(result.stderr, "steps[0] (backbone)", "does not fit VGG16")
    assert not (tmp_path / "m.keras").exists()


def test_keras_file_that_is_not_a_model(cli, tmp_path):
    (tmp_path / "fake.keras").write_text("not a zip")
    spec = {"surgery": 1, "steps": [{"op": "backbone", "name": "keras_file", "path": "fake.keras"}]}
    result = cli("apply", write_spec(tmp_path, spec), "-o", tmp_path / "m.keras")
    assert result.exit_code == 2
    assert_one_error_line(result.stderr, "steps[0] (backbone)", "is not a Keras model file")


def test_keras_file_with_lambda_is_refused(cli, tmp_path, keras):
    inputs = keras.Input((4,))
    outputs = keras.layers.Lambda(lambda x: x * 2)(inputs)
    keras.Model(inputs, outputs).save(str(tmp_path / "lam.keras"))
    spec = {"surgery": 1, "steps": [{"op": "backbone", "name": "keras_file", "path": "lam.keras"}]}
    result = cli("apply", write_spec(tmp_path, spec), "-o", tmp_path / "m.keras")
    assert result.exit_code == 2
    assert_one_error_line(result.stderr, "steps[0] (backbone)", "refused", "safe_mode=True")


@pytest.mark.parametrize("content,fragment", [
    (b"", "file is empty"),
    (b"{not json", "not valid JSON: Expecting property name"),
    (b"[1, 2]", "the top level must be a JSON object, got array"),
    (b"\xff\xfe{}", "not UTF-8 text (byte 0xff at offset 0)"),
    (b"[" * 10000 + b"]" * 10000, "nested too deeply"),
])
def test_unreadable_specs(cli, tmp_path, content, fragment):
    path = tmp_path / "s.json"
    path.write_bytes(content)
    result = cli("validate", path)
    assert result.exit_code == 2
    assert_one_error_line(result.stderr, str(path), fragment)


def test_spec_that_is_a_directory(cli, tmp_path):
    result = cli("validate", tmp_path)
    assert result.exit_code == 2
    assert_one_error_line(result.stderr, "is a directory")


def test_huge_spec(cli, tmp_path):
    path = tmp_path / "big.json"
    path.write_text(json.dumps({"surgery": 1, "steps": [], "description": "x" * (50 << 20)}))
    result = cli("validate", path)
    assert result.exit_code == 2
    assert_one_error_line(result.stderr, "spec is 52.4 MB; the limit is 1024 KiB")


def test_output_folder_missing(cli, tmp_path):
    target = tmp_path / "no" / "such" / "m.keras"
    result = cli("apply", write_spec(tmp_path, seed_spec()), "-o", target)
    assert result.exit_code == 2
    assert_one_error_line(result.stderr, "does not exist")
    assert not target.parent.exists()


def test_weights_override_bad_inputs(cli, tmp_path):
    not_a_backbone = write_spec(tmp_path, {"surgery": 1, "steps": [{"op": "slice", "layers": ":3"}]}, "a.json")
    result = cli("apply", not_a_backbone, "--weights", "none", "-o", tmp_path / "a.keras")
    assert result.exit_code == 2
    assert_one_error_line(result.stderr, "steps[0]", "--weights applies to a first step that is a backbone")
    missing = tmp_path / "missing.weights.h5"
    result = cli("apply", write_spec(tmp_path, seed_spec(), "b.json"), "--weights", missing, "-o", tmp_path / "b.keras")
    assert result.exit_code == 2
    assert_one_error_line(result.stderr, "steps[0] (backbone): weights: file", "does not exist")
    assert not (tmp_path / "a.keras").exists() and not (tmp_path / "b.keras").exists()
