"""A plugin declares how its own layer class passes channels (surgery_register_channel_rules), and prune,
plan --groups and the pruning API remove channels through that layer; without the declaration, or with one
that fails, the layer keeps its channels and says why."""

from __future__ import annotations

import numpy as np
import pytest

import surgery
from surgery.plugins import Candidate, builtin_candidates, load_plugins

from helpers import write_spec

LABEL = "'scale' (ChannelScale)"


def _plugins(*modules):
    return load_plugins(builtin_candidates() + [Candidate.of(m, dist="surgery-test") for m in modules])


@pytest.fixture(scope="module")
def scaled(tmp_path_factory, keras):
    """conv1 (8) -> ChannelScale -> relu -> conv2 (6) -> pool -> dense (3), saved as .keras."""
    from layer_plugins.scale_layer import ChannelScale

    surgery.seeded(0)
    inputs = keras.Input((12, 12, 3), name="image")
    x = keras.layers.Conv2D(8, 3, name="conv1")(inputs)
    x = ChannelScale(name="scale")(x)
    x = keras.layers.ReLU(name="relu")(x)
    x = keras.layers.Conv2D(6, 3, name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    model = keras.Model(inputs, keras.layers.Dense(3, name="dense")(x), name="scaled")
    path = tmp_path_factory.mktemp("scaled") / "scaled.keras"
    model.save(str(path))
    return model, path


def _group_of(analysis, layer):
    return next(g for g in analysis.groups if "conv1" in g.producers and layer in g.members)


def test_an_undeclared_layer_keeps_its_channels_with_the_reason(scaled):
    model, _ = scaled
    group = _group_of(surgery.analyze_channels(model), "scale")
    assert not group.prunable and f"{LABEL} is not a layer the pruner understands" in group.reasons[0]


def test_surgery_register_channel_rules_lets_prune_remove_channels_through_the_layer(scaled):
    """conv1's channels 1 and 4 go through the scale layer: its scale loses the same two entries, conv2 the
    same two input rows, and the pruned model computes what the original does with those channels zeroed."""
    from layer_plugins import channel_scale

    model, _ = scaled
    declared = _plugins(channel_scale).registry.layer_rules()
    assert list(declared) == ["layer_plugins.scale_layer.ChannelScale"]
    analysis = surgery.analyze_channels(model, declared=declared)
    assert _group_of(analysis, "scale").prunable
    removal = analysis.removal({"conv1": [1, 4]})
    pruned, report = surgery.prune_channels(model, removal)
    kept = [0, 2, 3, 5, 6, 7]
    np.testing.assert_array_equal(pruned.get_layer("scale").scale.numpy(), model.get_layer("scale").scale.numpy()[kept])
    np.testing.assert_array_equal(
        pruned.get_layer("conv2").kernel.numpy(), model.get_layer("conv2").kernel.numpy()[:, :, kept]
    )
    x = np.random.default_rng(0).standard_normal((2, 12, 12, 3)).astype("float32")
    twin = surgery.masked_twin(model, removal)
    np.testing.assert_allclose(pruned(x), twin(x), atol=1e-5)
    assert not np.allclose(pruned(x), model(x), atol=1e-3)  # the channels did matter
    assert report.params_after < report.params_before


def test_the_prune_op_and_plan_use_the_plugins_rule(scaled, tmp_path):
    from layer_plugins import channel_scale

    _, path = scaled
    spec = {
        "surgery": 1,
        "name": "pruned",
        "steps": [
            {"op": "backbone", "name": "keras_file", "path": str(path)},
            {"op": "prune", "channels": {"conv1": [0, 7]}},
        ],
    }
    plugins = _plugins(channel_scale)
    model = surgery.build(spec, plugins)
    assert model.get_layer("scale").scale.shape == (6,) and model.get_layer("conv1").kernel.shape[-1] == 6
    groups = surgery.plan(write_spec(tmp_path, {**spec, "steps": spec["steps"][:1]}), plugins).groups()
    assert _group_of(groups, "scale").prunable
    with pytest.raises(surgery.OpError, match="is not a layer the pruner understands"):
        surgery.build(spec, _plugins())


def test_a_rule_that_fails_leaves_the_channels_with_its_error(scaled):
    from layer_plugins import broken_rules

    model, _ = scaled
    analysis = surgery.analyze_channels(model, declared=_plugins(broken_rules).registry.layer_rules())
    group = _group_of(analysis, "scale")
    assert not group.prunable
    assert f"{LABEL}: its plugin's channel rule raised ValueError: no idea" in group.reasons[0]


def test_a_rule_must_name_every_weight_of_its_layer(scaled):
    model, _ = scaled
    declared = {"layer_plugins.scale_layer.ChannelScale": lambda layer, site: surgery.ChannelRule("pass")}
    group = _group_of(surgery.analyze_channels(model, declared=declared), "scale")
    assert not group.prunable and f"{LABEL} has weights the pruner does not know (scale)" in group.reasons[0]


@pytest.mark.parametrize(
    "layer, rule, says",
    [
        ("ChannelScale", print, "name the layer class by its module and class name"),
        ("keras.layers.Dense", print, "Keras' own layers have surgery's rules"),
        ("mine.Layer", "not callable", "rule must be a callable"),
    ],
    ids=["bare class name", "a keras class", "not callable"],
)
def test_a_bad_registration_disables_the_plugin_with_one_line(layer, rule, says):
    class Plugin:
        @surgery.hookimpl
        def surgery_register_channel_rules(self, register):
            register(layer, rule)

    plugins = load_plugins(builtin_candidates() + [Candidate.of(Plugin(), name="bad", dist="surgery-bad")])
    (broken,) = plugins.broken
    assert broken.name == "bad" and says in broken.error and broken.error.startswith("surgery_register_channel_rules")
    assert plugins.registry.channel_rules == {}


def test_the_plugins_command_lists_channel_rules(cli, monkeypatch):
    from layer_plugins import channel_scale

    monkeypatch.setattr("surgery.plugins.loading.load_plugins", lambda: _plugins(channel_scale))
    done = cli("plugins")
    assert done.exit_code == 0, done.output
    assert "    channel rules: layer_plugins.scale_layer.ChannelScale" in done.stdout


def test_check_plugin_reports_the_channel_rules_it_registered():
    from layer_plugins import channel_scale

    checked = surgery.check_plugin(channel_scale, fresh_import=False)
    assert checked.channel_rules == ["layer_plugins.scale_layer.ChannelScale"] and checked.ops == []
