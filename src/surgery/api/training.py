"""Training, sweeps, and what a trained model is used for (evaluate, features, predict), from Python."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..arguments import checked
from .common import SpecSource, given_or_installed

if TYPE_CHECKING:
    from ..plugins.loading import Plugins
    from ..training.evaluate import Evaluation
    from ..training.result import TrainResult


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
    from ..spec.loading import load_spec
    from ..training.config import resolve
    from ..training.run import train as run_training

    plugins = given_or_installed(plugins)
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
    ray="str?",
    ray_cpus="positive",
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
    ray: str | None = None,
    ray_cpus: int = 1,
    plugins: Plugins | None = None,
    echo: Callable[[str], None] | None = print,
) -> list[dict]:
    """Train every variant ``grid`` makes of ``spec`` (places, as error lines write them, mapped to lists of values;
    ranges too with ``search="optuna"`` and ``trials``) into run folders under ``output``, as ``surgery sweep``;
    ``ray="HOST:PORT"`` trains them as tasks on that Ray cluster, ``ray_cpus`` CPUs each."""
    from ..sweeps.run import sweep as run_sweep

    given = {"data": data, "validation_data": validation_data, "epochs": epochs}
    plot = str(plot) if plot is not None else None
    quiet = echo or (lambda _: None)
    found = given_or_installed(plugins)
    return run_sweep(
        spec, grid, Path(output), found, given, test, jobs, resume, quiet,
        plot=plot, search=search, trials=trials, ray_address=ray, ray_cpus=ray_cpus,
    )  # fmt: skip


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
    from ..training import quietly
    from ..training.evaluate import evaluate as run_evaluation
    from ..training.given_data import source_of
    from ..training.models import load as load_model

    plugins = given_or_installed(plugins)
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
    from ..training import data as source_data
    from ..training import models, quietly
    from ..training.features import check_output, extract

    path = check_output(str(output), force, inputs=[data, model])
    source = source_data.inspect(str(data))
    plugins = given_or_installed(plugins)
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
    from ..training import models, quietly
    from ..training.data import image_files
    from ..training.predict import predict as run_prediction

    plugins = given_or_installed(plugins)
    loaded = quietly(models.load, str(model), plugins, weights=weights, preprocess=preprocess, image_size=image_size)
    files = [str(p) for p in image_files([str(i) for i in images])]
    return quietly(run_prediction, loaded, files, top, None if classes is None else str(classes))
