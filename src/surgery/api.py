"""The pipeline as library calls: what the command line does, from Python.

    import surgery
    model = surgery.build("specs/vgg16_cut_extend.json")              # a keras.Model
    run = surgery.train("spec.json", "data/train", "runs/x", epochs=3)  # the run: history, paths, metrics
    surgery.evaluate("runs/x", "data/test")                             # loss, metrics, per class, confusion
    done = surgery.apply("specs/vgg16_cut_extend.json", output="out/")  # built and written, all or none
    surgery.export("out/m.keras", "onnx")                               # a saved model in another format

Each function takes a spec as a path or a dict, and the loaded plugins if the caller has them (else the
installed ones are loaded). Bad input raises ``SurgeryError`` with the one line the command line prints.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .arguments import checked

if TYPE_CHECKING:
    from .model.state import State
    from .plugins.loading import Plugins
    from .report.planning import Plan
    from .spec.loading import Spec
    from .training.evaluate import Evaluation
    from .training.result import TrainResult

# A spec: the path of a JSON file, or the parsed JSON.
SpecSource = str | os.PathLike | dict


def _plugins(plugins: Plugins | None) -> Plugins:
    if plugins is not None:
        return plugins
    from .plugins.loading import load_plugins

    return load_plugins()


@checked(spec="spec", plugins="plugins?", weights="path?")
def load(spec: SpecSource, plugins: Plugins | None = None, *, weights: str | None = None) -> tuple[Spec, Plugins]:
    """Validate a spec (a path or a dict) without building it, as ``surgery validate`` does: the steps, and
    the train section with the metrics it monitors; returns ``(Spec, Plugins)``.

    ``weights`` overrides the source step's weights as ``--weights`` does ("imagenet", "none", a path).
    """
    from .spec.loading import load_spec
    from .training import config, options

    plugins = _plugins(plugins)
    parsed = load_spec(spec, plugins.registry, plugins.broken, weights=weights)
    if "train" in parsed.data:
        options.check_monitors(config.resolve(parsed, {}, need_data=False), parsed.file)
    return parsed, plugins


@checked(spec="spec", plugins="plugins?", weights="path?")
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
    from .executor import run_steps
    from .exporting.outputs import plan_outputs, write_outputs

    parsed, plugins = load(spec, plugins, weights=weights)
    extra = {**({"onnx": onnx} if onnx else {}), **(exports or {})}
    planned = plan_outputs(parsed, plugins.registry, output=output, extra=extra or None, force=force)
    if plot:
        from .report.plot import check_target

        check_target(plot, force)
    from .training import calibration

    quantized = calibration.spec_outputs(parsed, exclude=extra)
    state = run_steps(parsed, plugins.registry)
    if before_writing is not None:
        before_writing(state)
    if quantized:
        options = {**(options or {}), **calibration.calibrated(quantized, state, parsed.file, options or {})}
    also: dict[str, tuple[Path, Callable[[Path], str | None]]] = {}
    if plot:
        from .report.plot import draw

        also["plot"] = (Path(plot), lambda tmp: draw(state.model, plot, tmp))
    reports = write_outputs(state.model, planned, plugins.registry, force=force, options=options, also=also)
    drawn = reports.pop("plot", None)
    return Applied(state.model, state.notes, planned, reports, plot=drawn)


@checked(spec="spec", plugins="plugins?")
def plan(spec: SpecSource, plugins: Plugins | None = None) -> Plan:
    """What each step changes (layers added, removed, replaced, frozen; params; outputs), built with random
    weights where the source allows: a ``surgery.report.planning.Plan`` with ``changes``, ``state`` and ``random_init``."""
    from .report.planning import plan as run_plan

    return run_plan(spec, _plugins(plugins))


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
    from .exporting.outputs import export_file

    plugins = _plugins(plugins)
    if options:
        from .training import calibration, quietly

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
    from .training import deploy_bench, quietly

    given = {"calibration_samples": samples, "eval": str(eval) if eval is not None else None, **(limits or {})}
    return quietly(deploy_bench.bench, str(model), str(data), _plugins(plugins), repeats=repeats, limits=given)


@checked(
    spec="spec",
    output="path?",
    callbacks="callbacks",
    resume="bool",
    force="bool",
    epochs="positive?",
    weights="path?",
    plugins="plugins?",
    echo="callable?",
    verbose="count",
)
def train(
    spec: SpecSource,
    data: Any = None,
    output: str | os.PathLike[str] | None = None,
    *,
    validation_data: Any = None,
    callbacks: Sequence[Any] = (),
    resume: bool = False,
    force: bool = False,
    epochs: int | None = None,
    weights: str | None = None,
    plugins: Plugins | None = None,
    echo: Callable[[str], None] | None = print,
    verbose: int = 2,
    **options: Any,
) -> TrainResult | None:
    """Build a spec's model and train it, stage by stage, as ``surgery train`` does; returns the run (None if a
    resumed run had finished). ``data`` (and ``validation_data``) is a folder of class subfolders, an ``.npz``,
    ``(x, y)`` arrays or a ``tf.data.Dataset`` of (image, label); default: the spec's ``train.data``. ``output``
    is the run folder (default ``runs/<name>``). ``callbacks`` are Keras callbacks added to every stage.
    ``epochs`` sets every stage's epochs, or with ``resume`` the total to train a finished run on to.
    ``options`` are the train section's keys (``batch_size``, ``learning_rate``, ...), over the spec's."""
    from .spec.loading import load_spec
    from .training.config import resolve
    from .training.run import train as run_training

    plugins = _plugins(plugins)
    parsed = load_spec(spec, plugins.registry, plugins.broken, weights=weights)
    overrides = {"data": data, "validation_data": validation_data, **options}
    if not resume:
        overrides["epochs"] = epochs
    config = resolve(parsed, overrides)
    folder = Path(output) if output is not None else Path("runs") / parsed.name
    return run_training(
        parsed,
        plugins.registry,
        config,
        folder,
        resume=resume,
        force=force,
        created_default=output is None,
        echo=echo or (lambda _: None),
        verbose=verbose,
        extend_to=epochs if resume else None,
        extra_callbacks=callbacks,
    )


@checked(
    spec="spec",
    grid="grid",
    output="path",
    data="path?",
    validation_data="path?",
    test="path?",
    jobs="positive",
    resume="bool",
    epochs="positive?",
    plot="path?",
    search="str?",
    trials="positive?",
    plugins="plugins?",
)
def sweep(
    spec: SpecSource,
    grid: str | os.PathLike[str] | dict,
    output: str | os.PathLike[str],
    *,
    data: str | os.PathLike[str] | None = None,
    validation_data: str | os.PathLike[str] | None = None,
    test: str | os.PathLike[str] | None = None,
    jobs: int = 1,
    resume: bool = False,
    epochs: int | None = None,
    plot: str | os.PathLike[str] | None = None,
    search: str | None = None,
    trials: int | None = None,
    plugins: Plugins | None = None,
    echo: Callable[[str], None] | None = print,
) -> list[dict]:
    """Train every variant ``grid`` makes of ``spec`` (places, as error lines write them, mapped to lists of values;
    ranges too with ``search="optuna"`` and ``trials``) into run folders under ``output``, as ``surgery sweep``."""
    from .sweeps.run import sweep as run_sweep

    given = {"data": data, "validation_data": validation_data, "epochs": epochs}
    plot = str(plot) if plot is not None else None
    quiet = echo or (lambda _: None)
    found = _plugins(plugins)
    return run_sweep(spec, grid, Path(output), found, given, test, jobs, resume, quiet, plot, search, trials)


@checked(model="path", batch_size="positive", preprocess="str?", image_size="size?", plugins="plugins?")
def evaluate(
    model: str | os.PathLike[str],
    data: Any,
    *,
    batch_size: int = 32,
    preprocess: str | None = None,
    image_size: tuple[int, int] | None = None,
    plugins: Plugins | None = None,
) -> Evaluation:
    """A trained model (a ``.keras`` file, or a run folder) on a test set, as ``surgery evaluate`` reports it:
    loss and every compiled metric (Keras' own ``evaluate``), per-class precision, recall and F1, and the
    confusion matrix, with the run's class names and preprocessing. ``image_size`` (height, width) sizes the
    images for a model whose input size is not fixed (default: the size its run trained at)."""
    from .training import quietly
    from .training.evaluate import evaluate as run_evaluation
    from .training.given_data import source_of
    from .training.models import load as load_model

    plugins = _plugins(plugins)
    source = source_of(data, "--data")
    loaded = quietly(load_model, str(model), plugins, preprocess=preprocess, compile=True, image_size=image_size)
    return quietly(run_evaluation, loaded, source, batch_size=batch_size)


@checked(
    model="path",
    data="path",
    output="path",
    layer="str?",
    batch_size="positive",
    preprocess="str?",
    weights="path?",
    image_size="size?",
    force="bool",
    plugins="plugins?",
    verbose="count",
)
def features(
    model: str | os.PathLike[str],
    data: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    layer: str | None = None,
    batch_size: int = 32,
    preprocess: str | None = None,
    weights: str | None = None,
    image_size: tuple[int, int] | None = None,
    force: bool = False,
    plugins: Plugins | None = None,
    verbose: int = 0,
) -> dict[str, Any]:
    """Run a spec, a ``.keras`` model or a run folder over a folder or ``.npz`` of images, as ``surgery
    features`` does, and write ``output`` (.npz): the features (of ``layer``, a layer or a spec's named
    tensor, if given), labels, class names and file names, in the data's order; returns those arrays."""
    from .training import data as source_data
    from .training import models, quietly
    from .training.features import check_output, extract

    path = check_output(str(output), force, inputs=[data, model])
    source = source_data.inspect(str(data))
    plugins = _plugins(plugins)
    loaded = quietly(models.load, str(model), plugins, weights=weights, preprocess=preprocess, image_size=image_size)
    if layer:
        loaded.model = models.cut_at(loaded, layer)
    return quietly(extract, loaded, source, path, batch_size=batch_size, verbose=verbose, force=force)


@checked(
    model="path",
    images="paths",
    top="positive",
    classes="path?",
    preprocess="str?",
    weights="path?",
    image_size="size?",
    plugins="plugins?",
)
def predict(
    model: str | os.PathLike[str],
    images: Sequence[str | os.PathLike[str]],
    *,
    top: int = 5,
    classes: str | os.PathLike[str] | None = None,
    preprocess: str | None = None,
    weights: str | None = None,
    image_size: tuple[int, int] | None = None,
    plugins: Plugins | None = None,
) -> dict[str, Any]:
    """The top classes of each image (files, or folders of them), as ``surgery predict`` says them:
    ``{"names": where the class names came from, "score": "probability" or "logit", "results": [{"image",
    "top": [{"index", "name", score}]}]}``. ``classes`` is a JSON list of class names (default: the
    run's ``classes.json``, or ImageNet's for a 1000-class output)."""
    from .training import models, quietly
    from .training.data import image_files
    from .training.predict import predict as run_prediction

    plugins = _plugins(plugins)
    loaded = quietly(models.load, str(model), plugins, weights=weights, preprocess=preprocess, image_size=image_size)
    files = [str(p) for p in image_files([str(i) for i in images])]
    return quietly(run_prediction, loaded, files, top, None if classes is None else str(classes))
