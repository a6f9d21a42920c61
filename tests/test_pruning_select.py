"""Choosing channels: group importance, criteria, local vs global scope, rounding, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from pruning_helpers import keras


@pytest.fixture(scope="module")
def k():
    return keras()


def _dense_pair(k):
    """Input(4) -> Dense(2) 'p' -> Dense(1): channel 0 has l1 4 / l2 4, channel 1 has l1 3 / l2 9."""
    inp = k.Input((4,))
    h = k.layers.Dense(2, use_bias=False, name="p")(inp)
    y = k.layers.Dense(1, use_bias=False, name="out")(h)
    model = k.Model(inp, y)
    model.get_layer("p").set_weights([np.array([[1, 3], [1, 0], [1, 0], [1, 0]], dtype="float32")])
    model.get_layer("out").set_weights([np.ones((2, 1), dtype="float32")])
    return model


def test_l1_and_l2_rank_by_their_norms_over_the_group(k):
    from surgery.pruning import analyze, select

    model = _dense_pair(k)
    a = analyze(model)
    # l1: channel 0 = mean(4, 1) = 2.5, channel 1 = mean(3, 1) = 2  -> remove channel 1
    assert select(a, model, 0.5, criterion="l1").channels_of("p") == [1]
    # l2 (sum of squares): channel 0 = mean(4, 1) = 2.5, channel 1 = mean(9, 1) = 5 -> remove channel 0
    assert select(a, model, 0.5, criterion="l2").channels_of("p") == [0]


def test_l2_is_the_sum_of_squares_not_the_norm(k):
    """Channel 0: 5 in 'p', 0 in 'out'; channel 1: 3 in both. Sums of squares (25, 0) and (9, 9) average 12.5
    and 9, so l2 removes channel 1; norms (5, 0) and (3, 3) would average 2.5 and 3 and remove channel 0."""
    from surgery.pruning import analyze, select

    model = _dense_pair(k)
    model.get_layer("p").set_weights([np.array([[5, 3], [0, 0], [0, 0], [0, 0]], dtype="float32")])
    model.get_layer("out").set_weights([np.array([[0], [3]], dtype="float32")])
    a = analyze(model)
    assert select(a, model, 0.5, criterion="l2").channels_of("p") == [1]
    assert select(a, model, 0.5, criterion="l1").channels_of("p") == [0]
    # squares, not another power: channel 0 (3, 0, 0, 0) and channel 1 (2, 2, 2, 0) in 'p', 1 each in 'out':
    # squares 9 < 12 remove channel 0; cubes (27 > 24) would remove channel 1
    model.get_layer("p").set_weights([np.array([[3, 2], [0, 2], [0, 2], [0, 0]], dtype="float32")])
    model.get_layer("out").set_weights([np.ones((2, 1), dtype="float32")])
    a = analyze(model)
    assert select(a, model, 0.5, criterion="l2").channels_of("p") == [0]


def _two_groups(k, seed=0):
    """Group 'a' (16 channels, even norms) and group 'b' (16 channels, half of them near zero), with BN and a
    ReLU on 'a'."""
    k.utils.set_random_seed(seed)
    inp = k.Input((6, 6, 3))
    x = k.layers.Conv2D(16, 1, use_bias=False, name="a")(inp)
    x = k.layers.BatchNormalization(name="bn")(x)
    x = k.layers.ReLU(name="relu")(x)  # a layer with nothing to score between layers that have
    x = k.layers.Conv2D(16, 1, use_bias=False, name="b")(x)
    x = k.layers.Conv2D(4, 1, use_bias=False, name="head")(x)
    model = k.Model(inp, x)
    ones = np.ones((1, 1, 3, 16), "float32")
    model.get_layer("a").set_weights([ones])
    wb = np.ones((1, 1, 16, 16), "float32")
    wb[..., 8:] = 0.01  # the last 8: choosing by position instead of score would take the first ones
    model.get_layer("b").set_weights([wb])
    model.get_layer("head").set_weights([np.ones((1, 1, 16, 4), "float32")])
    bn = model.get_layer("bn")
    gamma = np.linspace(2.0, 0.5, 16).astype("float32")  # the last channels have the smallest |gamma|
    bn.set_weights([gamma] + bn.get_weights()[1:])
    return model


def test_local_takes_the_ratio_of_every_group(k):
    from surgery.pruning import analyze, select

    model = _two_groups(k)
    a = analyze(model)
    r = select(a, model, 0.25, scope="local")
    assert len(r.channels_of("a")) == 4 and len(r.channels_of("b")) == 4
    assert set(r.channels_of("b")) <= set(range(8, 16))  # the near-zero ones


def test_global_takes_more_from_the_group_with_unimportant_channels(k):
    from surgery.pruning import analyze, select

    model = _two_groups(k)
    a = analyze(model)
    r = select(a, model, 0.25, scope="global")
    removed_a, removed_b = r.channels_of("a"), r.channels_of("b")
    assert len(removed_a) + len(removed_b) == 8  # 25% of all 32 channels
    assert removed_b == list(range(8, 16)) and removed_a == []


def test_bn_scale_uses_gamma_and_falls_back_to_l1_without_bn(k):
    from surgery.pruning import analyze, select

    model = _two_groups(k)
    # kernels of 'a' growing where gamma shrinks: the mean l1 over the group would remove channels 0-3
    model.get_layer("a").set_weights([np.ones((1, 1, 3, 16), "float32") * np.arange(1, 17, dtype="float32")])
    a = analyze(model)
    assert select(a, model, 0.25, criterion="l1", scope="local").channels_of("a") == [0, 1, 2, 3]
    r = select(a, model, 0.25, criterion="bn_scale", scope="local")
    assert r.channels_of("a") == [12, 13, 14, 15]  # smallest |gamma|
    assert set(r.channels_of("b")) <= set(range(8, 16))  # no BN: l1
    assert any("bn_scale" in note and "l1" in note for note in r.notes)


def test_random_is_seeded_and_deterministic(k):
    from surgery.pruning import analyze, select

    model = _two_groups(k)
    a = analyze(model)
    one = select(a, model, 0.5, criterion="random", seed=1)
    assert one.classes == select(a, model, 0.5, criterion="random", seed=1).classes
    assert one.classes != select(a, model, 0.5, criterion="random", seed=2).classes
    assert (
        select(a, model, 0.5, criterion="random").classes == select(a, model, 0.5, criterion="random", seed=0).classes
    )
    assert len(one.channels_of("a")) == 8


def test_round_to_and_min_channels(k):
    from surgery.pruning import analyze, select

    model = _two_groups(k)
    a = analyze(model)
    r = select(a, model, 0.3, round_to=8)  # 16 - floor(4.8) = 12 -> rounded up to 16: not pruned
    assert r.channels_of("a") == [] and r.channels_of("b") == []
    r = select(a, model, 0.6, round_to=8)  # 16 - 9 = 7 -> 8 kept
    assert len(r.channels_of("a")) == 8 and len(r.channels_of("b")) == 8
    r = select(a, model, 0.5, round_to=6)  # 16 - 8 = 8 -> up to 12, not to the nearest multiple (6): 4 removed
    assert len(r.channels_of("a")) == 4 and len(r.channels_of("b")) == 4
    r = select(a, model, 0.9, min_channels=5)
    assert len(r.channels_of("a")) == 11 and len(r.channels_of("b")) == 11
    r = select(a, model, 0.9, scope="global", min_channels=5)
    assert len(r.channels_of("a")) == 11 and len(r.channels_of("b")) == 11


def test_groups_subset(k):
    from surgery.pruning import analyze, select

    model = _two_groups(k)
    a = analyze(model)
    gid = next(g.id for g in a.groups if g.producers == ["b"])
    r = select(a, model, 0.5, groups=[gid])
    assert r.channels_of("a") == [] and len(r.channels_of("b")) == 8


def test_a_producer_keeps_at_least_one_channel(k):
    """A concatenation piece joined to a residual stream must not lose all its filters (Conv2D(filters=0))."""
    from surgery.pruning import analyze, prune, select

    k.utils.set_random_seed(0)
    inp = k.Input((6, 6, 3))
    small = k.layers.Conv2D(2, 1, use_bias=False, name="small")(inp)
    big = k.layers.Conv2D(14, 1, use_bias=False, name="big")(inp)
    cat = k.layers.Concatenate(name="cat")([small, big])
    stream = k.layers.Conv2D(16, 1, use_bias=False, name="stream")(inp)
    x = k.layers.Add(name="add")([cat, stream])
    y = k.layers.Conv2D(3, 1, name="head")(x)
    model = k.Model(inp, y)
    model.get_layer("small").set_weights([np.full((1, 1, 3, 2), 1e-3, "float32")])
    a = analyze(model)
    r = select(a, model, 0.5)
    assert len(r.channels_of("small")) == 1 and len(r.channels_of("add")) == 8
    pruned, _ = prune(model, r)
    assert pruned.get_layer("small").filters == 1


SCALES = {"small": 8, "big": 12}  # channels per group: unequal, so dividing by the sum would rank differently


def _two_scales(k, seed=0):
    """Two parallel groups 'small' and 'big' into one Dense; the kernel of 'big' is scaled 10 x."""
    inp = k.Input((16, 16, 3))
    pooled = []
    for name, n in SCALES.items():
        x = k.layers.Conv2D(n, 1, use_bias=False, name=name)(inp)
        pooled.append(k.layers.GlobalAveragePooling2D(name=f"gap_{name}")(x))
    y = k.layers.Dense(2, use_bias=False, name="out")(k.layers.Concatenate(name="cat")(pooled))
    model = k.Model(inp, y)
    rng = np.random.default_rng(seed)

    def signed(shape):  # magnitudes in [0.5, 1.5]: no channel of either group is near zero
        return (rng.uniform(0.5, 1.5, shape) * rng.choice([-1, 1], shape)).astype("float32")

    for name, n in SCALES.items():
        model.get_layer(name).set_weights([signed((1, 1, 3, n))])
    model.get_layer("out").set_weights([signed((sum(SCALES.values()), 2))])
    big = model.get_layer("big")
    big.set_weights([big.get_weights()[0] * 10])
    return model


def test_global_normalises_each_group_by_its_mean_score(k):
    """Global scope ranks score / group mean: a group of large weights still loses its relatively weak channels."""
    from surgery.pruning import analyze, select

    model = _two_scales(k)
    a = analyze(model)
    rows = np.abs(model.get_layer("out").get_weights()[0]).sum(axis=1)  # l1 of each Dense input row
    scores, start = {}, 0
    for name, n in SCALES.items():
        kernel = np.abs(model.get_layer(name).get_weights()[0]).reshape(-1, n).sum(axis=0)
        scores[name] = (kernel + rows[start : start + n]) / 2  # mean over the two layers holding the channel
        start += n
    ratio = 0.25
    target = int(np.floor(sum(SCALES.values()) * ratio))

    def lowest(values):  # {group: sorted channel indices} of the target lowest values over both groups
        flat = np.concatenate([values[name] for name in SCALES])
        picked = np.argsort(flat, kind="stable")[:target]
        n = SCALES["small"]
        return {"small": sorted(int(i) for i in picked if i < n), "big": sorted(int(i) - n for i in picked if i >= n)}

    expected = lowest({name: s / s.mean() for name, s in scores.items()})
    # The input must tell the rankings apart: raw scores take every channel from the small-scale group, and
    # dividing by the group's sum (or max) instead of its mean chooses other channels.
    raw = lowest(scores)
    assert raw["big"] == [] and expected["big"] and expected["small"], (raw, expected)
    assert lowest({name: s / s.sum() for name, s in scores.items()}) != expected
    assert lowest({name: s / s.max() for name, s in scores.items()}) != expected
    r = select(a, model, ratio, criterion="l1", scope="global")
    assert {"small": r.channels_of("small"), "big": r.channels_of("big")} == expected


def _uneven_group(k):
    """A group whose channels sit in different numbers of layers: a concatenation of 'small' (2 channels:
    small, stream, head) and 'big' with its BatchNormalization (6 channels: big, bn, stream, head), added to
    'stream'. Kernels are constant per channel, so each layer's l1 for a channel is set by hand:

    channel | small or big | gamma | stream | head | sum  | mean over its layers
    0       | 5.8          | -     | 1      | 1    | 7.8  | 2.6
    1       | 10           | -     | 1      | 1    | 12   | 4.0
    2       | 4            | 4     | 1      | 1    | 10   | 2.5
    3-7     | 6            | 6     | 1      | 1    | 14   | 3.5
    """
    inp = k.Input((4, 4, 3))
    small = k.layers.Conv2D(2, 1, use_bias=False, name="small")(inp)
    big = k.layers.Conv2D(6, 1, use_bias=False, name="big")(inp)
    big = k.layers.BatchNormalization(name="bn")(big)
    cat = k.layers.Concatenate(name="cat")([small, big])
    stream = k.layers.Conv2D(8, 1, use_bias=False, name="stream")(inp)
    x = k.layers.Add(name="add")([cat, stream])
    y = k.layers.Conv2D(3, 1, use_bias=False, name="head")(x)
    model = k.Model(inp, y)

    def columns(l1_per_channel, rows):  # a (1, 1, rows, n) kernel whose column c has l1 l1_per_channel[c]
        return np.tile(np.asarray(l1_per_channel, "float32") / rows, (1, 1, rows, 1))

    model.get_layer("small").set_weights([columns([5.8, 10], 3)])
    model.get_layer("big").set_weights([columns([4, 6, 6, 6, 6, 6], 3)])
    bn = model.get_layer("bn")
    bn.set_weights([np.array([4, 6, 6, 6, 6, 6], "float32"), *bn.get_weights()[1:]])
    model.get_layer("stream").set_weights([columns([1] * 8, 3)])
    model.get_layer("head").set_weights([np.full((1, 1, 8, 3), 1 / 3, "float32")])
    return model


def test_a_channels_importance_is_its_mean_over_the_layers_that_hold_it(k):
    """Channel 2 has the lowest mean (2.5) but not the lowest sum (channel 0's 7.8 is lower), and dividing by
    one more or one fewer layer than it sits in ranks channel 0 lowest too (1.95 < 2.0, 3.9 < 3.33 fails the
    other way): only the mean over the layers that hold each channel removes channel 2."""
    from surgery.pruning import analyze, select
    from surgery.pruning.importance import class_scores

    model = _uneven_group(k)
    a = analyze(model)
    (group,) = [g for g in a.prunable_groups if "big" in g.producers]
    assert sorted(group.producers) == ["big", "small", "stream"], group.producers
    scores, _ = class_scores(a, "l1")
    roots = a.root[a.record("add").out_ids[0]]  # the class of each of the sum's channels
    by_channel = {c: scores[r] for c, r in enumerate(roots.tolist())}
    assert by_channel == pytest.approx({0: 2.6, 1: 4.0, 2: 2.5, 3: 3.5, 4: 3.5, 5: 3.5, 6: 3.5, 7: 3.5})
    removed = select(a, model, 1 / 8, criterion="l1")
    assert removed.channels_of("add") == [2] and removed.channels_of("big") == [0]
    assert removed.channels_of("small") == []


def test_bn_scale_falls_back_to_l1_for_a_group_with_channels_that_have_no_gamma(k):
    """Channels 0 and 1 pass through no BatchNormalization: bn_scale cannot judge them, and scoring them 0
    would remove them first whatever their weights. The group is scored by l1, and the note says so."""
    from surgery.pruning import analyze, select

    model = _uneven_group(k)
    a = analyze(model)
    r = select(a, model, 1 / 8, criterion="bn_scale")
    assert r.channels_of("add") == [2]
    assert any("bn_scale" in note and "l1" in note for note in r.notes), r.notes


def test_bn_scale_is_the_mean_gamma_over_the_batchnormalizations_that_hold_the_channel(k):
    """Channels 0-1 pass one BatchNormalization ('bn_s'), channels 2-7 two ('bn_b1', 'bn_b2'). Channel 2's
    gammas 4 and 1 average 2.5, under channel 0's 2.6, though their sum (5) is not, and dividing by one
    more or one fewer layer than holds the channel would rank channel 0 lowest: only the mean removes 2."""
    from surgery.pruning import analyze, select
    from surgery.pruning.importance import class_scores

    inp = k.Input((4, 4, 3))
    small = k.layers.BatchNormalization(name="bn_s")(k.layers.Conv2D(2, 1, use_bias=False, name="small")(inp))
    big = k.layers.Conv2D(6, 1, use_bias=False, name="big")(inp)
    big = k.layers.BatchNormalization(name="bn_b2")(k.layers.BatchNormalization(name="bn_b1")(big))
    cat = k.layers.Concatenate(name="cat")([small, big])
    x = k.layers.Add(name="add")([cat, k.layers.Conv2D(8, 1, use_bias=False, name="stream")(inp)])
    model = k.Model(inp, k.layers.Conv2D(3, 1, use_bias=False, name="head")(x))
    for name, gamma in (("bn_s", [2.6, 10]), ("bn_b1", [4, 6, 6, 6, 6, 6]), ("bn_b2", [1, 6, 6, 6, 6, 6])):
        bn = model.get_layer(name)
        bn.set_weights([np.array(gamma, "float32"), *bn.get_weights()[1:]])
    a = analyze(model)
    scores, bn_groups = class_scores(a, "bn_scale")
    roots = a.root[a.record("add").out_ids[0]]
    assert a.class_group[int(roots[0])] in bn_groups
    by_channel = {c: scores[r] for c, r in enumerate(roots.tolist())}
    assert by_channel == pytest.approx({0: 2.6, 1: 10.0, 2: 2.5, 3: 6.0, 4: 6.0, 5: 6.0, 6: 6.0, 7: 6.0})
    removed = select(a, model, 1 / 8, criterion="bn_scale")
    assert removed.channels_of("add") == [2] and removed.notes == ()
