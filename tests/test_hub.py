"""The keras_hub backbone: KerasHub presets block by block, from preset folders made here (never the network).

Each family is a small configuration (32 px, 3 blocks) saved with ``save_to_preset``, then loaded through
the spec, i.e. KerasHub's real ``from_preset`` path. The blocks have unequal weights (a seeded random
init), so a cut at the wrong block, blocks run out of order or a block skipped give another output.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from helpers import assert_one_error_line, load_spec_json, outputs_without_surgery, write_spec

SIDE = 32
# family: (KerasHub class, its arguments, the names of its blocks in order)
FAMILIES = {
    "vit": (
        "ViTBackbone",
        {"patch_size": 8, "num_layers": 3, "num_heads": 2, "hidden_dim": 16, "mlp_dim": 32},
        ["transformer_block_1", "transformer_block_2", "transformer_block_3"],
    ),
    "deit": (
        "DeiTBackbone",
        {"patch_size": 8, "num_layers": 3, "num_heads": 2, "hidden_dim": 16, "intermediate_dim": 32},
        ["transformer_block_1", "transformer_block_2", "transformer_block_3"],
    ),
    "dinov2": (
        "DINOV2Backbone",
        {
            "patch_size": 8,
            "num_layers": 3,
            "num_heads": 2,
            "hidden_dim": 16,
            "intermediate_dim": 32,
            "position_embedding_shape": (SIDE, SIDE),
        },
        ["layers_0", "layers_1", "layers_2"],
    ),
}
# The quick lane takes ViT of the per-family tests; the full suite takes every family.
QUICK_VIT = [f if f == "vit" else pytest.param(f, marks=pytest.mark.slow) for f in sorted(FAMILIES)]


def _image(seed=3, n=2):
    return np.random.default_rng(seed).uniform(0, 255, (n, SIDE, SIDE, 3)).astype("float32") / 255


def _own_output(model, x):
    """KerasHub's own model on x (DINOv2 and DINOv3 take a dict of inputs)."""
    inputs = {next(iter(model.input)): x} if isinstance(model.input, dict) else x
    return np.asarray(model(inputs, training=False))


@pytest.fixture(scope="module")
def presets(tmp_path_factory, keras):
    """family -> (preset folder, KerasHub's own model built from it)."""
    import keras_hub

    root = tmp_path_factory.mktemp("presets")
    made = {}
    for k, (family, (cls, kwargs, _)) in enumerate(FAMILIES.items()):
        keras.utils.set_random_seed(100 + k)
        getattr(keras_hub.models, cls)(image_shape=(SIDE, SIDE, 3), **kwargs).save_to_preset(str(root / family))
        made[family] = (root / family, keras_hub.models.Backbone.from_preset(str(root / family)))
    return made


def _spec_dict(preset, *steps, **backbone) -> dict:
    return {
        "surgery": 1,
        "name": "hub",
        "seed": 0,
        "steps": [{"op": "backbone", "name": "keras_hub", "preset": str(preset), **backbone}, *steps],
    }


def _spec(tmp_path, preset, *steps, outputs=None, **backbone):
    spec = {**_spec_dict(preset, *steps, **backbone), "outputs": outputs or {"keras": "hub.keras"}}
    return write_spec(tmp_path, spec)


def _apply(cli, spec, *extra):
    result = cli("apply", spec, *extra)
    assert result.exit_code == 0, result.output + result.stderr
    return result


@pytest.mark.parametrize("family", QUICK_VIT)
def test_every_block_is_a_layer_and_the_model_is_kerashubs(cli, tmp_path, keras, presets, family):
    folder, own = presets[family]
    _apply(cli, _spec(tmp_path, folder))
    built = keras.saving.load_model(str(tmp_path / "hub.keras"))
    names = [layer.name for layer in built.layers]
    blocks = FAMILIES[family][2]
    assert [n for n in names if n in blocks] == blocks
    x = _image()
    np.testing.assert_allclose(np.asarray(built(x)), _own_output(own, x), atol=1e-5, rtol=0)


def _by_hand(own, family, x, k):
    """The embedding, then the first k blocks, called one by one on KerasHub's own layer objects."""
    embedding, encoder = own.layers[1:3]
    h = embedding(x)
    blocks = getattr(encoder, "encoder_layers", None) or encoder.layers  # DINOv2's encoder lists them as layers
    for block in blocks[:k]:
        h = block(h)
        h = h[0] if isinstance(h, tuple) else h
    return np.asarray(h)


@pytest.mark.parametrize("family", QUICK_VIT)
def test_a_cut_after_block_k_is_the_first_k_blocks_run_by_hand(cli, tmp_path, keras, presets, family):
    folder, own = presets[family]
    second = FAMILIES[family][2][1]
    _apply(cli, _spec(tmp_path, folder, {"op": "slice", "to": second}))
    cut = keras.saving.load_model(str(tmp_path / "hub.keras"))
    assert cut.layers[-1].name == second
    x = _image()
    out = np.asarray(cut(x))
    np.testing.assert_allclose(out, _by_hand(own, family, x, 2), atol=1e-5, rtol=0)
    assert np.abs(out - _by_hand(own, family, x, 1)).max() > 1e-3  # one block fewer is another output
    assert np.abs(out - _by_hand(own, family, x, 3)).max() > 1e-3


def test_freezing_blocks_by_name_freezes_exactly_their_weights(cli, tmp_path, keras, presets):
    folder, own = presets["vit"]
    frozen = ["transformer_block_1", "transformer_block_3"]
    from surgery import load_model

    result = _apply(cli, _spec(tmp_path, folder, {"op": "freeze", "names": frozen}))
    model = load_model(tmp_path / "hub.keras")
    blocks = own.layers[2].encoder_layers
    frozen_params = sum(b.count_params() for b in blocks if b.name in frozen)
    assert frozen_params > 0
    assert sum(int(np.prod(w.shape)) for w in model.non_trainable_weights) == frozen_params
    assert [layer.name for layer in model.layers if not layer.trainable] == frozen
    assert f"{frozen_params:,} params" in result.stdout


def _small_mit(m):
    """KerasHub's MiT at 32 px with two one-block stages."""
    return m.MiTBackbone(
        layerwise_depths=[1, 1],
        num_layers=2,
        layerwise_num_heads=[1, 2],
        layerwise_sr_ratios=[2, 1],
        max_drop_path_rate=0.0,
        layerwise_patch_sizes=[7, 3],
        layerwise_strides=[4, 2],
        hidden_dims=[8, 16],
        image_shape=(SIDE, SIDE, 3),
    )


def _small_swin(m):
    """KerasHub's Swin at 32 px: two stages of two blocks, 4-pixel windows."""
    return m.SwinTransformerBackbone(
        embed_dim=16, depths=[2, 2], num_heads=[2, 2], window_size=4, patch_size=4, image_shape=(SIDE, SIDE, 3)
    )


def _small_vitdet(m):
    """KerasHub's ViTDet at 32 px: two blocks, the second with global attention."""
    return m.ViTDetBackbone(
        hidden_size=16, num_layers=2, intermediate_dim=32, num_heads=2, global_attention_layer_indices=[1],
        image_shape=(SIDE, SIDE, 3), patch_size=8, num_output_channels=8, window_size=2,
    )  # fmt: skip


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:.*does not support masking:UserWarning")  # Swin's own layers, in Keras
def test_saved_models_load_in_a_python_without_surgery(cli, tmp_path, keras, presets):
    """One fresh Python loads every family's .keras (safe_mode=True, keras and keras_hub only): ViT's
    embedding and blocks write configs their constructors reject, which surgery mends on the instances.

    About 15-25 s: the fresh process (its TensorFlow and keras_hub imports) is the point, so every
    family's file goes to one process rather than one each."""
    x = _image(seed=5)
    files, expected = [], []
    for family in sorted(FAMILIES):
        folder, own = presets[family]
        out = tmp_path / family
        out.mkdir()
        _apply(cli, _spec(out, folder, {"op": "slice", "to": FAMILIES[family][2][1]}))
        files.append(out / "hub.keras")
        expected.append(_by_hand(own, family, x, 2))
    # MiT: its blocks write a config their constructor rejects (mlp, drop_prop, no sr_ratio).
    import keras_hub

    keras.utils.set_random_seed(17)
    _small_mit(keras_hub.models).save_to_preset(str(tmp_path / "mit"))
    (tmp_path / "mit_out").mkdir()
    _apply(cli, _spec(tmp_path / "mit_out", tmp_path / "mit"))
    files.append(tmp_path / "mit_out" / "hub.keras")
    expected.append(_own_output(keras_hub.models.Backbone.from_preset(str(tmp_path / "mit")), x))
    # Swin: its patch embedding and stages are given layer classes, which KerasHub's configs cannot write, and
    # build their sublayers only when called (frozen in part here).
    keras.utils.set_random_seed(19)
    _small_swin(keras_hub.models).save_to_preset(str(tmp_path / "swin"))
    (tmp_path / "swin_out").mkdir()
    _apply(cli, _spec(tmp_path / "swin_out", tmp_path / "swin", {"op": "freeze", "layers": ":2"}))
    files.append(tmp_path / "swin_out" / "hub.keras")
    expected.append(_own_output(keras_hub.models.Backbone.from_preset(str(tmp_path / "swin")), x))
    # A LoRA model too: its config carries surgery's record, which Keras passes over (the merged model).
    lora = tmp_path / "lora"
    lora.mkdir()
    _apply(cli, write_spec(lora, _lora_spec(presets, outputs={"keras": "lora.keras"})))
    import surgery

    files.append(lora / "lora.keras")
    expected.append(np.asarray(surgery.build(_lora_spec(presets))(x)))
    got = outputs_without_surgery(files, x, tmp_path, ["keras_hub"])
    for family, out, want in zip([*sorted(FAMILIES), "mit", "swin", "lora"], got, expected):
        np.testing.assert_allclose(out, want, atol=1e-5, rtol=0, err_msg=family)


@pytest.mark.slow
@pytest.mark.parametrize("family", ["deit", "vit"])
def test_a_loaded_hub_model_saved_again_still_loads(cli, tmp_path, keras, presets, family):
    """A .keras file surgery loads and writes again (`export --to keras`, a keras_file backbone, a resumed
    run) keeps the mended configs: the loaded layers are KerasHub's own again, whose configs do not load."""
    folder, own = presets[family]
    _apply(cli, _spec(tmp_path, folder, {"op": "slice", "to": FAMILIES[family][2][1]}))
    result = cli("export", tmp_path / "hub.keras", "--to", "keras", "-o", tmp_path / "again.keras")
    assert result.exit_code == 0, result.output
    x = _image(seed=6)
    again = keras.saving.load_model(tmp_path / "again.keras", safe_mode=True)
    np.testing.assert_allclose(np.asarray(again(x)), _by_hand(own, family, x, 2), atol=1e-5, rtol=0)


@pytest.mark.parametrize("family", QUICK_VIT)
def test_a_cut_backbone_with_a_head_exports_to_checked_onnx(cli, tmp_path, keras, presets, family):
    """Exact GELU and the position embeddings (the issue's Erfc and extra input) export here with
    tf2onnx 1.17 and TensorFlow 2.21: the export check and onnxruntime agree with Keras."""
    import onnxruntime as ort

    folder, _ = presets[family]
    steps = [
        {"op": "slice", "to": FAMILIES[family][2][1]},
        {"op": "append", "layer": "GlobalAveragePooling1D"},
        {"op": "append", "layer": "Dense", "config": {"units": 3, "activation": "softmax"}},
    ]
    result = _apply(cli, _spec(tmp_path, folder, *steps, outputs={"keras": "hub.keras", "onnx": "hub.onnx"}))
    assert "max abs diff vs Keras" in result.stdout
    session = ort.InferenceSession(str(tmp_path / "hub.onnx"))
    assert [i.name for i in session.get_inputs()] == ["image"]
    x = _image(n=3)
    model = keras.saving.load_model(str(tmp_path / "hub.keras"))
    np.testing.assert_allclose(session.run(None, {"image": x})[0], np.asarray(model(x)), atol=1e-5, rtol=0)


@pytest.mark.slow  # an ONNX export: the full suite runs it
def test_vitdet_exports_with_its_input_normalisation_as_constants(cli, tmp_path, keras):
    """ViTDet's graph subtracts and divides by constant arrays it passes to its operations; traced as they
    are, tf2onnx made them two more model inputs with no value. The ONNX file has one input and agrees
    with Keras."""
    import keras_hub
    import onnxruntime as ort

    keras.utils.set_random_seed(13)
    _small_vitdet(keras_hub.models).save_to_preset(str(tmp_path / "vitdet"))
    outputs = {"keras": "hub.keras", "onnx": "hub.onnx"}
    result = _apply(cli, _spec(tmp_path, tmp_path / "vitdet", preprocess=False, outputs=outputs))
    assert "max abs diff vs Keras" in result.stdout
    session = ort.InferenceSession(str(tmp_path / "hub.onnx"))
    assert [i.name for i in session.get_inputs()] == ["image"]
    x = _image(n=3)
    want = np.asarray(keras.saving.load_model(str(tmp_path / "hub.keras"))(x))
    got = session.run(None, {"image": x})[0]
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)


@pytest.mark.slow  # an ONNX export: the full suite runs it
def test_mit_exports_to_onnx_and_runs_at_every_batch(cli, tmp_path, keras):
    """MiT's attention flattens its keys for the Dense, reshapes them to heads and moves a 1-sized head axis;
    tf2onnx joined the reshapes into one that copies the flattened batch * tokens as the batch, and
    onnxruntime failed on the file at every batch. The file now runs and agrees with Keras at 1 and 3."""
    import keras_hub
    import onnxruntime as ort

    keras.utils.set_random_seed(17)
    _small_mit(keras_hub.models).save_to_preset(str(tmp_path / "mit"))
    outputs = {"keras": "hub.keras", "onnx": "hub.onnx"}
    result = _apply(cli, _spec(tmp_path, tmp_path / "mit", outputs=outputs))
    assert "max abs diff vs Keras" in result.stdout
    session = ort.InferenceSession(str(tmp_path / "hub.onnx"))
    model = keras.saving.load_model(str(tmp_path / "hub.keras"))
    for n in (1, 3):
        x = _image(n=n)
        np.testing.assert_allclose(session.run(None, {"image": x})[0], np.asarray(model(x)), atol=1e-5, rtol=0)


def _resnet_preset(folder, keras):
    import keras_hub

    keras.utils.set_random_seed(11)
    keras_hub.models.ResNetBackbone(
        input_conv_filters=[64],
        input_conv_kernel_sizes=[3],
        stackwise_num_filters=[64, 16],
        stackwise_num_blocks=[1, 1],
        stackwise_num_strides=[1, 2],
        block_type="basic_block",
        image_shape=(SIDE, SIDE, 3),
    ).save_to_preset(str(folder))
    return folder


@pytest.mark.slow
def test_a_hub_cnn_is_cut_at_its_own_layer_names_and_exported(cli, tmp_path, keras):
    """KerasHub's CNNs are functional graphs already: ResNet's layers are the spec's, cut, saved and exported."""
    import keras_hub
    import onnxruntime as ort

    own = keras_hub.models.Backbone.from_preset(str(_resnet_preset(tmp_path / "resnet", keras)))
    cut_at = "stack0_block0_out"
    outputs = {"keras": "hub.keras", "onnx": "hub.onnx"}
    _apply(cli, _spec(tmp_path, tmp_path / "resnet", {"op": "slice", "to": cut_at}, outputs=outputs))
    x = _image(n=3)
    want = np.asarray(keras.Model(own.input, own.get_layer(cut_at).output)(x))
    (got,) = outputs_without_surgery([tmp_path / "hub.keras"], x, tmp_path, ["keras_hub"])
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
    onnx_out = ort.InferenceSession(str(tmp_path / "hub.onnx")).run(None, {"image": x})[0]
    np.testing.assert_allclose(onnx_out, want, atol=1e-4, rtol=0)


@pytest.mark.slow
def test_a_hub_resnet_prunes_its_residual_group_as_its_masked_twin(tmp_path, keras):
    """Channel pruning goes through the hub CNN's own graph: the residual stage is one group (its convs,
    batch norms and the Add), and the pruned model equals the original with those channels zeroed."""
    import surgery

    from pruning_helpers import check_twin

    model = surgery.build(_spec_dict(_resnet_preset(tmp_path / "resnet", keras)))
    analysis = surgery.analyze_channels(model)
    residual = max(analysis.prunable_groups, key=lambda g: len(g.members))
    assert any("add" in str(m) for m in residual.members) and residual.channels == 64
    check_twin(model, analysis.removal({residual.producers[0]: [1, 5, 9]}), x=_image(n=2) * 255)


@pytest.mark.slow
def test_random_weights_are_the_architecture_with_other_values(cli, tmp_path, keras, presets):
    folder, own = presets["vit"]
    result = _apply(cli, _spec(tmp_path, folder, weights=None))
    assert "(random init)" in result.stdout
    model = keras.saving.load_model(str(tmp_path / "hub.keras"))
    assert model.count_params() == own.count_params()
    x = _image()
    assert np.abs(np.asarray(model(x)) - _own_output(own, x)).max() > 1e-3


@pytest.mark.slow
def test_the_vision_tower_of_a_two_tower_preset(cli, tmp_path, keras):
    import keras_hub

    m = keras_hub.models
    keras.utils.set_random_seed(7)
    vision = m.CLIPVisionEncoder(
        patch_size=8, hidden_dim=16, num_layers=2, num_heads=2, intermediate_dim=32, image_shape=(SIDE, SIDE, 3)
    )
    text = m.CLIPTextEncoder(
        vocabulary_size=50,
        embedding_dim=16,
        hidden_dim=16,
        num_layers=1,
        num_heads=2,
        intermediate_dim=32,
        max_sequence_length=8,
    )
    m.CLIPBackbone(vision_encoder=vision, text_encoder=text, projection_dim=8).save_to_preset(str(tmp_path / "clip"))
    # KerasHub prefixes the tower's layer names with the tower's when it loads a preset.
    tower = m.Backbone.from_preset(str(tmp_path / "clip")).vision_encoder
    names = [layer.name for layer in tower.layers]
    first_block = next(n for n in names if n.endswith("encoder_block_0"))
    _apply(cli, _spec(tmp_path, tmp_path / "clip", {"op": "slice", "to": first_block}, part="vision_encoder"))
    cut = keras.saving.load_model(str(tmp_path / "hub.keras"))
    assert [layer.name for layer in cut.layers] == names[: names.index(first_block) + 1]
    x = _image()
    h = x
    for layer in tower.layers[1 : names.index(first_block) + 1]:
        h = layer(h)
    np.testing.assert_allclose(np.asarray(cut(x)), np.asarray(h), atol=1e-5, rtol=0)


def test_the_dinov2_linear_probe_spec_runs_from_a_local_preset(cli, tmp_path, keras, presets):
    """Only the head trains, also after a save and load: Keras restores a frozen block's flag but leaves its
    variables trainable (they are its sublayers'), so surgery's loader freezes them again."""
    from surgery import load_model

    spec = load_spec_json("dinov2_linear_probe.json")
    folder, own = presets["dinov2"]
    spec["steps"][0].update(preset=str(folder), image_shape=[SIDE, SIDE, 3])
    spec["outputs"] = {"keras": "probe.keras"}
    result = _apply(cli, write_spec(tmp_path, spec))
    model = load_model(tmp_path / "probe.keras")
    head = model.layers[-1]
    assert [w.name for w in model.trainable_weights] == [w.name for w in head.trainable_weights]
    assert model.output.shape[-1] == spec["steps"][-1]["config"]["units"]
    assert "keras_hub:" in result.stdout


def _write_folder(tmp_path, config=None, weights=True):
    folder = tmp_path / "preset"
    folder.mkdir()
    if config is not None:
        (folder / "config.json").write_text(json.dumps(config))
    if weights:
        (folder / "model.weights.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 64)
    return folder


LAMBDA = {
    "module": "keras_hub.src.models.vit.vit_backbone",
    "class_name": "ViTBackbone",
    "config": {"layers": [{"module": "keras.layers", "class_name": "Lambda", "config": {"function": "x"}}]},
}


@pytest.mark.parametrize(
    "case,fragments",
    [
        ("missing", ['folder "./nowhere" does not exist']),
        ("no config", ["is not a KerasHub preset folder: it has no config.json"]),
        ("not json", ["config.json", "not valid JSON"]),
        ("foreign module", ["does not describe a KerasHub backbone", "'os'"]),
        ("lambda", ["refused: the model contains a layer that runs Python code"]),
        ("no weights", ['has no model.weights.h5; use "weights": null']),
        ("bad name", ['preset: "dino v2" is neither a KerasHub preset name']),
        ("sharded", ["holds sharded weights (model.weights.json)"]),
    ],
)
def test_a_bad_preset_is_one_line_before_tensorflow(cli, tmp_path, case, fragments):
    preset = {
        "missing": "./nowhere",
        "no config": lambda: _write_folder(tmp_path),
        "not json": lambda: _write_folder(tmp_path, config=None),
        "foreign module": lambda: _write_folder(tmp_path, {"module": "os", "class_name": "system", "config": {}}),
        "lambda": lambda: _write_folder(tmp_path, LAMBDA),
        "no weights": lambda: _write_folder(tmp_path, {**LAMBDA, "config": {}}, weights=False),
        "bad name": "dino v2",
        "sharded": lambda: _write_folder(tmp_path, {**LAMBDA, "config": {}}, weights=False),
    }[case]
    if callable(preset):
        preset = preset()
        if case == "not json":
            (preset / "config.json").write_text("{'single': quotes}")
        if case == "sharded":
            (preset / "model.weights.json").write_text('{"weight_map": {"a": "../../elsewhere.h5"}}')
    result = cli("validate", _spec(tmp_path, preset))
    assert result.exit_code == 2
    assert_one_error_line(result.stderr, "steps[0]", *fragments)


def test_a_preset_name_offline_and_not_cached_is_one_line(cli, tmp_path, monkeypatch):
    # A closed local port as the proxy: the download fails at once on any machine, online or not.
    for var in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    monkeypatch.setenv("KAGGLEHUB_CACHE", str(tmp_path / "kaggle"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    result = cli("apply", _spec(tmp_path, "dinov2_small"))
    assert result.exit_code == 2
    assert_one_error_line(
        result.stderr, 'could not download the KerasHub preset "dinov2_small"', "needs the internet once"
    )
    assert not (tmp_path / "hub.keras").exists()


def test_an_image_shape_the_preset_weights_do_not_fit_is_one_line(cli, tmp_path, presets):
    """ViT's position embeddings are sized for the preset's image; DINOv2's interpolate (the probe test)."""
    folder, _ = presets["vit"]
    result = cli("apply", _spec(tmp_path, folder, image_shape=[48, 48, 3]))
    assert result.exit_code == 2
    assert_one_error_line(result.stderr, "steps[0] (backbone)", "its weights do not fit image_shape [48, 48, 3]")
    assert not (tmp_path / "hub.keras").exists()


# Per-channel and unequal: a converter applied as one mean scale, or with scale and offset swapped,
# or not at all, gives another output.
SCALE, OFFSET = [0.02, 0.005, 0.011], [-1.5, 0.25, -0.4]


def _with_converter(tmp_path, presets, family="vit"):
    import shutil

    import keras_hub

    folder = tmp_path / f"{family}_with_converter"
    shutil.copytree(presets[family][0], folder)
    keras_hub.layers.ImageConverter(image_size=(SIDE, SIDE), scale=SCALE, offset=OFFSET).save_to_preset(str(folder))
    return folder


@pytest.mark.slow  # builds and compares three models: the full suite runs it
def test_the_presets_image_converter_is_a_rescaling_layer_so_the_model_takes_raw_pixels(cli, tmp_path, keras, presets):
    folder = _with_converter(tmp_path, presets)
    _apply(cli, _spec(tmp_path, folder, outputs={"keras": "hub.keras", "onnx": "hub.onnx"}))
    model = keras.saving.load_model(str(tmp_path / "hub.keras"))
    assert [layer.name for layer in model.layers[:2]] == ["images", "preprocess"]
    assert type(model.layers[1]).__name__ == "Rescaling"
    raw = np.random.default_rng(4).uniform(0, 255, (2, SIDE, SIDE, 3)).astype("float32")
    own = presets["vit"][1]
    want = _own_output(own, raw * np.float32(SCALE) + np.float32(OFFSET))
    np.testing.assert_allclose(np.asarray(model(raw)), want, atol=1e-5, rtol=0)
    assert np.abs(np.asarray(model(raw)) - _own_output(own, raw)).max() > 1e-2


@pytest.mark.slow
def test_preprocess_false_leaves_the_converter_out(cli, tmp_path, keras, presets):
    folder = _with_converter(tmp_path, presets)
    _apply(cli, _spec(tmp_path, folder, preprocess=False))
    model = keras.saving.load_model(str(tmp_path / "hub.keras"))
    assert "preprocess" not in [layer.name for layer in model.layers]
    x = _image()
    np.testing.assert_allclose(np.asarray(model(x)), _own_output(presets["vit"][1], x), atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    "scale,fragment",
    [
        ('"abc"', "scale must be a number or one number per channel"),
        ("[1, 2]", "scale must be a number or one number per channel"),
    ],
)
def test_a_bad_image_converter_is_one_line(cli, tmp_path, presets, scale, fragment):
    folder = _with_converter(tmp_path, presets)
    path = folder / "image_converter.json"
    config = json.loads(path.read_text())
    config["config"]["scale"] = json.loads(scale)
    path.write_text(json.dumps(config))
    result = cli("apply", _spec(tmp_path, folder))
    assert result.exit_code == 2
    assert_one_error_line(result.stderr, "image_converter.json", fragment)
    assert not (tmp_path / "hub.keras").exists()


# --- LoRA --------------------------------------------------------------------------------------------

LORA_STEPS = [
    {"op": "lora", "rank": 2, "alpha": 4},
    {"op": "append", "layer": "GlobalAveragePooling1D"},
    {"op": "append", "layer": "Dense", "config": {"units": 3, "activation": "softmax"}, "name": "head"},
]


def _lora_spec(presets, *steps, outputs=None):
    spec = {**_spec_dict(presets["vit"][0], *(steps or LORA_STEPS)), "name": "lora"}
    if outputs:
        spec["outputs"] = outputs
    return spec


def _lora_places(model) -> list[str]:
    """ "block/projection" of each LoRA layer, by the names of the layers (the same in a loaded model)."""
    return sorted(
        f"{top.name}/{inner.name}"
        for top in model.layers
        for inner in top._flatten_layers()
        if getattr(inner, "lora_enabled", False)
    )


def test_lora_goes_to_every_blocks_query_and_value_and_freezes_the_rest(keras, presets):
    import surgery

    model = surgery.build(_lora_spec(presets))
    blocks = [model.get_layer(f"transformer_block_{i}") for i in (1, 2, 3)]
    # By role: the projections the attention layer calls query and value, whatever their names.
    wanted = {id(p) for b in blocks for p in (b.mha._query_dense, b.mha._value_dense)}
    adapted = {id(layer) for layer in model._flatten_layers() if getattr(layer, "lora_enabled", False)}
    assert adapted == wanted and len(wanted) == 6
    lora = [w for w in model.trainable_weights if "lora_kernel" in w.path]
    head = model.get_layer("head")
    assert {id(w) for w in model.trainable_weights} == {id(w) for w in lora + head.trainable_weights}
    assert len(lora) == 12
    # Before training, B is zero: the model computes what it computed without LoRA.
    own = presets["vit"][1]
    features = keras.Model(model.input, model.get_layer("ln").output)
    x = _image()
    np.testing.assert_allclose(np.asarray(features(x)), _own_output(own, x), atol=1e-6, rtol=0)


@pytest.mark.slow
def test_lora_note_counts_what_it_adapted(cli, tmp_path, keras, presets):
    result = _apply(cli, write_spec(tmp_path, _lora_spec(presets, outputs={"keras": "lora.keras"})))
    model = keras.saving.load_model(str(tmp_path / "lora.keras"))
    # query and value of 3 blocks: kernels (16, 2, 8) -> A (16, 2, 2) and B (2, 8) each
    lora_params = 6 * (16 * 2 * 2 + 2 * 8)
    frozen = sum(layer.count_params() for layer in model.layers if layer.name != "head")
    assert (
        f"lora: rank 2, alpha 4 on 6 layers in 3 layers (transformer_block_1 .. transformer_block_3): "
        f"{lora_params:,} LoRA params train, {frozen:,} params frozen" in result.stdout
    )
    assert "partly" in result.stdout  # a block whose weights are frozen around its LoRA matrices


@pytest.mark.parametrize(
    "selector,fragment",
    [
        ({"names": ["ln"]}, "no Dense, EinsumDense or Conv layer and no MultiHeadAttention to adapt among 1 selected"),
        ({"names": ["nowhere*"]}, "nowhere*"),
    ],
)
def test_a_lora_selection_with_nothing_to_adapt_is_one_line(cli, tmp_path, presets, selector, fragment):
    spec = _lora_spec(presets, {"op": "lora", "rank": 2, **selector}, outputs={"keras": "lora.keras"})
    result = cli("apply", write_spec(tmp_path, spec))
    assert result.exit_code == 2
    assert_one_error_line(result.stderr, "steps[1] (lora)", fragment)


# family -> (a builder of KerasHub's model, its attention class, the attributes holding what LoRA should adapt)
OWN_ATTENTION = {
    "dinov3": (
        lambda m: m.DINOV3Backbone(
            patch_size=8, num_layers=3, hidden_dim=16, num_heads=2, intermediate_dim=32, image_shape=(SIDE, SIDE, 3)
        ),
        "DINOV3Attention",
        ("query_dense", "value_dense"),
    ),
    "mit": (_small_mit, "SegFormerMultiheadAttention", ("q", "v")),
    "swin": (
        _small_swin,
        "WindowAttention",
        ("qkv",),
    ),
    "vitdet": (_small_vitdet, "MultiHeadAttentionWithRelativePE", ("qkv",)),
}


@pytest.mark.filterwarnings("ignore:.*does not support masking:UserWarning")  # Swin's own layers, in Keras
@pytest.mark.parametrize(
    "family",
    [f if f == "mit" else pytest.param(f, marks=pytest.mark.slow) for f in ("dinov3", "mit", "swin", "vitdet")],
)
def test_lora_finds_the_projections_of_kerashubs_own_attention_layers(keras, family):
    """Attention layers that are not Keras' MultiHeadAttention: their query and value projections by role
    (the key stays frozen), or the fused qkv whole; the model is unchanged until B moves, then it moves."""
    import keras_hub

    import surgery

    keras.utils.set_random_seed(21)
    build, attention, roles = OWN_ATTENTION[family]
    model = build(keras_hub.models)
    x = _image(n=2)
    before = _own_output(model, x)
    added = surgery.add_lora(model, list(model.layers), 2, 4.0)
    attentions = [layer for layer in model._flatten_layers() if type(layer).__name__ == attention]
    assert attentions
    expected = {id(getattr(layer, role)) for layer in attentions for role in roles}
    assert {id(t) for t in added.targets} == expected
    lora = {id(v) for t in added.targets for v in (t.lora_kernel_a, t.lora_kernel_b)}
    assert {id(v) for v in model.trainable_weights} == lora
    np.testing.assert_allclose(_own_output(model, x), before, atol=1e-6, rtol=0)
    for t in added.targets:
        t.lora_kernel_b.assign(np.full(t.lora_kernel_b.shape, 0.5, "float32"))
    assert np.abs(_own_output(model, x) - before).max() > 1e-2


def test_lora_on_selected_dense_layers_adapts_those(keras, presets):
    import surgery

    steps = [*LORA_STEPS[1:], {"op": "lora", "rank": 1, "names": ["head"]}]
    model = surgery.build(_lora_spec(presets, *steps))
    assert _lora_places(model) == ["head/head"]
    assert sorted(w.path for w in model.trainable_weights) == ["head/lora_kernel_a", "head/lora_kernel_b"]


def _trainable_places(model) -> list[str]:
    return sorted(
        f"{top.name}/{inner.name}/{w.name}"
        for top in model.layers
        for inner in top._flatten_layers()
        for w in inner._trainable_variables
        if w.trainable and top.trainable and inner.trainable
    )


@pytest.mark.slow  # trains, saves and loads LoRA models: the full suite runs it
def test_lora_survives_a_save_and_load_and_trains_the_same_weights(cli, tmp_path, keras, presets):
    from surgery import load_model

    _apply(cli, write_spec(tmp_path, _lora_spec(presets, outputs={"keras": "lora.keras"})))
    import surgery

    fresh = surgery.build(_lora_spec(presets))
    loaded = load_model(tmp_path / "lora.keras")
    assert _lora_places(loaded) == _lora_places(fresh) and len(_lora_places(fresh)) == 6
    assert _trainable_places(loaded) == _trainable_places(fresh)
    # Keras loads both matrices as zeros, where no gradient moves them; A is drawn again.
    assert all(np.abs(w.numpy()).max() > 0 for w in loaded.trainable_weights if "lora_kernel_a" in w.path)
    x = _image()
    np.testing.assert_allclose(np.asarray(loaded(x)), np.asarray(fresh(x)), atol=1e-6, rtol=0)


@pytest.mark.slow  # trains a LoRA model and exports it: the full suite runs it
def test_exports_merge_lora_into_the_kernels(keras, tmp_path, presets):
    """B is set non-zero first (as after training): an export that dropped LoRA, or merged it without
    alpha / rank, would give another output; the ONNX file holds no LoRA matrix."""
    import onnx
    import onnxruntime as ort

    import surgery

    def train_b(state):
        rng = np.random.default_rng(8)
        for layer in state.model._flatten_layers():
            if getattr(layer, "lora_enabled", False):
                layer.lora_kernel_b.assign(rng.normal(0, 0.5, layer.lora_kernel_b.shape).astype("float32"))

    spec = _lora_spec(presets)
    applied = surgery.apply(
        spec, output=str(tmp_path / "m.keras"), exports={"onnx": str(tmp_path / "m.onnx")}, before_writing=train_b
    )
    model = applied.model
    x = _image(n=3)
    with_lora = np.asarray(model(x))
    onnx_out = ort.InferenceSession(str(tmp_path / "m.onnx")).run(None, {"image": x})[0]
    np.testing.assert_allclose(onnx_out, with_lora, atol=1e-5, rtol=0)
    names = [i.name for i in onnx.load(str(tmp_path / "m.onnx")).graph.initializer]
    assert not [n for n in names if "lora_kernel" in n]
    for layer in model._flatten_layers():
        if getattr(layer, "lora_enabled", False):
            layer.lora_kernel_b.assign(np.zeros(layer.lora_kernel_b.shape, "float32"))
    assert np.abs(np.asarray(model(x)) - with_lora).max() > 1e-3  # B mattered


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:.*does not have a `quantize` method:UserWarning")  # Keras, per layer kind
def test_a_lora_transformer_quantizes_to_kerass_int8_with_the_matrices_merged(keras, tmp_path, presets):
    """B non-zero first (as after training), so an int8 file that dropped LoRA gives another output; the
    right answer is Keras' own quantize of the merged model that plain Keras loads from the float file.

    About 15-20 s, so in the slow lane: the export checks the int8 model on held-out images, times it
    against the float one and loads the written file back, each what the test is about."""
    import surgery

    def train_b(state):
        rng = np.random.default_rng(9)
        for layer in state.model._flatten_layers():
            if getattr(layer, "lora_enabled", False):
                layer.lora_kernel_b.assign(rng.normal(0, 0.5, layer.lora_kernel_b.shape).astype("float32"))

    # The pooled tokens, no head: a feature vector, judged by cosine similarity to the float model.
    spec = _lora_spec(presets, *LORA_STEPS[:2])
    surgery.apply(spec, output=str(tmp_path / "m.keras"), before_writing=train_b)
    rng = np.random.default_rng(4)
    np.savez(tmp_path / "data.npz", x=rng.uniform(0, 1, (40, SIDE, SIDE, 3)).astype("float32"), y=np.arange(40) % 2)
    path, report = surgery.export(
        tmp_path / "m.keras", "keras", output=str(tmp_path / "int8.keras"),
        options={"quantize": "int8", "calibration": str(tmp_path / "data.npz")},
    )  # fmt: skip
    merged = keras.saving.load_model(tmp_path / "m.keras")  # plain Keras: the kernels with LoRA merged in
    dense = [
        layer for layer in merged._flatten_layers() if type(layer).__name__ in ("Dense", "EinsumDense", "Embedding")
    ]
    assert f"int8: {len(dense)} layers," in report and "cosine similarity to the float model" in report
    loaded = keras.saving.load_model(path)
    kinds = {str(layer._kernel.dtype) for layer in loaded._flatten_layers() if type(layer).__name__ == "EinsumDense"}
    assert kinds == {"int8"}
    assert not [w.path for w in loaded.weights if "lora" in w.path]
    x = _image(n=3)
    merged.quantize("int8")
    np.testing.assert_allclose(np.asarray(loaded(x)), np.asarray(merged(x)), atol=1e-5, rtol=0)


@pytest.mark.slow
def test_training_a_lora_model_changes_only_its_lora_matrices_and_head(cli, tmp_path, keras, presets):
    """About 15 s: two epochs of surgery train (the claim is about what fit changes), on 12 images."""
    from surgery import load_model

    from helpers import write_pngs

    spec = write_spec(tmp_path, _lora_spec(presets))
    data = write_pngs(tmp_path / "data", {"red": 6, "green": 4, "blue": 2}, size=SIDE)
    result = cli("train", spec, "--data", data, "--epochs", "2", "-o", tmp_path / "run")
    assert result.exit_code == 0, result.output + result.stderr
    import surgery

    def weights(model):
        return {
            f"{layer.name}/{k}": w.numpy()
            for layer in model.layers
            for k, w in enumerate(v for v in layer.weights if "lora_kernel" not in v.path)
        }

    fresh = surgery.build(_lora_spec(presets))
    after_model = load_model(next((tmp_path / "run").glob("*.keras")))
    before, after = weights(fresh), weights(after_model)
    assert before.keys() == after.keys()
    changed = {p.split("/")[0] for p in before if np.abs(before[p] - after[p]).max() > 0}
    # The blocks' LoRA kernels come back with A @ B merged in, the head trained; nothing else moved.
    assert changed == {"transformer_block_1", "transformer_block_2", "transformer_block_3", "head"}
    n_changed = sum(np.abs(before[p] - after[p]).max() > 0 for p in before if p.startswith("transformer_block"))
    assert n_changed == 6  # query and value kernels only, of 3 blocks


@pytest.mark.slow
def test_the_vit_lora_spec_runs_from_a_local_preset(cli, tmp_path, keras, presets):
    spec = load_spec_json("vit_lora.json")
    spec["steps"][0].update(preset=str(presets["vit"][0]), image_shape=[SIDE, SIDE, 3])
    spec["outputs"] = {"keras": "vit_lora.keras"}
    result = _apply(cli, write_spec(tmp_path, spec))
    assert "lora: rank 8, alpha 16 on 6 layers in 3 layers" in result.stdout
    from surgery import load_model

    model = load_model(tmp_path / "vit_lora.keras")
    assert len(_lora_places(model)) == 6 and model.output.shape[-1] == 10


@pytest.mark.slow
def test_the_siglip_vision_head_spec_runs_from_a_local_preset(cli, tmp_path, keras):
    """The vision tower only, LoRA on its 2 blocks' and its pooling head's query and value, a new head:
    only LoRA matrices and the head train, also after a save and load."""
    import keras_hub

    from surgery import load_model

    m = keras_hub.models
    keras.utils.set_random_seed(11)
    vision = m.SigLIPVisionEncoder(
        patch_size=8, hidden_dim=16, num_layers=2, num_heads=2, intermediate_dim=32, image_shape=(SIDE, SIDE, 3)
    )
    text = m.SigLIPTextEncoder(
        vocabulary_size=50, embedding_dim=16, hidden_dim=16, num_layers=1, num_heads=2, intermediate_dim=32,
        max_sequence_length=8,
    )  # fmt: skip
    m.SigLIPBackbone(vision_encoder=vision, text_encoder=text).save_to_preset(str(tmp_path / "siglip"))
    spec = load_spec_json("siglip_vision_head.json")
    spec["steps"][0].update(preset=str(tmp_path / "siglip"), image_shape=[SIDE, SIDE, 3])
    spec["outputs"] = {"keras": "siglip.keras"}
    result = _apply(cli, write_spec(tmp_path, spec))
    assert "lora: rank 8, alpha 16 on 6 layers" in result.stdout
    model = load_model(tmp_path / "siglip.keras")
    assert model.output.shape[-1] == 5 and model.layers[-1].name == "head"
    places = _lora_places(model)
    assert len(places) == 6 and sum("encoder_head" in p for p in places) == 2, places
    lora = [w for layer in model._flatten_layers() if getattr(layer, "lora_enabled", False)
            for w in (layer.lora_kernel_a, layer.lora_kernel_b)]  # fmt: skip
    expected = {id(w) for w in lora + model.layers[-1].trainable_weights}
    assert {id(w) for w in model.trainable_weights} == expected, [
        w.path for w in model.trainable_weights if id(w) not in expected
    ]


def test_backbones_presets_lists_kerashubs_vision_presets_as_kerashub_does(cli):
    """Read from KerasHub's preset tables without importing it (tests/test_cli.py checks that the command
    imports neither TensorFlow nor keras_hub); here the answer is KerasHub's own registry, imported."""
    import keras_hub

    result = cli("backbones", "--presets", "--json")
    assert result.exit_code == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    m = keras_hub.models
    for cls, family in ((m.DINOV2Backbone, "dinov2"), (m.SigLIPBackbone, "siglip"), (m.MiTBackbone, "mit"),
                        (m.ResNetBackbone, "resnet"), (m.SwinTransformerBackbone, "swin_transformer")):  # fmt: skip
        assert cls.presets, family
        for name, preset in cls.presets.items():
            assert rows[name]["family"] == family and rows[name]["backbone"] == "keras_hub", name
            assert rows[name]["params"] == preset["metadata"]["params"], name
    assert rows["siglip_base_patch16_384"]["image_size"] == 384 and rows["dinov2_small"]["image_size"] is None
    text_only = set(m.GemmaBackbone.presets) | set(m.BertBackbone.presets)
    assert text_only and not text_only & set(rows)  # language models are not listed
    filtered = cli("backbones", "--presets", "mit_b0*")
    assert filtered.exit_code == 0
    names = [line.split()[0] for line in filtered.stdout.splitlines()[1:]]
    assert names == sorted(n for n in rows if n.startswith("mit_b0")) and len(names) > 1
    missing = cli("backbones", "--presets", "dino")
    assert missing.exit_code == 2
    assert_one_error_line(missing.stderr, 'no preset matches "dino"; did you mean "dino*"')


def test_backbones_presets_without_keras_hub_is_one_line(cli, monkeypatch):
    from surgery_plugins.hub import catalog

    monkeypatch.setattr(catalog.importlib.util, "find_spec", lambda name: None)
    result = cli("backbones", "--presets")
    assert result.exit_code == 2
    assert_one_error_line(result.stderr, "no installed backbone lists presets", "pip install 'surgery[hub]'")


BAD_RECORDS = [
    {"lora": [{"layer": ["not", "a", "path"], "rank": 2}], "frozen": [{"a": 1}]},
    {"lora": [{"layer": "transformer_block_1/mha/query", "rank": "2"}], "frozen": "all"},
    {"lora": [{"layer": "transformer_block_1/mha/query", "rank": 2, "alpha": -1}]},
    {"lora": "everything"},
]


@pytest.mark.slow  # trains, saves and loads LoRA models: the full suite runs it
def test_a_saved_lora_record_that_does_not_fit_is_passed_over(cli, tmp_path, keras, presets):
    """The record is in a file from someone else: a wrong one leaves the model as Keras loads it."""
    import zipfile

    from surgery import load_model

    _apply(cli, write_spec(tmp_path, _lora_spec(presets, outputs={"keras": "lora.keras"})))
    with zipfile.ZipFile(tmp_path / "lora.keras") as z:
        members = {name: z.read(name) for name in z.namelist()}
    x = _image()
    want = np.asarray(load_model(tmp_path / "lora.keras")(x))
    for k, entry in enumerate(BAD_RECORDS):
        config = json.loads(members["config.json"])
        config["config"]["surgery"] = entry
        edited = tmp_path / f"edited{k}.keras"
        with zipfile.ZipFile(edited, "w") as z:
            for name, data in {**members, "config.json": json.dumps(config).encode()}.items():
                z.writestr(name, data)
        model = load_model(edited)
        assert _lora_places(model) == [], entry
        np.testing.assert_allclose(np.asarray(model(x)), want, atol=1e-6, err_msg=str(entry))


@pytest.mark.slow
def test_dinov3_blocks_are_layers_fed_the_rotary_embeddings(cli, tmp_path, keras):
    """DINOv3's blocks take the rotary position embeddings as a second input; unrolled, each block is a
    layer fed the same tensors, the model stays KerasHub's, and a block frozen by name survives a save."""
    import keras_hub

    from surgery import load_model

    keras.utils.set_random_seed(13)
    keras_hub.models.DINOV3Backbone(
        image_shape=(SIDE, SIDE, 3), patch_size=8, num_layers=3, num_heads=2, hidden_dim=16, intermediate_dim=32
    ).save_to_preset(str(tmp_path / "d3"))
    own = keras_hub.models.Backbone.from_preset(str(tmp_path / "d3"))
    blocks = [block.name for block in own.get_layer(next(n.name for n in own.layers if "encoder" in n.name)).layers]
    _apply(cli, _spec(tmp_path, tmp_path / "d3", {"op": "freeze", "names": [blocks[1]]}))
    model = load_model(tmp_path / "hub.keras")
    assert (
        [layer.name for layer in model.layers if layer.name in blocks] == blocks == ["layers_0", "layers_1", "layers_2"]
    )
    assert [layer.name for layer in model.layers if not layer.trainable] == [blocks[1]]
    assert not model.get_layer(blocks[1]).trainable_weights and model.get_layer(blocks[1]).non_trainable_weights
    x = _image()
    np.testing.assert_allclose(np.asarray(model(x)), _own_output(own, x), atol=1e-5, rtol=0)


def test_a_part_the_preset_does_not_have_is_one_line(cli, tmp_path, presets):
    result = cli("apply", _spec(tmp_path, presets["vit"][0], part="image_encoder"))
    assert result.exit_code == 2
    assert_one_error_line(result.stderr, 'part: "image_encoder"', "(ViTBackbone) has no image_encoder")
    assert not (tmp_path / "hub.keras").exists()
