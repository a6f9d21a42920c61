"""Dependency analysis on small hand-made models: which channels are coupled, which groups cannot be pruned."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from pruning_helpers import keras


@pytest.fixture(scope="module")
def k():
    return keras()


def _group_of(analysis, layer):
    rec = analysis.record(layer)
    gids = np.unique(analysis.id_group[rec.out_ids[0]]).tolist()
    assert len(gids) == 1, gids
    return analysis.groups[gids[0]]


def test_chain_bn_follows_its_conv(k):
    from surgery.pruning import analyze

    x = inp = k.Input((8, 8, 3), name="image")
    x = k.layers.Conv2D(6, 3, name="c1")(x)
    x = k.layers.BatchNormalization(name="bn1")(x)
    x = k.layers.ReLU(name="r1")(x)
    x = k.layers.Conv2D(5, 3, name="c2")(x)
    model = k.Model(inp, x)
    a = analyze(model)
    g1 = _group_of(a, "c1")
    assert g1.prunable and g1.channels == 6 and g1.producers == ["c1"]
    assert {"c1", "bn1", "r1", "c2"} <= set(g1.members)
    assert _group_of(a, "bn1") is g1 and _group_of(a, "r1") is g1
    out = _group_of(a, "c2")
    assert not out.prunable and "model's output" in out.reason
    # The input's group is unprunable and not worth listing.
    assert all(g["producers"] != ["image"] for g in a.as_dict()["unprunable"])


def test_residual_add_couples_producers_and_concat_keeps_offsets(k):
    from surgery.pruning import analyze

    inp = k.Input((8, 8, 3))
    a1 = k.layers.Conv2D(4, 1, name="a1")(inp)
    a2 = k.layers.Conv2D(4, 1, name="a2")(inp)
    s = k.layers.Add(name="add")([a1, a2])
    b = k.layers.Conv2D(3, 1, name="b")(inp)
    cat = k.layers.Concatenate(name="cat")([s, b])
    y = k.layers.Conv2D(2, 1, name="head")(cat)
    a = analyze(k.Model(inp, y))
    g = _group_of(a, "a1")
    assert g is _group_of(a, "a2") and g is _group_of(a, "add")
    assert sorted(g.producers) == ["a1", "a2"] and g.channels == 4
    assert _group_of(a, "b").channels == 3 and _group_of(a, "b") is not g
    # Channel 5 of the concatenation is channel 1 of b; channel 2 of it is channel 2 of the stream.
    r = a.coupled("cat", [2, 5])
    assert r.channels_of("b") == [1] and r.channels_of("a1") == [2] and r.channels_of("a2") == [2]
    assert r.channels_of("cat") == [2, 5]


def test_flatten_tiles_channels(k):
    from surgery.pruning import analyze

    inp = k.Input((4, 4, 2))
    x = k.layers.Conv2D(3, 3, name="c")(inp)  # 2x2x3
    f = k.layers.Flatten(name="flat")(x)
    y = k.layers.Dense(4, name="d")(f)
    a = analyze(k.Model(inp, y))
    r = a.coupled("c", [1])
    # channels_last flattening: index = spatial * C + c
    assert r.channels_of("flat") == [1, 4, 7, 10]


def test_squeeze_excitation_gate_is_coupled_but_spatial_map_is_not(k):
    from surgery.pruning import analyze

    inp = k.Input((8, 8, 3))
    x = k.layers.Conv2D(6, 1, name="x")(inp)
    se = k.layers.GlobalAveragePooling2D(keepdims=True, name="gap")(x)
    se = k.layers.Conv2D(2, 1, activation="relu", name="reduce")(se)
    se = k.layers.Conv2D(6, 1, activation="sigmoid", name="expand")(se)
    x = k.layers.Multiply(name="gate")([x, se])
    att = k.layers.Conv2D(1, 1, activation="sigmoid", name="att")(x)  # (H, W, 1): broadcast, not coupled
    x = k.layers.Multiply(name="attend")([x, att])
    y = k.layers.Conv2D(2, 1, name="head")(x)
    a = analyze(k.Model(inp, y))
    g = _group_of(a, "x")
    assert g is _group_of(a, "expand") and g is _group_of(a, "attend")
    assert g.channels == 6
    assert _group_of(a, "reduce").channels == 2 and _group_of(a, "reduce") is not g
    assert _group_of(a, "att") is not g and _group_of(a, "att").channels == 1


def test_depthwise_multiplier_repeats_ids(k):
    from surgery.pruning import analyze

    inp = k.Input((8, 8, 3))
    x = k.layers.Conv2D(4, 1, name="c")(inp)
    x = k.layers.DepthwiseConv2D(3, depth_multiplier=2, name="dw")(x)
    y = k.layers.Conv2D(2, 1, name="head")(x)
    a = analyze(k.Model(inp, y))
    r = a.coupled("c", [1])
    assert r.channels_of("dw") == [2, 3]
    assert a.coupled("dw", [3]).classes == r.classes
    assert _group_of(a, "c") is _group_of(a, "dw")


@pytest.mark.parametrize(
    "blocker, words",
    [
        ("lambda", ["lam", "not a layer the pruner understands"]),
        ("layernorm", ["ln", "LayerNormalization", "normalises across the channel axis"]),
        ("grouped", ["grp", "grouped convolution"]),
        ("shared", ["shared", "called 2 times"]),
        ("nested", ["inner", "nested model"]),
        ("softmax", ["sm", "softmax"]),
    ],
)
def test_blockers_make_the_group_unprunable_with_a_reason(k, blocker, words):
    from surgery.pruning import analyze

    inp = k.Input((8, 8, 3))
    x = k.layers.Conv2D(4, 1, name="c")(inp)
    if blocker == "lambda":
        x = k.layers.Lambda(lambda t: t * 2.0, name="lam")(x)
    elif blocker == "layernorm":
        x = k.layers.LayerNormalization(name="ln")(x)
    elif blocker == "grouped":
        x = k.layers.Conv2D(4, 1, groups=2, name="grp")(x)
    elif blocker == "shared":
        shared = k.layers.Conv2D(4, 1, name="shared")
        x = shared(shared(x))
    elif blocker == "nested":
        inner = k.Sequential([k.layers.Conv2D(4, 1)], name="inner")
        x = inner(x)
    elif blocker == "softmax":
        x = k.layers.Softmax(name="sm")(x)
    y = k.layers.Conv2D(2, 1, name="head")(k.layers.ReLU(name="r")(x))
    a = analyze(k.Model(inp, y))
    g = _group_of(a, "c")
    assert not g.prunable
    for w in words:
        assert w in g.reason
    reasons = " ".join(d.get("reason", "") for d in a.as_dict()["unprunable"])
    assert words[0] in reasons


def test_layernorm_blocks_the_stream_but_not_the_mlp(k):
    from surgery.pruning import analyze

    inp = k.Input((8, 8, 3))
    s = k.layers.Conv2D(4, 1, name="stem")(inp)
    x = k.layers.LayerNormalization(name="ln")(s)
    x = k.layers.Dense(8, name="pw1")(x)
    x = k.layers.Activation("gelu", name="act")(x)
    x = k.layers.Dense(4, name="pw2")(x)
    y = k.layers.Conv2D(2, 1, name="head")(s + x)
    a = analyze(k.Model(inp, y))
    assert _group_of(a, "pw1").prunable
    stream = _group_of(a, "pw2")
    assert stream is _group_of(a, "stem") and not stream.prunable and "LayerNormalization" in stream.reason


def test_describe_and_as_dict_are_compact_and_json(k):
    from surgery.pruning import analyze

    inp = k.Input((8, 8, 3))
    x = k.layers.Conv2D(4, 1, name="c")(inp)
    x = k.layers.Lambda(lambda t: t, name="lam")(x)
    x = k.layers.Conv2D(5, 1, name="c2")(x)
    y = k.layers.Conv2D(2, 1, name="head")(x)
    a = analyze(k.Model(inp, y))
    d = json.loads(json.dumps(a.as_dict()))
    assert [g["producers"] for g in d["prunable"]] == [["c2"]]
    assert {"channels", "producers", "prunable", "id"} <= set(d["prunable"][0])
    assert any("lam" in g["reason"] for g in d["unprunable"])
    text = a.describe()
    assert text.splitlines()[0].startswith("1 prunable group (")
    assert "lam" in text and len(text.splitlines()) <= 6


def test_sequential_models_are_analysed_and_subclassed_refused(k):
    from surgery.errors import OpError
    from surgery.pruning import analyze, prune

    model = k.Sequential(
        [
            k.Input((8, 8, 3)),
            k.layers.Conv2D(4, 3, name="c"),
            k.layers.ReLU(name="r"),
            k.layers.Flatten(name="f"),
            k.layers.Dense(3, name="o"),
        ],
        name="seq",
    )
    a = analyze(model)
    assert a.as_dict(detail=True)["prunable"][0]["members"] == ["c", "r", "f", "o"]
    pruned, _ = prune(model, a.coupled("c", [1]))
    assert pruned.name == "seq" and pruned.get_layer("o").get_weights()[0].shape == (108, 3)

    class Sub(k.Model):
        def __init__(self):
            super().__init__(name="sub")
            self.c = k.layers.Conv2D(3, 1)

        def call(self, x):
            return self.c(x)

    sub = Sub()
    sub(np.ones((1, 4, 4, 3), "float32"))
    with pytest.raises(OpError, match="functional model"):
        analyze(sub)


def test_importing_pruning_does_not_import_tensorflow():
    code = "import sys, surgery.pruning; print('tensorflow' in sys.modules, 'keras' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
