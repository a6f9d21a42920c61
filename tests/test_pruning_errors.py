"""Bad input gets one clear OpError line."""

from __future__ import annotations

import pytest

from pruning_helpers import keras


@pytest.fixture(scope="module")
def setup():
    from surgery.pruning import analyze

    k = keras()
    k.utils.set_random_seed(0)
    inp = k.Input((8, 8, 3), name="image")
    x = k.layers.Conv2D(4, 3, name="block1_conv1")(inp)
    x = k.layers.Lambda(lambda t: t + 1.0, name="mystery")(x)
    x = k.layers.Conv2D(6, 3, name="block1_conv2")(x)
    x = k.layers.Conv2D(5, 3, name="block2_conv1")(x)
    y = k.layers.Dense(2, name="logits")(k.layers.GlobalAveragePooling2D(name="gap")(x))
    model = k.Model(inp, y)
    return k, model, analyze(model)


def _error(fn, *args, **kwargs) -> str:
    from surgery.errors import OpError

    with pytest.raises(OpError) as info:
        fn(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_unknown_layer_suggests_close_names(setup):
    _, _, a = setup
    msg = _error(a.coupled, "block1_conv3", [0])
    assert 'no layer named "block1_conv3"' in msg and "block1_conv1" in msg


def test_index_out_of_range_says_the_range(setup):
    _, _, a = setup
    msg = _error(a.coupled, "block1_conv2", [6])
    assert "out of range" in msg and "0..5" in msg
    assert "0..5" in _error(a.coupled, "block1_conv2", [-1])
    assert "integers" in _error(a.coupled, "block1_conv2", ["a"])


def test_unprunable_group_says_why(setup):
    _, _, a = setup
    msg = _error(a.coupled, "block1_conv1", [0])
    assert "mystery" in msg and "not a layer the pruner understands" in msg
    msg = _error(a.coupled, "logits", [0])
    assert "no prunable output channels" in msg and "output" in msg
    assert "model's input" in _error(a.coupled, "image", [0])


def test_removing_every_channel_of_a_group(setup):
    _, _, a = setup
    msg = _error(a.coupled, "block1_conv2", list(range(6)))
    assert "all 6 channels" in msg


@pytest.mark.parametrize("ratio", [0, 1, -0.1, 1.5, "0.3", True])
def test_ratio_outside_0_1(setup, ratio):
    from surgery.pruning import select

    _, model, a = setup
    assert "ratio" in _error(select, a, model, ratio)


def test_other_bad_selection_options(setup):
    from surgery.pruning import select

    _, model, a = setup
    assert "criterion" in _error(select, a, model, 0.3, criterion="l3")
    assert "scope" in _error(select, a, model, 0.3, scope="everywhere")
    assert "round_to" in _error(select, a, model, 0.3, round_to=0)
    assert "no group 99" in _error(select, a, model, 0.3, groups=[99])
    blocked = next(g.id for g in a.groups if not g.prunable and "block1_conv1" in g.producers)
    assert "cannot be pruned" in _error(select, a, model, 0.3, groups=[blocked])


def test_a_removal_belongs_to_its_model(setup):
    from surgery.pruning import analyze, masked_twin, prune

    k, model, a = setup
    other = k.Model(model.inputs, model.outputs)  # the same layers, another model
    removal = a.coupled("block1_conv2", [0])
    assert "another model" in _error(prune, other, removal)
    assert "another model" in _error(masked_twin, other, removal)
    assert analyze(other).coupled("block1_conv2", [0]).channels_of("block1_conv2") == [0]


def test_removing_every_output_channel_of_one_producer():
    """Fewer channels than the group has, but all of one concatenated piece: Conv2D(filters=0) is refused."""
    from surgery.pruning import analyze

    k = keras()
    inp = k.Input((6, 6, 3))
    small = k.layers.Conv2D(2, 1, name="small")(inp)
    big = k.layers.Conv2D(6, 1, name="big")(inp)
    cat = k.layers.Concatenate(name="cat")([small, big])
    x = k.layers.Add(name="add")([cat, k.layers.Conv2D(8, 1, name="stream")(inp)])
    a = analyze(k.Model(inp, k.layers.Conv2D(3, 1, name="head")(x)))
    msg = _error(a.coupled, "add", [0, 1])
    assert "all 2 output channels of 'small'" in msg
    assert a.coupled("add", [1, 2]).channels_of("small") == [1]


def test_a_layer_that_cannot_be_cloned_is_reused_and_reported(setup):
    from surgery.pruning import prune

    _, model, a = setup
    pruned, report = prune(model, a.coupled("block1_conv2", [0]))
    assert report.reused == ["mystery"]  # a Lambda: Keras refuses to rebuild it from its config in safe mode
    assert pruned.get_layer("mystery") is model.get_layer("mystery")
    assert pruned.get_layer("block1_conv2").filters == 5
