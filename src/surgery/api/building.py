"""Specs built, written and exported, and saved models timed in their deployment forms, from Python."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..arguments import checked
from .common import SpecSource, given_or_installed

if TYPE_CHECKING:
    from ..model.state import State
    from ..plugins.loading import Plugins
    from ..report.planning import Plan
    from ..spec.loading import Spec


@checked(spec="spec", plugins="plugins?", weights="path?")
def load(spec: SpecSource, plugins: Plugins | None = None, *, weights: str | None = None) -> tuple[Spec, Plugins]:
    """Validate a spec (a path or a dict) without building it, as ``surgery validate`` does: the steps, and
    the train section with the metrics it monitors; returns ``(Spec, Plugins)``.

    ``weights`` overrides the source step's weights as ``--weights`` does ("imagenet", "none", a path).
    """
    from ..spec.loading import load_spec
    from ..training import config, options

    plugins = given_or_installed(plugins)
    parsed = load_spec(spec, plugins.registry, plugins.broken, weights=weights)
    if "train" in parsed.data:
        options.check_monitors(config.resolve(parsed, {}, need_data=False), parsed.file)
    return parsed, plugins


@checked(spec="spec", plugins="plugins?", weights="path?")
def build(spec: SpecSource, plugins: Plugins | None = None, *, weights: str | None = None) -> Any:
    """The ``keras.Model`` a spec describes (a path or a dict)."""
    from ..executor import run_steps

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


@checked(
    spec="spec",
    output="path?",
    onnx="path?",
    exports="dict?",
    force="bool",
    weights="path?",
    options="dict?",
    plot="path?",
    plugins="plugins?",
    before_writing="callable?",
)
def apply(
    spec: SpecSource,
    *,
    output: str | None = None,
    onnx: str | None = None,
    exports: dict[str, str] | None = None,
    force: bool = False,
    weights: str | None = None,
    options: dict[str, dict[str, Any]] | None = None,
    plot: str | None = None,
    plugins: Plugins | None = None,
    before_writing: Callable[[State], None] | None = None,
) -> Applied:
    """Build a spec and write its outputs, all or none: ``<name>.keras`` (``output``: a folder or a
    ``.keras`` path), the spec's ``outputs``, ``onnx`` if given, ``exports`` (more files by format:
    ``{"litert": "m.tflite"}``), and a ``plot`` (.svg or .png).

    Every output path is checked before the build. ``options`` maps a format to its exporter's options
    (``{"onnx": {"opset": 17}}``). ``before_writing(state)`` is called between the build and the writing
    (the command line prints the layer table there).
    """
    from ..executor import run_steps
    from ..exporting.outputs import plan_outputs, write_outputs

    parsed, plugins = load(spec, plugins, weights=weights)
    extra = {**({"onnx": onnx} if onnx else {}), **(exports or {})}
    planned = plan_outputs(parsed, plugins.registry, output=output, extra=extra or None, force=force)
    if plot:
        from ..report.plot import check_target

        check_target(plot, force)
    from ..training import calibration

    quantized = calibration.spec_outputs(parsed, exclude=extra)
    state = run_steps(parsed, plugins.registry)
    if before_writing is not None:
        before_writing(state)
    if quantized:
        options = {**(options or {}), **calibration.calibrated(quantized, state, parsed.file, options or {})}
    also: dict[str, tuple[Path, Callable[[Path], str | None]]] = {}
    if plot:
        from ..report.plot import draw

        also["plot"] = (Path(plot), lambda tmp: draw(state.model, plot, tmp))
    reports = write_outputs(state.model, planned, plugins.registry, force=force, options=options, also=also)
    drawn = reports.pop("plot", None)
    return Applied(state.model, state.notes, planned, reports, plot=drawn)


@checked(spec="spec", plugins="plugins?")
def plan(spec: SpecSource, plugins: Plugins | None = None) -> Plan:
    """What each step changes (layers added, removed, replaced, frozen; params; outputs), built with random
    weights where the source allows: a ``surgery.report.planning.Plan`` with ``changes``, ``state`` and ``random_init``."""
    from ..report.planning import plan as run_plan

    return run_plan(spec, given_or_installed(plugins))


@checked(model_path="path", to="str", output="path?", force="bool", options="dict?", plugins="plugins?")
def export(
    model_path: str | os.PathLike[str],
    to: str,
    *,
    output: str | None = None,
    force: bool = False,
    options: dict[str, Any] | None = None,
    plugins: Plugins | None = None,
) -> tuple[Path, str | None]:
    """Write a saved ``.keras`` model in another format (``to``: onnx, saved_model, litert, keras, a plugin's);
    returns the path written and the exporter's report. ``options`` are the exporter's (``atol``, ...) and,
    for a quantized export, ``quantize`` (int8, dynamic, float16), ``calibration`` and ``eval`` (a folder or
    ``.npz``, read as training data is), ``calibration_samples``, ``max_drop``, ``min_agreement``, ``int8_io``."""
    from ..exporting.outputs import export_file

    plugins = given_or_installed(plugins)
    if options:
        from ..training import calibration, quietly

        options = quietly(calibration.read, str(model_path), options, plugins)
    return export_file(model_path, to, plugins.registry, output=output, force=force, options=options)


@checked(
    model="path", data="path", repeats="positive", samples="positive?", eval="path?", limits="dict?", plugins="plugins?"
)
def bench(
    model: str | os.PathLike[str],
    data: str | os.PathLike[str],
    *,
    repeats: int = 20,
    samples: int | None = None,
    eval: str | os.PathLike[str] | None = None,
    limits: dict[str, float] | None = None,
    plugins: Plugins | None = None,
) -> Any:
    """A saved ``.keras`` model in its deployment forms (Keras, ONNX and LiteRT, float32 and int8) timed here, as
    ``surgery bench`` does: int8 calibrated on ``samples`` images of ``data``, checked against ``limits``."""
    from ..training import deploy_bench, quietly

    given = {"calibration_samples": samples, "eval": str(eval) if eval is not None else None, **(limits or {})}
    return quietly(
        deploy_bench.bench, str(model), str(data), given_or_installed(plugins), repeats=repeats, limits=given
    )
