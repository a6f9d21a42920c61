"""Conformance checks for plugin authors: ``check_plugin(my_plugin)`` in a test.

It registers the plugin through a fresh plugin manager (the same checks the CLI
runs), then tries everything it registered on small models:

- every op: its schema is valid JSON Schema, it has examples, each example
  validates, passes the op's ``check`` and applies to a small model (the probe
  model, or ``model=``), giving a ``State`` whose model runs;
- every backbone: builds a ``keras.Model`` with its declared input shape, and
  its ``preprocess`` resolves to a callable;
- every exporter: writes a non-empty file for the small model;
- registering imports no TensorFlow (for a module, checked in a fresh process).

All problems are collected and raised as one AssertionError, one line each.
"""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from jsonschema import Draft202012Validator

from .errors import PluginError, one_line
from .model.state import State
from .plugins.loading import plugin_name, registration_of
from .plugins.registry import Registry
from .spec.loading import Spec, StepContext, schema_error

HEAVY_MODULES = ("tensorflow", "keras", "torch", "jax")
PROBE_SHAPE = (32, 32, 3)


@dataclass
class Checked:
    """What ``check_plugin`` tried (backbones: those it built), so a test can assert it tried something."""

    plugin: str
    ops: list = field(default_factory=list)
    backbones: list = field(default_factory=list)
    exporters: list = field(default_factory=list)
    channel_rules: list = field(default_factory=list)  # registered and checked as they came in, not run


def probe_model(shape=PROBE_SHAPE, blocks: int = 3):
    """A small CNN named like VGG and tinynet: ``block{i}_conv``, ``_bn``, ``_relu``, ``_pool``.

    Ops' examples that name layers should name these (``block2_relu``,
    ``block3_pool``, ``block1_*``) or the test should pass its own ``model=``.
    """
    from .keras_env import keras, seeded
    from .model.graph import make_model

    layers = keras().layers
    seeded(0)
    x = inputs = keras().Input(shape=shape, name="input")
    for i in range(1, blocks + 1):
        x = layers.Conv2D(4 * i, 3, padding="same", name=f"block{i}_conv")(x)
        x = layers.BatchNormalization(name=f"block{i}_bn")(x)
        x = layers.ReLU(name=f"block{i}_relu")(x)
        x = layers.MaxPooling2D(2, name=f"block{i}_pool")(x)
    return make_model(inputs, x, name="probe")


def check_plugin(
    plugin, *, name=None, model=None, backbones=None, backbone_options=None, others=(), fresh_import=True
) -> Checked:
    """Check a plugin module (or object with hookimpls); raise AssertionError listing every problem.

    - ``model``: a zero-argument callable returning the ``keras.Model`` ops are
      applied to (called once per example, since ops may change it in place);
      default ``probe_model``.
    - ``backbones``: names of the backbones to build (default all); others are
      still registered and checked without building.
    - ``backbone_options``: backbone name -> the options to build it with
      (default ``weights=None`` and its declared ``input_shape``).
    - ``others``: plugins whose registrations the ops may need (the ``backbone``
      op needs backbones); registered, not checked.
    - ``fresh_import``: check in a new process that registering a module
      imports no TensorFlow.
    """
    name = name or plugin_name(plugin)
    reg = _registration(plugin, name)
    registry = Registry()
    for other in others:
        registry.commit(_registration(other, plugin_name(other)))
    clash = registry.clashes(reg)
    assert clash is None, f"plugin {name!r}: {clash}"
    registry.commit(reg)

    problems: list[str] = []
    checked = Checked(name)
    make = model or probe_model
    with tempfile.TemporaryDirectory(prefix="check_plugin_") as tmp:
        spec = Spec({"surgery": 1, "seed": 0, "steps": [{"op": "probe"}]}, f"<check_plugin {name}>", Path(tmp))
        for op in reg.ops:
            checked.ops.append(op.name)
            problems += _check_op(op, make, registry, spec)
        for info in reg.backbones:
            if backbones is None or info.name in backbones:
                checked.backbones.append(info.name)
                problems += _check_backbone(info, (backbone_options or {}).get(info.name))
        for exporter in reg.exporters:
            checked.exporters.append(exporter.format)
            problems += _attempt(f"exporter {exporter.format!r}", _export, exporter, make(), Path(tmp))
        checked.channel_rules += [info.layer for info in reg.channel_rules]
    if fresh_import and inspect.ismodule(plugin):
        problems += _attempt("registration", _imports_nothing_heavy, plugin.__name__)
    if problems:
        raise AssertionError(
            f"plugin {name!r} fails {len(problems)} conformance check(s):\n" + "\n".join(f"  - {p}" for p in problems)
        )
    return checked


def _registration(plugin, name):
    try:
        return registration_of(plugin, name)
    except PluginError as e:
        raise AssertionError(f"plugin {name!r} does not register: {e.message}") from None


def _attempt(what: str, fn, *args) -> list[str]:
    """Run one check; its failure, whatever the exception, becomes one problem line."""
    try:
        fn(*args)
    except AssertionError as e:
        return [f"{what}: {e}"]
    except Exception as e:  # noqa: BLE001 (a plugin's code may fail any way at all)
        return [f"{what}: {type(e).__name__}: {one_line(e)}"]
    return []


def _check_op(op, make, registry, spec) -> list[str]:
    where = f"op {op.name!r}"
    try:
        Draft202012Validator.check_schema(op.schema)
    except Exception as e:  # noqa: BLE001 (a plugin's code may fail any way at all)
        return [f"{where}: invalid JSON Schema: {e}"]
    if not op.examples:
        return [f"{where}: has no examples; register examples=[{{...params...}}] so it can be tried"]
    schema = registry.step_schema(op.name)
    problems = []
    for i, params in enumerate(op.examples):
        step = {"op": op.name, **params}
        msg = schema_error(schema, step)
        if msg:
            problems.append(f"{where} example {i}: does not validate: {msg}")
            continue
        ctx = StepContext(spec, 0 if op.source else 1, op.name, registry)
        problems += _attempt(f"{where} example {i} {params}", _apply, op, params, ctx, make)
    return problems


def _apply(op, params, ctx, make):
    if op.check is not None:
        op.check(params, ctx)
    before = None if op.source else State(model=make(), backbone="probe")
    after = op.apply(before, params, ctx)
    assert isinstance(after, State), f"apply returned {type(after).__name__}, not a surgery.State"
    _runs(after.model)


def _runs(model):
    """A keras.Model that computes finite outputs from zeros."""
    import numpy as np

    from .keras_env import keras

    assert isinstance(model, keras().Model), f"got {type(model).__name__}, not a keras.Model"
    inputs = [np.zeros((1, *t.shape[1:]), dtype="float32") for t in model.inputs]
    outputs = model(inputs[0] if len(inputs) == 1 else inputs, training=False)
    for out in outputs if isinstance(outputs, (list, tuple)) else [outputs]:
        assert np.all(np.isfinite(keras().ops.convert_to_numpy(out))), "the model's output is not finite"


def _check_backbone(info, options) -> list[str]:
    where = f"backbone {info.name!r}"
    if options is None:
        options = {}
        if "weights" in info.options:
            options["weights"] = None
        if "input_shape" in info.options and info.input_shape:
            options["input_shape"] = list(info.input_shape)
    missing = [k for k, v in info.options.items() if v.get("x-required") and k not in options]
    if missing:
        return [f"{where}: needs options {missing}; pass backbone_options={{{info.name!r}: {{...}}}}"]
    msg = schema_error(info.options_schema(), {"op": "backbone", "name": info.name, **options})
    if msg:
        return [f"{where}: options {options} do not match its own options schema: {msg}"]
    return _attempt(f"{where} with {options}", _build, info, options) + _attempt(
        f"{where} preprocess", _preprocess, info.preprocess
    )


def _build(info, options):
    model = info.build(**options)
    _runs(model)
    expected = options.get("input_shape") or info.input_shape
    if expected:
        got = tuple(model.inputs[0].shape[1:])
        assert got == tuple(expected), f"built input shape {list(got)}, declared {list(expected)}"


def _preprocess(preprocess):
    if preprocess is None or callable(preprocess):
        return
    assert isinstance(preprocess, str), f"must be a dotted path or a callable, got {type(preprocess).__name__}"
    module, _, attr = preprocess.rpartition(".")
    fn = getattr(importlib.import_module(module), attr, None)
    assert callable(fn), f"{preprocess!r} is not a callable"


def _export(exporter, model, folder: Path):
    path = folder / f"probe{exporter.suffix}"
    report = exporter.export(model, path, {})
    # A file, or a folder format (a SavedModel): something non-empty either way.
    written = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else []
    assert written and any(p.stat().st_size > 0 for p in written), f"wrote nothing to {path.name}"
    assert report is None or (isinstance(report, str) and "\n" not in report), (
        f"must return None or a one-line report, got {report!r}"
    )


def _imports_nothing_heavy(module: str):
    code = (
        "import importlib, sys\n"
        "from surgery.plugins.loading import registration_of\n"
        f"registration_of(importlib.import_module({module!r}))\n"
        f"print(','.join(m for m in {HEAVY_MODULES!r} if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"failed in a fresh process: {(done.stderr.strip().splitlines() or ['?'])[-1]}"
    heavy = done.stdout.strip()
    assert not heavy, f"importing and registering {module} imports {heavy}; import it inside the callables instead"
