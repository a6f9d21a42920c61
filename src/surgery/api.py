"""The pipeline as library calls: what the command line does, from Python.

    import surgery
    model = surgery.build("specs/vgg16_cut_extend.json")              # a keras.Model
    done = surgery.apply("specs/vgg16_cut_extend.json", output="out/")  # built and written, all or none
    surgery.export("out/m.keras", "onnx")                               # a saved model in another format

Each function takes a spec as a path or a dict, and the loaded plugins if the caller has them (else the
installed ones are loaded). Bad input raises ``SurgeryError`` with the one line the command line prints.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .plan import Plan
    from .plugins import Plugins
    from .spec import Spec
    from .state import State

# A spec: the path of a JSON file, or the parsed JSON.
SpecSource = str | os.PathLike | dict


def _plugins(plugins: Plugins | None) -> Plugins:
    if plugins is not None:
        return plugins
    from .plugins import load_plugins

    return load_plugins()


def load(spec: SpecSource, plugins: Plugins | None = None, *, weights: str | None = None) -> tuple[Spec, Plugins]:
    """Validate a spec (a path or a dict) without building it; returns ``(Spec, Plugins)``.

    ``weights`` overrides the source step's weights as ``--weights`` does ("imagenet", "none", a path).
    """
    from .spec import load_spec

    plugins = _plugins(plugins)
    return load_spec(spec, plugins.registry, plugins.broken, weights=weights), plugins


def build(spec: SpecSource, plugins: Plugins | None = None, *, weights: str | None = None) -> Any:
    """The ``keras.Model`` a spec describes (a path or a dict)."""
    from .executor import run_steps

    parsed, plugins = load(spec, plugins, weights=weights)
    return run_steps(parsed, plugins.registry).model


@dataclass
class Applied:
    """What ``apply`` built and wrote."""

    model: Any  # the keras.Model
    notes: tuple  # each step's one-line report
    written: dict[str, Path] = field(default_factory=dict)  # format -> path
    reports: dict[str, str | None] = field(default_factory=dict)  # format -> the exporter's report
    plot: str | None = None  # the plot's report, if one was drawn


def apply(
    spec: SpecSource,
    *,
    output: str | None = None,
    onnx: str | None = None,
    force: bool = False,
    weights: str | None = None,
    options: dict[str, dict[str, Any]] | None = None,
    plot: str | None = None,
    plugins: Plugins | None = None,
    before_writing: Callable[[State], None] | None = None,
) -> Applied:
    """Build a spec and write its outputs, all or none: ``<name>.keras`` (``output``: a folder or a
    ``.keras`` path), the spec's ``outputs``, ``onnx`` if given, and a ``plot`` (.svg or .png).

    Every output path is checked before the build. ``options`` maps a format to its exporter's options
    (``{"onnx": {"opset": 17}}``). ``before_writing(state)`` is called between the build and the writing
    (the command line prints the layer table there).
    """
    from .executor import run_steps
    from .outputs import plan_outputs, write_outputs

    parsed, plugins = load(spec, plugins, weights=weights)
    planned = plan_outputs(parsed, plugins.registry, output=output, extra={"onnx": onnx} if onnx else None, force=force)
    if plot:
        from .plot import check_target

        check_target(plot, force)
    state = run_steps(parsed, plugins.registry)
    if before_writing is not None:
        before_writing(state)
    reports = write_outputs(state.model, planned, plugins.registry, force=force, options=options)
    done = Applied(state.model, state.notes, planned, reports)
    if plot:
        from .plot import write_plot

        done.plot = write_plot(state.model, plot, force)
    return done


def plan(spec: SpecSource, plugins: Plugins | None = None) -> Plan:
    """What each step changes (layers added, removed, replaced, frozen; params; outputs), built with random
    weights where the source allows: a ``surgery.plan.Plan`` with ``changes``, ``state`` and ``random_init``."""
    from .plan import plan as run_plan

    return run_plan(spec, _plugins(plugins))


def export(
    model_path: str | os.PathLike[str],
    to: str,
    *,
    output: str | None = None,
    force: bool = False,
    options: dict[str, Any] | None = None,
    plugins: Plugins | None = None,
) -> tuple[Path, str | None]:
    """Write a saved ``.keras`` model in another format (``to``: onnx, saved_model, keras, a plugin's);
    returns the path written and the exporter's report."""
    from .outputs import export_file

    return export_file(model_path, to, _plugins(plugins).registry, output=output, force=force, options=options)
