"""The ``prune`` op through specs and the CLI: coupled channels, ratios, named tensors, plan, save, train, ONNX.

The core (groups on every keras.applications backbone, pruned == masked twin) is tested in
tests/test_pruning_*.py; here a small residual model saved as .keras is the source, so each spec
builds in a fraction of a second. Bad input has its exact lines in tests/bad_specs/ (78-89).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from helpers import assert_one_error_line, write_spec

SIDE = 16


def _source_model(k):
    """stem -> residual block (Add) -> conv with LayerNormalization (unprunable) -> 1x1 conv -> softmax head."""
    inputs = k.Input((SIDE, SIDE, 3), name="image")
    x = k.layers.Conv2D(8, 3, padding="same", name="stem")(inputs)
    x = k.layers.BatchNormalization(name="stem_bn")(x)
    x = k.layers.ReLU(name="stem_relu")(x)
    y = k.layers.Conv2D(8, 3, padding="same", activation="relu", name="b1_conv1")(x)
    y = k.layers.Conv2D(8, 3, padding="same", name="b1_conv2")(y)
    x = k.layers.Add(name="b1_add")([x, y])
    x = k.layers.ReLU(name="b1_out")(x)
    x = k.layers.Conv2D(12, 3, strides=2, name="c2")(x)
    x = k.layers.LayerNormalization(name="c2_ln")(x)
    x = k.layers.Conv2D(16, 1, activation="relu", name="c3")(x)
    x = k.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = k.layers.Dense(3, activation="softmax", name="logits")(x)
    return k.Model(inputs, outputs, name="resnetlet")


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """The source .keras file, with random BN statistics and biases so every channel matters."""
    from surgery import keras

    k = keras()
    k.utils.set_random_seed(3)
    model = _source_model(k)
    rng = np.random.default_rng(0)
    for layer in model.layers:
        values = [
            w if v.name == "kernel" else rng.uniform(0.5, 1.5, w.shape)
            for v, w in zip(layer.weights, layer.get_weights())
        ]
        if values:
            layer.set_weights([np.asarray(w, dtype="float32") for w in values])
    path = tmp_path_factory.mktemp("prune_source") / "source.keras"
    model.save(str(path))
    return path


def _spec(source, *steps, name="pruned"):
    return {
        "surgery": 1,
        "name": name,
        "seed": 0,
        "steps": [{"op": "backbone", "name": "keras_file", "path": str(source)}, *steps],
    }


def _run(spec):
    """The final State (model, notes, named tensors) of a spec."""
    import surgery
    from surgery.executor import run_steps

    parsed, plugins = surgery.load(spec)
    return run_steps(parsed, plugins.registry)


def _x(batch=2, seed=1):
    return np.random.default_rng(seed).uniform(0, 1, (batch, SIDE, SIDE, 3)).astype("float32")


def _weights(model) -> dict:
    return {layer.name: [np.asarray(w) for w in layer.get_weights()] for layer in model.layers}


@pytest.mark.parametrize("layer", ["stem", "stem_bn", "b1_conv2", "b1_add", "b1_out"])
def test_channels_by_any_layer_of_a_group_remove_the_same_coupled_channels(source, layer):
    from surgery import analyze_channels, keras, masked_twin

    original = keras().saving.load_model(str(source), safe_mode=True)
    state = _run(_spec(source, {"op": "prune", "channels": {layer: [1, 5]}}))
    model = state.model
    assert state.notes[-1].startswith("prune: 1 group pruned (channels of " + layer + "), 8 -> 6 channels; params ")
    keep = [0, 2, 3, 4, 6, 7]
    old, new = _weights(original), _weights(model)
    # Kept weights are exact slices of the old ones: producers' output columns, consumers' input rows.
    assert np.array_equal(new["stem"][0], old["stem"][0][..., keep]) and np.array_equal(
        new["stem"][1], old["stem"][1][keep]
    )
    assert all(np.array_equal(n, o[keep]) for n, o in zip(new["stem_bn"], old["stem_bn"]))
    assert np.array_equal(new["b1_conv1"][0], old["b1_conv1"][0][:, :, keep, :])
    assert np.array_equal(new["b1_conv2"][0], old["b1_conv2"][0][..., keep])
    assert np.array_equal(new["c2"][0], old["c2"][0][:, :, keep, :])
    for name in ("b1_conv1", "c3", "logits", "c2_ln"):  # their own output channels stay
        assert new[name][-1].shape == old[name][-1].shape, name
    assert [la.name for la in model.layers] == [la.name for la in original.layers]
    # The pruned model computes what the original does with those channels zeroed wherever they flow.
    analysis = analyze_channels(original)
    twin = masked_twin(original, analysis.removal({layer: [1, 5]}))
    x = _x()
    y, y_twin, y_orig = (np.asarray(m(x, training=False)) for m in (model, twin, original))
    assert np.abs(y - y_twin).max() <= 1e-5 * np.abs(y_twin).max()
    assert np.abs(y_orig - y_twin).max() > 100 * np.abs(y - y_twin).max() + 1e-6  # the comparison could fail


def test_ratio_through_a_spec_removes_the_expected_params_and_keeps_flags(source):
    spec = _spec(
        source,
        {"op": "freeze", "names": ["stem*"]},
        {"op": "prune", "ratio": 0.5},
    )
    state = _run(spec)
    model = state.model
    # Local 0.5: the stream 8 -> 4 (stem, b1_conv2), b1_conv1 8 -> 4, c3 16 -> 8; c2 (LayerNormalization) and
    # the softmax output stay.
    expected = (
        (9 * 3 * 4 + 4)  # stem
        + 4 * 4  # stem_bn
        + (9 * 4 * 4 + 4) * 2  # b1_conv1, b1_conv2
        + (9 * 4 * 12 + 12)  # c2
        + 12 * 2  # c2_ln
        + (12 * 8 + 8)  # c3
        + (8 * 3 + 3)  # logits
    )
    assert model.count_params() == expected
    note = state.notes[-1]
    assert note.startswith("prune: 3 groups pruned (ratio 0.5, l1, local), 32 -> 16 channels; params 2,")
    assert f"-> {expected:,} (" in note and "FLOPs " in note
    assert model.get_layer("stem").trainable is False and model.get_layer("stem_bn").trainable is False
    assert model.get_layer("b1_conv1").trainable is True
    assert model.name == "pruned"


def test_global_scope_round_to_and_selectors(source):
    state = _run(_spec(source, {"op": "prune", "ratio": 0.5, "scope": "global", "round_to": 4, "names": ["c3"]}))
    model = state.model
    assert model.get_layer("c3").filters == 8 and model.get_layer("stem").filters == 8
    assert "1 group pruned (ratio 0.5, l1, global), 16 -> 8 channels" in state.notes[-1]
    types = _run(_spec(source, {"op": "prune", "ratio": 0.5, "types": ["Conv2D"], "min_channels": 6})).model
    assert [types.get_layer(n).filters for n in ("stem", "b1_conv1", "c2", "c3")] == [6, 6, 12, 8]


def test_random_criterion_follows_the_spec_seed(source):
    def kept(seed):
        spec = _spec(source, {"op": "prune", "ratio": 0.5, "criterion": "random"})
        spec["seed"] = seed
        return _run(spec).model.get_layer("c3").get_weights()[1]

    assert np.array_equal(kept(0), kept(0))
    assert not np.array_equal(kept(0), kept(1))


def test_named_tensors_follow_the_pruned_model(source):
    spec = _spec(
        source,
        {"op": "slice", "to": "pool"},
        {"op": "append", "layer": "Dense", "config": {"units": 6}, "name": "emb", "as": "emb"},
        {"op": "append", "input": "pool", "layer": "Dense", "config": {"units": 3}, "name": "cls"},
        {"op": "prune", "ratio": 0.5},
        {"op": "outputs", "tensors": ["cls", "emb"]},
    )
    model = _run(spec).model
    assert model.get_layer("c3").filters == 8  # read by both heads: pruned
    assert [tuple(t.shape) for t in model.outputs] == [(None, 3), (None, 6)]  # the set-aside head keeps its units


def test_plan_lists_prunable_and_unprunable_groups(source, tmp_path, cli):
    path = write_spec(tmp_path, _spec(source, {"op": "prune", "channels": {"c3": [0]}}))
    result = cli("plan", path)
    assert result.exit_code == 0, result.stderr
    text = result.stdout
    assert "steps[1] prune: 1 group pruned (channels of c3), 16 -> 15 channels" in text
    assert "    replaced 2: c3, logits\n" in text  # layers that lost channels; the unchanged copies are not listed
    assert "channel groups of the final model: 3 prunable groups (31 of 49 channels), 2 unprunable" in text
    assert "  group 1: 8 channels, stem, b1_conv2\n" in text
    assert "(unprunable): 12 channels, c2: 'c2_ln' (LayerNormalization) normalises across the channel axis" in text
    assert "(unprunable): 3 channels, logits: 'logits' applies the activation 'softmax'" in text
    result = cli("plan", path, "--json", "--groups")
    assert result.exit_code == 0, result.stderr
    found = json.loads(result.stdout)
    assert [s["op"] for s in found["steps"]] == ["backbone", "prune"]
    groups = found["groups"]
    assert [g["producers"] for g in groups["prunable"]] == [["stem", "b1_conv2"], ["b1_conv1"], ["c3"]]
    assert groups["prunable"][0]["members"][:3] == ["stem", "stem_bn", "stem_relu"]
    assert [g["producers"] for g in groups["unprunable"]] == [["c2"], ["logits"]]
    assert "LayerNormalization" in groups["unprunable"][0]["reason"]
    steps = json.loads(cli("plan", path, "--json").stdout)  # without --groups: the list of steps, as before
    assert isinstance(steps, list) and steps[1]["replaced"] == ["c3", "logits"]


@pytest.mark.parametrize(
    "params, fragment",
    [
        ({"channels": {"c3": [0]}, "ratio": 0.3}, 'give exactly one of "channels"'),
        ({}, 'give exactly one of "channels"'),
        ({"ratio": 1}, "ratio: 1 would remove every channel; give a fraction below 1"),
        ({"ratio": 0}, "ratio: 0 is too small; the minimum is 0 (exclusive)"),
        ({"ratio": 0.3, "criterion": "l3"}, 'criterion: "l3" is not one of "l1", "l2", "bn_scale", "random"'),
        ({"channels": {"c3": [0]}, "scope": "global"}, '"scope" applies to ratio pruning only'),
        ({"channels": {"c3": [-1]}}, "channels.c3[0]: -1 is too small; the minimum is 0"),
        ({"channels": {"c3": []}}, "channels.c3: must not be empty"),
        ({"ratio": 0.3, "layers": "3"}, '"3" is not slice text'),
    ],
)
def test_validate_catches_what_needs_no_model(source, tmp_path, cli, params, fragment):
    path = write_spec(tmp_path, _spec(source, {"op": "prune", **params}))
    result = cli("validate", path)
    assert result.exit_code == 2
    assert_one_error_line(result.stderr, "steps[1] (prune): ", fragment)


@pytest.mark.parametrize(
    "params, fragment",
    [
        ({"channels": {"b1_conv3": [0]}}, 'no layer named "b1_conv3"; did you mean "b1_conv2" or "b1_conv1"?'),
        ({"channels": {"stem": [8]}}, "channel 8 is out of range for 'stem': it has 8 output channels (0..7)"),
        ({"channels": {"logits": [0]}}, "layer 'logits' has no prunable output channels: 'logits' applies"),
        ({"channels": {"c2": [0]}}, "layer 'c2' has no prunable output channels: 'c2_ln' (LayerNormalization)"),
        ({"channels": {"b1_add": list(range(8))}}, "would remove all 8 channels of group 1 (stem, b1_conv2)"),
        ({"ratio": 0.3, "names": ["c9*"]}, 'names: "c9*" matches no layer'),
        ({"ratio": 0.3, "names": ["pool"]}, "the selected layers (pool) make no channels of their own"),
        ({"ratio": 0.3, "names": ["c2", "logits"]}, "the selected layers (c2, logits) are in 2 group(s), none"),
    ],
)
def test_bad_choices_are_one_line_naming_the_step(source, tmp_path, cli, params, fragment):
    path = write_spec(tmp_path, _spec(source, {"op": "prune", **params}))
    result = cli("apply", path, "-o", tmp_path / "out")
    assert result.exit_code == 2
    assert_one_error_line(result.stderr, "steps[1] (prune): ", fragment)
    assert not (tmp_path / "out").exists()


def test_a_model_without_prunable_groups_says_why(source, tmp_path, cli):
    path = write_spec(tmp_path, _spec(source, {"op": "slice", "to": "stem_relu"}, {"op": "prune", "ratio": 0.3}))
    result = cli("apply", path, "-o", tmp_path / "out")
    assert result.exit_code == 2
    assert_one_error_line(
        result.stderr,
        "steps[2] (prune): the model has no channel group that can be pruned: group 1 (stem): "
        "'stem_relu' gives the model's output",
    )


def test_pruned_keras_file_loads_with_safe_mode(source, tmp_path, cli):
    from surgery import keras

    path = write_spec(tmp_path, _spec(source, {"op": "prune", "ratio": 0.5, "round_to": 2}))
    result = cli("apply", path, "-o", tmp_path)
    assert result.exit_code == 0, result.stderr
    loaded = keras().saving.load_model(str(tmp_path / "pruned.keras"), safe_mode=True)
    built = _run(json.loads(path.read_text())).model
    assert loaded.get_layer("c3").filters == 8 and loaded.count_params() == built.count_params()
    x = _x()
    assert np.array_equal(np.asarray(loaded(x, training=False)), np.asarray(built(x, training=False)))


def test_conforms_to_the_plugin_contract():
    import surgery_plugins.op_prune as module
    from surgery.testing import check_plugin

    assert check_plugin(module, fresh_import=False).ops == ["prune"]


@pytest.mark.slow
def test_pruned_model_trains_one_epoch(source, tmp_path, cli):
    data = tmp_path / "tiny.npz"
    rng = np.random.default_rng(0)
    np.savez(data, x=rng.uniform(0, 1, (12, SIDE, SIDE, 3)).astype("float32"), y=np.arange(12) % 3)
    spec = _spec(source, {"op": "prune", "ratio": 0.5})
    spec["train"] = {"validation_split": 0.25, "batch_size": 4, "stages": [{"epochs": 1}]}
    result = cli("train", write_spec(tmp_path, spec), "--data", data, "-o", tmp_path / "run")
    assert result.exit_code == 0, result.stdout + result.stderr
    from surgery import keras

    trained = keras().saving.load_model(str(tmp_path / "run" / "pruned.keras"), safe_mode=True)
    assert trained.get_layer("c3").filters == 8
    assert not np.array_equal(
        trained.get_layer("c3").get_weights()[0], _run(spec).model.get_layer("c3").get_weights()[0]
    )


def test_pruned_model_exports_to_onnx_with_parity(source, tmp_path, cli):
    path = write_spec(tmp_path, _spec(source, {"op": "prune", "ratio": 0.5, "criterion": "bn_scale"}))
    result = cli("apply", path, "-o", tmp_path, "--onnx", tmp_path / "pruned.onnx")
    assert result.exit_code == 0, result.stderr
    assert "bn_scale: 2 group(s) without a BatchNormalization on every channel scored by l1" in result.stdout
    assert f"wrote {tmp_path / 'pruned.onnx'} (" in result.stdout  # the exporter checked it against Keras
    import onnxruntime as ort

    from surgery import keras

    model = keras().saving.load_model(str(tmp_path / "pruned.keras"), safe_mode=True)
    session = ort.InferenceSession(str(tmp_path / "pruned.onnx"), providers=["CPUExecutionProvider"])
    x = _x(3)
    y = session.run(None, {session.get_inputs()[0].name: x})[0]
    assert np.abs(y - np.asarray(model(x, training=False))).max() <= 1e-5


VGG_CUT = [
    {"op": "backbone", "name": "vgg16", "weights": None, "include_top": False, "input_shape": [32, 32, 3]},
    {"op": "slice", "layers": ":4"},
]


@pytest.mark.parametrize(
    "forms, first, channels",
    [
        # caffe preprocessing: a frozen 1x1 Conv2D, RGB->BGR and the means, as the preprocess op writes it
        ([{"op": "preprocess"}], "preprocess", 3),
        (
            [
                {
                    "op": "insert",
                    "before": "block1_conv1",
                    "layer": "Normalization",
                    "config": {"mean": [1, 2, 3], "variance": [1, 4, 9]},
                    "name": "norm",
                }
            ],
            "norm",
            3,
        ),
        (
            [
                {
                    "op": "insert",
                    "before": "block1_conv1",
                    "layer": "Rescaling",
                    "config": {"scale": [0.5, 0.25, 2.0], "offset": [1, 2, 3]},
                    "name": "scale",
                }
            ],
            "scale",
            3,
        ),
        # a grayscale input: the first kernel's input side is the input's one channel
        ([{"op": "adapt_input", "channels": 1, "rule": "mean"}, {"op": "preprocess"}], "block1_conv1", None),
    ],
    ids=["preprocess", "normalization", "rescaling", "adapt_input"],
)
def test_the_input_in_another_form_is_never_pruned(forms, first, channels):
    """Every fixed per-channel map of the input keeps each colour of the image: pruning at ratio 0.5 takes
    channels from the convolutions after it, never from it (the model would ignore a colour)."""
    import surgery

    model = surgery.build({"surgery": 1, "name": "m", "steps": [*VGG_CUT, *forms, {"op": "prune", "ratio": 0.5}]})
    assert model.input.shape[-1] == (channels or 1)
    if channels:
        assert model.get_layer(first).output.shape[-1] == channels
    assert model.get_layer("block1_conv1").input.shape[-1] == (channels or 1)
    assert model.get_layer("block1_conv1").filters == 32  # the groups after it are pruned


def test_plan_groups_says_why_the_preprocessing_is_unprunable(cli, tmp_path):
    spec = write_spec(tmp_path, {"surgery": 1, "name": "m", "steps": [*VGG_CUT, {"op": "preprocess"}]})
    result = cli("plan", spec, "--groups")
    assert result.exit_code == 0, result.output
    assert "'preprocess' is a fixed map of the model's input channels (preprocessing)" in result.output
