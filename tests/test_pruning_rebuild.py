"""Rebuilding pruned models: exact weight slices, equality with the masked twin, configs, saving, FLOPs."""

from __future__ import annotations

import numpy as np
import pytest

from pruning_helpers import check_twin, inputs_for, keras, outputs, randomize


@pytest.fixture(scope="module")
def k():
    return keras()


def _chain(k, seed=0):
    k.utils.set_random_seed(seed)
    inp = k.Input((6, 6, 3), name="image")
    x = k.layers.Conv2D(8, 3, name="c1")(inp)  # 4x4x8
    x = k.layers.BatchNormalization(name="bn1")(x)
    x = k.layers.ReLU(name="r1")(x)
    x = k.layers.Conv2D(6, 3, padding="same", name="c2")(x)  # 4x4x6
    x = k.layers.Flatten(name="flat")(x)
    y = k.layers.Dense(3, name="out")(x)
    return randomize(k.Model(inp, y, name="chain"), seed)


def test_kept_weights_are_exact_slices(k):
    from surgery.pruning import analyze, prune

    model = _chain(k)
    a = analyze(model)
    removal = a.removal({"bn1": [1, 4], "c2": [0, 5]})
    pruned, report = prune(model, removal)
    old = {layer.name: layer.get_weights() for layer in model.layers}
    new = {layer.name: layer.get_weights() for layer in pruned.layers}
    keep1 = np.array([i not in (1, 4) for i in range(8)])
    keep2 = np.array([i not in (0, 5) for i in range(6)])
    assert np.array_equal(new["c1"][0], old["c1"][0][..., keep1])
    assert np.array_equal(new["c1"][1], old["c1"][1][keep1])
    for w_new, w_old in zip(new["bn1"], old["bn1"]):
        assert np.array_equal(w_new, w_old[keep1])
    assert np.array_equal(new["c2"][0], old["c2"][0][:, :, keep1][..., keep2])
    assert np.array_equal(new["c2"][1], old["c2"][1][keep2])
    rows = np.tile(keep2, 16)  # Flatten of 4x4x6: row = spatial * 6 + channel
    assert np.array_equal(new["out"][0], old["out"][0][rows])
    assert np.array_equal(new["out"][1], old["out"][1])
    assert pruned.get_layer("c1").filters == 6 and pruned.get_layer("c2").filters == 4
    assert [g["channels_after"] for g in report.groups] == [6, 4]
    check_twin(model, removal)


def test_removing_zero_channels_changes_nothing(k):
    from surgery.pruning import analyze, prune

    k.utils.set_random_seed(3)
    inp = k.Input((8, 8, 3))
    x = k.layers.Conv2D(6, 3, activation="relu", name="c1")(inp)
    x = k.layers.Conv2D(5, 3, name="c2")(x)
    y = k.layers.Dense(2, name="out")(k.layers.GlobalAveragePooling2D()(x))
    model = randomize(k.Model(inp, y))
    kernel, bias = model.get_layer("c1").get_weights()
    kernel[..., [1, 4]] = 0.0
    bias[[1, 4]] = 0.0
    model.get_layer("c1").set_weights([kernel, bias])
    pruned, _ = prune(model, analyze(model).coupled("c1", [1, 4]))
    x = inputs_for(model)
    assert np.abs(outputs(pruned, x) - outputs(model, x)).max() <= 1e-6


def test_ratio_pruning_removes_the_expected_params(k):
    from surgery.pruning import analyze, prune, select

    model = _chain(k)
    a = analyze(model)
    removal = select(a, model, 0.5, scope="local")
    pruned, report = prune(model, removal)

    def params(c1, c2):  # computed by hand for the chain
        return (3 * 3 * 3 * c1 + c1) + 4 * c1 + (3 * 3 * c1 * c2 + c2) + (4 * 4 * c2 * 3 + 3)

    assert model.count_params() == params(8, 6)
    assert pruned.count_params() == params(4, 3)
    assert report.params_before == params(8, 6) and report.params_after == params(4, 3)
    assert report.channels_before == 14 and report.channels_after == 7
    # A pruned model is an ordinary functional model: it can be pruned again.
    again, _ = prune(pruned, select(analyze(pruned), pruned, 0.5, scope="local"))
    assert again.count_params() == params(2, 2)


def test_names_trainable_flags_and_dtype_policies_are_kept(k):
    from surgery.pruning import analyze, prune, select

    k.utils.set_random_seed(0)
    inp = k.Input((8, 8, 3), name="pixels")
    x = k.layers.Conv2D(8, 3, name="c1", trainable=False)(inp)
    x = k.layers.BatchNormalization(name="bn1", dtype="mixed_float16")(x)
    x = k.layers.Conv2D(6, 3, name="c2", kernel_regularizer="l2", activation="swish")(x)
    y = k.layers.Dense(3, name="logits")(k.layers.GlobalAveragePooling2D(name="gap")(x))
    model = k.Model(inp, y, name="small")
    pruned, _ = prune(model, select(analyze(model), model, 0.25))
    assert pruned.name == "small"
    assert [layer.name for layer in pruned.layers] == [layer.name for layer in model.layers]
    assert pruned.layers[0].name == "pixels" and pruned.output_names == model.output_names == ["logits"]
    for old, new in zip(model.layers, pruned.layers):
        assert new is not old
        assert new.trainable == old.trainable
        assert new.dtype_policy.name == old.dtype_policy.name
        cfg_old, cfg_new = old.get_config(), new.get_config()
        for key in ("filters", "units"):
            cfg_old.pop(key, None), cfg_new.pop(key, None)
        assert cfg_new == cfg_old
    assert pruned.get_layer("c1").trainable is False


def _convnext_like(k, seed=0):
    """A depthwise Conv2D(groups=C), an MLP, a LayerScale and an op-level add, without LayerNormalization."""
    from keras.src.applications.convnext import LayerScale

    k.utils.set_random_seed(seed)
    inp = k.Input((8, 8, 3))
    s = k.layers.Conv2D(8, 1, name="stem")(inp)
    x = k.layers.Conv2D(8, 3, padding="same", groups=8, name="dwconv")(s)
    x = k.layers.Dense(16, name="pw1")(x)
    x = k.layers.Activation("gelu", name="gelu")(x)
    x = k.layers.Dense(8, name="pw2")(x)
    x = LayerScale(0.5, 8, name="scale")(x)
    s = s + x  # an ops.numpy.Add node, as ConvNeXt's residual
    x = k.layers.DepthwiseConv2D(3, depth_multiplier=2, name="dw2")(s)
    x = k.layers.BatchNormalization(name="bn")(x)
    x = k.layers.ReLU(name="relu")(x)
    x = k.layers.Conv2D(4, 1, name="proj")(x)
    y = k.layers.Dense(3, name="out")(k.layers.GlobalAveragePooling2D(name="gap")(x))
    return randomize(k.Model(inp, y), seed)


def test_grouped_depthwise_layerscale_and_op_add_are_pruned_exactly(k):
    from surgery.pruning import analyze

    model = _convnext_like(k)
    a = analyze(model)
    removal = a.removal({"stem": [1, 5], "pw1": [0, 3, 7]})
    assert removal.channels_of("dw2") == [2, 3, 10, 11]
    assert removal.channels_of("scale") == [1, 5]
    pruned, _, _, _ = check_twin(model, removal)
    assert pruned.get_layer("dwconv").get_config()["groups"] == 6
    assert pruned.get_layer("dwconv").filters == 6
    assert pruned.get_layer("scale").projection_dim == 6
    assert pruned.get_layer("pw1").units == 13
    assert pruned.get_layer("bn").get_weights()[0].shape == (12,)


def _zoo(k, seed=0):
    """Per-channel layers with weights or constants in their config, reshapes and scalar ops."""
    k.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    inp = k.Input((8, 8, 3))
    x = k.layers.Conv2D(6, 3, padding="same", name="c1")(inp)
    x = k.layers.PReLU(name="prelu")(x)
    x = k.layers.Rescaling(scale=rng.uniform(0.5, 2, 6).tolist(), offset=0.25, name="rescale")(x)
    x = k.layers.Normalization(
        mean=rng.normal(0, 1, 6).tolist(), variance=rng.uniform(0.5, 2, 6).tolist(), name="norm"
    )(x)
    x = k.layers.ZeroPadding2D(1, name="pad")(x)
    x = k.layers.UpSampling2D(name="up")(x)
    x = k.layers.Cropping2D(2, name="crop")(x)
    x = k.layers.MaxPooling2D(name="pool")(x)
    x = k.layers.Dropout(0.3, name="drop")(x)
    x = k.layers.Reshape((-1, 6), name="reshape")(x)
    x = x * 2.0 + 1.0
    x = k.layers.Conv1D(5, 3, name="c1d")(x)
    x = k.layers.Activation("tanh", name="tanh")(x)
    other = k.layers.Conv1D(5, 1, name="other")(x)
    x = k.layers.Concatenate(axis=1, name="cat_time")([x, other])
    x = k.layers.GlobalAveragePooling1D(name="gap")(x)
    y = k.layers.Dense(3, name="out")(x)
    return randomize(k.Model(inp, y), seed)


def test_per_channel_layers_reshapes_and_ops(k):
    from surgery.pruning import analyze

    model = _zoo(k)
    a = analyze(model)
    assert all(g.prunable for g in a.groups if "c1" in g.producers or "c1d" in g.producers)
    removal = a.removal({"norm": [0, 4], "cat_time": [2]})
    assert removal.channels_of("other") == [2] and removal.channels_of("reshape") == [0, 4]
    pruned, _, _, _ = check_twin(model, removal)
    assert pruned.get_layer("rescale").get_config()["scale"] == [
        s for i, s in enumerate(model.get_layer("rescale").get_config()["scale"]) if i not in (0, 4)
    ]
    assert np.asarray(pruned.get_layer("norm").get_config()["mean"]).shape[-1] == 4
    assert pruned.get_layer("reshape").target_shape[-1] == 4


@pytest.mark.slow  # saves and loads three pruned models: the full suite runs it
def test_saved_and_loaded_with_safe_mode(k, tmp_path):
    from surgery.pruning import analyze, prune, select

    for i, model in enumerate([_chain(k), _convnext_like(k), _zoo(k)]):
        pruned, _ = prune(model, select(analyze(model), model, 0.3, scope="global"))
        path = tmp_path / f"m{i}.keras"
        pruned.save(path)
        loaded = k.saving.load_model(path, safe_mode=True)
        x = inputs_for(model)
        assert np.array_equal(outputs(loaded, x), outputs(pruned, x))
        assert [layer.name for layer in loaded.layers] == [layer.name for layer in pruned.layers]


def test_flops_count_multiply_accumulates_times_two(k):
    from surgery.pruning import flops

    inp = k.Input((8, 8, 3))
    x = k.layers.Conv2D(4, 3, name="c")(inp)  # 6x6x4
    x = k.layers.BatchNormalization()(x)
    x = k.layers.DepthwiseConv2D(3, padding="same", depth_multiplier=2)(x)  # 6x6x8
    x = k.layers.SeparableConv2D(5, 3, padding="same")(x)  # 6x6x5
    x = k.layers.Conv2D(10, 1, groups=5)(x)  # 6x6x10, 1 input channel per output
    y = k.layers.Dense(7)(k.layers.Flatten()(x))
    macs = 36 * 9 * 3 * 4 + 36 * 9 * 8 + 36 * (9 * 8 + 8 * 5) + 36 * 1 * 10 + 360 * 7
    assert flops(k.Model(inp, y)) == 2 * macs


def test_flops_of_strided_separable_dense_on_feature_maps_and_transpose(k):
    """A depth multiplier of 2 with stride 2 (the depthwise part counts output positions, on 6 channels), a
    Dense on a 4x4 map (once per position, not once), and a transposed convolution (per input position)."""
    from surgery.pruning import flops

    inp = k.Input((8, 8, 3))
    x = k.layers.SeparableConv2D(5, 3, strides=2, padding="same", depth_multiplier=2)(inp)  # 4x4x5
    x = k.layers.Dense(3)(x)  # 4x4x3
    y = k.layers.Conv2DTranspose(2, 3, strides=2, padding="same")(x)  # 8x8x2
    macs = 16 * (9 * 6 + 6 * 5) + 16 * 5 * 3 + 16 * 9 * 3 * 2
    assert flops(k.Model(inp, y)) == 2 * macs


def test_report_counts_flops_before_and_after(k):
    from surgery.pruning import analyze, flops, prune

    model = _chain(k)
    pruned, report = prune(model, analyze(model).coupled("c1", [0]))
    assert report.flops_before == flops(model) and report.flops_after == flops(pruned)
    # c1 loses 1/8 of its outputs, c2 1/8 of its inputs; the Dense is untouched.
    assert flops(model) - flops(pruned) == 2 * (16 * 27 * 1 + 16 * 9 * 1 * 6)
    assert "params" in report.describe() and report.as_dict()["groups_pruned"] == 1


def test_sequence_model_with_embedding_and_dense_on_rank_3(k):
    from surgery.pruning import analyze, select

    k.utils.set_random_seed(0)
    inp = k.Input((None,), dtype="int32")
    x = k.layers.Embedding(50, 8, name="emb")(inp)
    x = k.layers.Dense(16, activation="relu", name="d1")(x)
    x = k.layers.Conv1D(6, 3, name="c")(x)
    y = k.layers.Dense(2, activation="softmax", name="o")(k.layers.GlobalMaxPooling1D(name="gmp")(x))
    model = randomize(k.Model(inp, y))
    a = analyze(model)
    assert sorted(p for g in a.prunable_groups for p in g.producers) == ["c", "d1", "emb"]
    out = next(g for g in a.groups if "o" in g.producers)
    assert "softmax" in out.reason
    tokens = np.random.default_rng(0).integers(0, 50, (2, 9))
    pruned, _, _, _ = check_twin(model, select(a, model, 0.5), x=tokens)
    assert pruned.get_layer("emb").output_dim == 4 and pruned.get_layer("emb").get_weights()[0].shape == (50, 4)


def _three_way_merge(k, merge, seed=0):
    """Three convolutions joined by one merge layer of three inputs, then a consumer of the merged channels."""
    k.utils.set_random_seed(seed)
    inp = k.Input((16, 16, 3))
    branches = [k.layers.Conv2D(8, 3, padding="same", name=f"c{i}")(inp) for i in (1, 2, 3)]
    x = getattr(k.layers, merge)(name="merge")(branches)
    x = k.layers.BatchNormalization(name="bn")(x)
    x = k.layers.Conv2D(4, 3, name="head")(x)
    y = k.layers.Dense(3, name="out")(k.layers.GlobalAveragePooling2D(name="gap")(x))
    return randomize(k.Model(inp, y), seed)


@pytest.mark.parametrize("merge", ["Add", "Multiply", "Maximum", "Average"])
def test_a_merge_of_three_inputs_joins_all_of_them(k, merge):
    """Every input of an n-ary merge is unified, not only the first two: one group of the three convolutions."""
    from surgery.pruning import analyze

    model = _three_way_merge(k, merge)
    a = analyze(model)
    groups = [g for g in a.groups if {"c1", "c2", "c3"} & set(g.producers)]
    assert len(groups) == 1, [g.producers for g in groups]
    group = groups[0]
    assert group.prunable and sorted(group.producers) == ["c1", "c2", "c3"] and group.channels == 8
    gone = [1, 4, 6]
    removal = a.coupled("c3", gone)  # named by the last input: the one a two-input union would leave out
    for name in ("c1", "c2", "c3", "merge", "bn"):
        assert removal.channels_of(name) == gone, name
    pruned, _, _, _ = check_twin(model, removal)
    assert [pruned.get_layer(f"c{i}").filters for i in (1, 2, 3)] == [8 - len(gone)] * 3


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_transpose_convolution_kernels_are_sliced_on_their_own_axes(k, dims):
    """A ConvNDTranspose kernel is (*kernel_size, out, in), not Conv's (*kernel_size, in, out); 6 in, 10 out."""
    from surgery.pruning import analyze

    k.utils.set_random_seed(0)
    conv = getattr(k.layers, f"Conv{dims}D")
    transpose = getattr(k.layers, f"Conv{dims}DTranspose")
    pool = getattr(k.layers, f"GlobalAveragePooling{dims}D")
    inp = k.Input((16,) * min(dims, 2) + (8,) * max(dims - 2, 0) + (3,))
    x = conv(6, 3, padding="same", name="c1")(inp)
    x = k.layers.BatchNormalization(name="bn")(x)
    x = transpose(10, 3, strides=2, padding="same", name="up")(x)
    x = conv(4, 3, name="c2")(x)
    y = k.layers.Dense(3, name="out")(pool(name="gap")(x))
    model = randomize(k.Model(inp, y))
    a = analyze(model)
    gone_in, gone_out = [1, 4], [0, 3, 7]
    removal = a.removal({"c1": gone_in, "up": gone_out})
    pruned, _, _, _ = check_twin(model, removal)
    old_kernel, old_bias = model.get_layer("up").get_weights()
    new_kernel, new_bias = pruned.get_layer("up").get_weights()
    assert old_kernel.shape[-2:] == (10, 6)
    keep_in = np.isin(np.arange(6), gone_in, invert=True)
    keep_out = np.isin(np.arange(10), gone_out, invert=True)
    assert np.array_equal(new_kernel, np.compress(keep_in, np.compress(keep_out, old_kernel, axis=-2), axis=-1))
    assert np.array_equal(new_bias, old_bias[keep_out])
    assert pruned.get_layer("up").filters == 7
    assert pruned.get_layer("c2").get_weights()[0].shape[-2] == 7


def test_a_shared_layer_stays_one_layer_and_the_other_groups_are_pruned(k):
    """A layer called twice keeps its groups unprunable, but the rest of the model is pruned, the shared
    layer cloned once and called at both places with the original's weights."""
    from surgery.pruning import analyze

    k.utils.set_random_seed(0)
    inp = k.Input((8, 8, 3))
    a = k.layers.Conv2D(6, 3, padding="same", name="c1")(inp)
    b = k.layers.Conv2D(6, 3, padding="same", name="c2")(a)
    shared = k.layers.Conv2D(5, 1, name="shared")
    joined = k.layers.Add(name="join")([shared(a), shared(b)])
    side = k.layers.GlobalAveragePooling2D(name="gap_side")(k.layers.Conv2D(7, 3, name="side")(inp))
    y = k.layers.Concatenate(name="cat")([k.layers.GlobalAveragePooling2D(name="gap")(joined), side])
    model = randomize(k.Model(inp, k.layers.Dense(3, name="out")(y)))
    a = analyze(model)
    assert not [g for g in a.groups if "shared" in g.producers][0].prunable
    removal = a.removal({"side": [0, 2, 5]})
    pruned, _, _, _ = check_twin(model, removal)
    names = [layer.name for layer in pruned.layers]
    assert names.count("shared") == 1 and len(pruned.get_layer("shared")._inbound_nodes) == 2
    assert pruned.get_layer("side").filters == 4
    for old, new in zip(model.get_layer("shared").get_weights(), pruned.get_layer("shared").get_weights()):
        assert np.array_equal(old, new)
