"""Plugin loading: registration through each hook, isolation of broken plugins, the environment switches.

In-process tests build their plugin manager with the ``load_plugins``
factory from exactly the candidates they name, so whatever is installed on
the machine does not leak in. CLI tests install the fault plugins in
tests/fault_plugins as real distributions on a subprocess's PYTHONPATH.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from fault_plugins import FAULTS, dist_name, install, no_plugin_selection_from_the_shell  # noqa: F401

from surgery import hookimpl
from surgery.plugins.application_options import APPLICATION_OPTIONS
from surgery.plugins.loading import Candidate, builtin_candidates, load_plugins, select

from helpers import run_surgery, write_spec

GOOD_SPEC = {
    "surgery": 1,
    "name": "good",
    "steps": [
        {"op": "backbone", "name": "vgg16", "weights": None, "include_top": False, "input_shape": [32, 32, 3]},
        {"op": "slice", "to": "block1_pool"},
        {"op": "append", "layer": "Flatten"},
        {"op": "append", "layer": "Dense", "config": {"units": 2}},
    ],
}


def _noop(state, params, ctx):
    return state


class OpPlugin:
    """Registers one op, ``shout``; an instance with hookimpl methods is a plugin too."""

    @hookimpl
    def surgery_register_ops(self, register):
        register(
            "shout",
            {"type": "object", "properties": {"loud": {"type": "boolean"}}},
            _noop,
            description="does nothing, loudly",
            examples=[{"loud": True}],
        )


def load(*plugins, builtins=False):
    """Plugins from exactly these objects ((name, obj) pairs), optionally after the built-ins."""
    cands = builtin_candidates() if builtins else []
    return load_plugins(cands + [Candidate.of(obj, name) for name, obj in plugins])


def record(plugins, name):
    return next(r for r in plugins.records if r.name == name)


# --- the factory and the three hooks, in process ---


def test_factory_loads_only_the_candidates_given():
    plugins = load_plugins(builtin_candidates())
    assert plugins.records and all(r.builtin and not r.error for r in plugins.records)
    assert "append" in plugins.registry.ops
    # tinynet may well be installed here; the factory still leaves it out
    assert "head" not in plugins.registry.ops and "tinynet" not in plugins.registry.backbones
    assert load_plugins([]).registry.ops == {}


def test_surgery_register_ops_records_the_plugin_of_each_op():
    plugins = load(("demo", OpPlugin()))
    assert record(plugins, "demo").ops == ["shout"] and not plugins.broken
    op = plugins.registry.ops["shout"]
    assert (op.plugin, op.description, op.examples) == ("demo", "does nothing, loudly", ({"loud": True},))
    assert plugins.registry.step_schema("shout")["properties"]["op"] == {"const": "shout"}


def test_surgery_register_ops_rejects_an_example_that_does_not_match():
    class Bad:
        @hookimpl
        def surgery_register_ops(self, register):
            register(
                "shout",
                {"type": "object", "properties": {"loud": {"type": "boolean"}}},
                _noop,
                examples=[{"loud": "yes"}],
            )

    plugins = load(("bad", Bad()))
    assert record(plugins, "bad").error.startswith("surgery_register_ops: op 'shout': example 0 does not match")


def test_surgery_register_backbones_defaults_to_the_application_options():
    class Backbones:
        @hookimpl
        def surgery_register_backbones(self, register):
            register("mini", lambda **kw: None, input_shape=[8, 8, 1], preprocess="mini.preprocess")

    plugins = load(("bb", Backbones()))
    info = plugins.registry.backbones["mini"]
    assert info.options == APPLICATION_OPTIONS and info.input_shape == (8, 8, 1) and info.plugin == "bb"
    assert record(plugins, "bb").backbones == ["mini"]


def test_surgery_register_backbones_rejects_a_bad_input_shape():
    class Bad:
        @hookimpl
        def surgery_register_backbones(self, register):
            register("mini", lambda **kw: None, input_shape=[8, -8, 1])

    error = record(load(("bad", Bad())), "bad").error
    assert (
        error == "surgery_register_backbones: backbone 'mini': input_shape must be a list of positive integers, "
        "got [8, -8, 1]"
    )


def test_surgery_register_exporters_registers_a_format_and_checks_its_suffix():
    class Exporters:
        @hookimpl
        def surgery_register_exporters(self, register):
            register("txt", lambda model, path, options: None, suffix=".txt")

    class Bad:
        @hookimpl
        def surgery_register_exporters(self, register):
            register("csv", lambda model, path, options: None, suffix="csv")

    plugins = load(("ex", Exporters()), ("bad", Bad()))
    assert plugins.registry.exporters["txt"].plugin == "ex" and "csv" not in plugins.registry.exporters
    assert "suffix must be a file suffix" in record(plugins, "bad").error


def test_a_clashing_plugin_is_out_entirely(fault_module):
    plugins = load(("fault_clash", fault_module("fault_clash")), builtins=True)
    assert record(plugins, "fault_clash").error == FAULTS["fault_clash"]
    assert "pad" not in plugins.registry.ops  # its other op is not half-registered
    assert record(plugins, "fault_clash").attempted == [("op", "pad"), ("op", "append")]
    assert not plugins.manager.has_plugin("fault_clash")
    assert plugins.registry.ops["append"].plugin == "append"


def test_of_two_third_parties_with_one_name_the_first_keeps_it():
    plugins = load(("first", OpPlugin()), ("second", OpPlugin()))
    assert record(plugins, "second").error == "op 'shout' is already registered by plugin 'first'"
    assert plugins.registry.ops["shout"].plugin == "first"


def test_a_plugin_name_taken_twice_is_reported():
    first, second = OpPlugin(), OpPlugin()
    plugins = load_plugins(
        [Candidate("demo", lambda: first, "dist-a", "1"), Candidate("demo", lambda: second, "dist-b", "2")]
    )
    assert plugins.records[1].error == "the plugin name 'demo' is already taken by dist-a 1"
    assert plugins.manager.get_plugin("demo") is first  # the second's failure leaves the first alone


def test_a_misspelled_hook_is_an_error_not_ignored():
    class Typo:
        @hookimpl
        def surgery_register_opz(self, register):
            pass

    error = record(load(("typo", Typo())), "typo").error
    assert error.startswith("invalid hooks:") and "surgery_register_opz" in error


@pytest.mark.parametrize(
    "raised, reason",
    [
        (SystemExit(3), "failed to import: SystemExit: 3"),
        (ValueError("line one\n  line two"), "failed to import: ValueError: line one line two"),
    ],
)
def test_an_import_failure_of_any_kind_is_one_line(raised, reason):
    def load_it():
        raise raised

    plugins = load_plugins(builtin_candidates() + [Candidate("odd", load_it, "surgery-odd", "1")])
    assert record(plugins, "odd").error == reason
    assert "append" in plugins.registry.ops


def test_select_matches_plugin_and_distribution_names_and_warns_on_unknown(monkeypatch):
    cands = [
        Candidate("append", None, "surgery"),
        Candidate("tinynet", None, "surgery-tinynet"),
        Candidate("other", None, "Other.Plugin"),
    ]
    monkeypatch.setenv("SURGERY_LOAD_PLUGINS", "other_plugin, nothere")
    monkeypatch.setenv("SURGERY_BLOCK_PLUGINS", "append")
    warnings = []
    assert [c.name for c in select(cands, warnings)] == ["other"]
    assert warnings == ["warning: SURGERY_LOAD_PLUGINS names 'nothere', which is not an installed plugin"]


# --- the CLI, with the fault plugins installed as distributions ---


@pytest.fixture
def fault_module():
    """Import a fault plugin from tests/fault_plugins by name (for in-process loading)."""
    import importlib

    return lambda name: importlib.import_module(f"fault_plugins.{name}")


@pytest.fixture
def good_spec(tmp_path):
    return write_spec(tmp_path, GOOD_SPEC)


def surgery_with(site, *args, **env):
    return run_surgery(*args, env={"PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]), **env})


def listed(site, **env) -> dict:
    done = surgery_with(site, "plugins", "--json", **env)
    assert done.returncode == 0, done.stderr
    return {r["name"]: r for r in json.loads(done.stdout)}


def warnings_of(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


@pytest.mark.slow
@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_fault_plugin_gives_one_line_and_the_rest_work(fault, tmp_path, good_spec):
    site = install(tmp_path / "site", fault)
    done = surgery_with(site, "validate", good_spec)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ok: ")
    lines = warnings_of(done.stderr)
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"warning: plugin '{fault}' ({dist_name(fault)} 0.1) is disabled: "), lines[0]
    assert FAULTS[fault] in lines[0]
    entry = listed(site)[fault]
    assert entry["status"] == "broken" and FAULTS[fault] in entry["error"]
    assert entry["distribution"] == dist_name(fault) and entry["version"] == "0.1"
    text = surgery_with(site, "plugins").stdout
    assert f"{fault}  [{dist_name(fault)} 0.1]  BROKEN: " in text


@pytest.mark.slow
def test_all_four_faults_at_once_and_a_good_spec_still_applies(tmp_path, good_spec):
    site = install(tmp_path / "site", *FAULTS)
    done = surgery_with(site, "apply", good_spec, "-o", tmp_path / "out")
    assert done.returncode == 0, done.stderr
    lines = warnings_of(done.stderr)
    assert len(lines) == 4, done.stderr
    for fault, reason in FAULTS.items():
        assert any(line.startswith(f"warning: plugin '{fault}'") and reason in line for line in lines), fault
    assert (tmp_path / "out" / "good.keras").stat().st_size > 0
    assert "Traceback" not in done.stderr


def test_a_spec_using_a_broken_plugins_op_says_which_plugin_is_disabled(tmp_path):
    site = install(tmp_path / "site", "fault_schema")
    spec = write_spec(tmp_path, {**GOOD_SPEC, "steps": GOOD_SPEC["steps"] + [{"op": "resize", "size": 3}]})
    done = surgery_with(site, "validate", spec)
    assert done.returncode == 2
    line = done.stderr.splitlines()[-1]
    assert line.startswith(
        f"error: {spec}: steps[4]: op \"resize\" comes from plugin 'fault_schema', which is disabled: "
    ), line
    assert "invalid JSON Schema at properties/size/type" in line, line


@pytest.mark.parametrize(
    "env, present, absent",
    [
        ({}, {"fault_raises", "fault_clash", "append"}, set()),
        ({"SURGERY_LOAD_PLUGINS": ""}, {"append", "slice"}, {"fault_raises", "fault_clash", "tinynet"}),
        ({"SURGERY_LOAD_PLUGINS": "fault_raises"}, {"fault_raises", "append"}, {"fault_clash", "tinynet"}),
        ({"SURGERY_LOAD_PLUGINS": "surgery-fault-clash"}, {"fault_clash"}, {"fault_raises"}),
        ({"SURGERY_BLOCK_PLUGINS": "fault_raises, slice"}, {"fault_clash", "append"}, {"fault_raises", "slice"}),
    ],
)
def test_environment_changes_what_plugins_lists(tmp_path, env, present, absent):
    names = set(listed(install(tmp_path / "site", "fault_raises", "fault_clash"), **env))
    assert present <= names, names
    assert not absent & names, names


def test_a_misspelled_name_in_the_environment_is_warned_about(tmp_path):
    done = surgery_with(install(tmp_path / "site", "fault_raises"), "ops", SURGERY_BLOCK_PLUGINS="fault_raisez")
    assert done.returncode == 0
    assert "warning: SURGERY_BLOCK_PLUGINS names 'fault_raisez', which is not an installed plugin" in done.stderr
    assert "warning: plugin 'fault_raises'" in done.stderr  # so it was not blocked


@pytest.mark.parametrize("command", [["plugins"], ["plugins", "--json"], ["validate", "SPEC"]])
def test_registration_imports_no_tensorflow_even_when_plugins_fail(command, good_spec, tmp_path):
    site = install(tmp_path / "site", *FAULTS)
    args = [str(good_spec) if a == "SPEC" else a for a in command]
    code = (
        "import sys\n"
        "from surgery.cli import main\n"
        f"main({args!r}, standalone_mode=False)\n"
        "heavy = sorted(m for m in ('tensorflow', 'keras') if m in sys.modules)\n"
        "sys.stderr.write('HEAVY=' + ','.join(heavy))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    assert "fault_import" in done.stdout + done.stderr  # the broken plugins were there
    assert done.stderr.splitlines()[-1] == "HEAVY=", done.stderr


# --- the conformance helper ---


def _probe_with_conv5():
    """The probe model plus a ResNet-style ``conv5_*`` layer, which unfreeze's example names."""
    from surgery.keras_env import keras
    from surgery.model.graph import make_model
    from surgery.testing import probe_model

    probe = probe_model()
    return make_model(probe.inputs, keras().layers.Conv2D(4, 1, name="conv5_block1_conv")(probe.output))


@pytest.fixture(scope="module")
def saved_probe(tmp_path_factory):
    from surgery.testing import probe_model

    path = tmp_path_factory.mktemp("probe") / "probe.keras"
    probe_model().save(path)
    return path


def _builtin(name):
    import importlib

    return importlib.import_module(f"surgery_plugins.{name}")


def _conformance_options(module, saved_probe) -> dict:
    """What each built-in needs beyond the defaults: a model its examples fit, cheap backbones, files."""
    return {
        "op_freeze": lambda: {"model": _probe_with_conv5},
        "op_backbone": lambda: {"others": [_builtin("applications")]},
        "applications": lambda: {
            "backbones": ["vgg16"],
            "backbone_options": {"vgg16": {"weights": None, "include_top": False, "input_shape": [32, 32, 3]}},
        },
        "keras_file": lambda: {"backbone_options": {"keras_file": {"path": str(saved_probe)}}},
    }.get(module, dict)()


@pytest.mark.parametrize(
    "module",
    ["op_append", "op_slice", "op_freeze", "op_backbone", "applications", "keras_file", "export_keras"]
    # The checked exporters convert and run the probe model (a SavedModel is a folder: it must pass too).
    + [pytest.param(m, marks=pytest.mark.slow) for m in ("export_onnx", "export_saved_model")],
)
def test_builtins_pass_the_conformance_helper(module, saved_probe):
    from surgery.testing import check_plugin

    checked = check_plugin(_builtin(module), **_conformance_options(module, saved_probe))
    assert checked.ops or checked.backbones or checked.exporters, checked


class NonConforming:
    """Registers cleanly, and then fails every kind of check the helper makes."""

    @hookimpl
    def surgery_register_ops(self, register):
        def boom(state, params, ctx):
            raise ValueError("boom")

        register("explodes", {"type": "object"}, boom, examples=[{}])
        register("untried", {"type": "object"}, _noop)
        register("returns_model", {"type": "object"}, lambda state, params, ctx: state.model, examples=[{}])

    @hookimpl
    def surgery_register_backbones(self, register):
        from surgery.testing import probe_model

        register("liar", lambda **options: probe_model(shape=(8, 8, 3)), options={}, input_shape=[16, 16, 3])

    @hookimpl
    def surgery_register_exporters(self, register):
        register("empty", lambda model, path, options: None, suffix=".txt")


def test_conformance_helper_names_every_problem_of_a_bad_plugin():
    from surgery.testing import check_plugin

    with pytest.raises(AssertionError) as raised:
        check_plugin(NonConforming(), name="bad")
    lines = str(raised.value).splitlines()
    assert lines[0] == "plugin 'bad' fails 5 conformance check(s):"
    assert lines[1:] == [
        "  - op 'explodes' example 0 {}: ValueError: boom",
        "  - op 'untried': has no examples; register examples=[{...params...}] so it can be tried",
        "  - op 'returns_model' example 0 {}: apply returned Functional, not a surgery.State",
        "  - backbone 'liar' with {}: built input shape [8, 8, 3], declared [16, 16, 3]",
        "  - exporter 'empty': wrote nothing to probe.txt",
    ]


def test_conformance_helper_fails_a_plugin_that_does_not_register(fault_module):
    from surgery.testing import check_plugin

    with pytest.raises(
        AssertionError,
        match=r"plugin 'fault_schema' does not register: surgery_register_ops: "
        r"op 'resize': invalid JSON Schema at properties/size/type",
    ):
        check_plugin(fault_module("fault_schema"))
