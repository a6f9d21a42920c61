"""``surgery train``, ``surgery features`` and ``surgery predict``.

Keras and TensorFlow are imported inside the command bodies only, so
``surgery --help`` stays light.
Everything that can be checked without TensorFlow (spec, data paths, output
paths) is checked first, so bad input fails in a fraction of a second.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..train_schema import PRECISIONS, STRATEGIES
from .common import guarded, installed_plugins, progress
from .types import FiniteFloat


@click.command("train")
@click.argument("spec", type=click.Path(dir_okay=True))
@click.option(
    "--data", help="A folder of class subfolders of images, or an .npz with x and y (default: the spec's train.data)."
)
@click.option("--validation-data", help="A separate validation folder or .npz (instead of a split).")
@click.option(
    "--validation-split",
    type=FiniteFloat(0, 1, max_open=True),
    help="Fraction of --data held out for validation (default 0.2).",
)
@click.option("-o", "--output", "out", help="Folder for the run (default runs/<name>).")
@click.option("--epochs", type=click.IntRange(min=1), help="Epochs of every stage (overrides the spec).")
@click.option("--batch-size", type=click.IntRange(min=1), help="Images per batch (default 32).")
@click.option("--precision", type=click.Choice(PRECISIONS), help="Mixed precision policy (default float32).")
@click.option("--seed", type=click.IntRange(0, 2**31 - 1), help="Data split, shuffling, new weights.")
@click.option("--deterministic", is_flag=True, help="Deterministic TensorFlow ops (slower on GPU).")
@click.option("--weights", help='Override the backbone\'s weights: "imagenet", "none", or a file path.')
@click.option(
    "--strategy",
    type=click.Choice(STRATEGIES),
    help="default: one device; mirrored: every local GPU; multiworker: the machines TF_CONFIG lists "
    "(see docs/training.md).",
)
@click.option(
    "--no-cache",
    is_flag=True,
    help="Run the frozen layers every epoch instead of training the layers after them on their outputs, computed once.",
)
@click.option("--resume", is_flag=True, help="Continue the interrupted run in the output folder.")
@click.option("--force", is_flag=True, help="Start over in an output folder that holds a run.")
@guarded
def train(
    spec,
    data,
    validation_data,
    validation_split,
    out,
    epochs,
    batch_size,
    precision,
    seed,
    deterministic,
    weights,
    strategy,
    no_cache,
    resume,
    force,
):
    """Build SPEC's model and train it, stage by stage, on --data."""
    from ..errors import SpecError
    from ..spec import load_spec
    from ..training.config import resolve

    if resume and force:
        raise SpecError("--resume continues a run and --force starts it over; give one")
    plugins = installed_plugins()
    parsed = load_spec(spec, plugins.registry, plugins.broken, weights=weights)
    config = resolve(
        parsed,
        {
            "data": data,
            "validation_data": validation_data,
            "validation_split": validation_split,
            "epochs": epochs,
            "batch_size": batch_size,
            "precision": precision,
            "seed": seed,
            "deterministic": deterministic or None,
            "strategy": strategy,
            "feature_cache": False if no_cache else None,
        },
    )
    folder = Path(out) if out else Path("runs") / parsed.name

    from ..training.run import train as run_training

    run_training(
        parsed,
        plugins.registry,
        config,
        folder,
        resume=resume,
        force=force,
        created_default=out is None,
        echo=click.echo,
        verbose=progress(),
    )


@click.command("features")
@click.argument("source", metavar="SPEC_OR_MODEL", type=click.Path(dir_okay=True))
@click.option("--data", required=True, help="A folder of class subfolders of images, or an .npz with x and y.")
@click.option("-o", "--output", "out", required=True, help="The .npz file to write.")
@click.option("--layer", help="Take the output of this layer instead of the model's output.")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option(
    "--preprocess",
    help='A backbone name (its preprocess_input), a mode (caffe, tf, torch), or "none" '
    "(default: the spec's backbone, or classes.json beside the model).",
)
@click.option("--weights", help='For a spec: override the backbone\'s weights ("imagenet", "none", a path).')
@click.option("--force", is_flag=True, help="Overwrite the output file.")
@guarded
def features(source, data, out, layer, batch_size, preprocess, weights, force):
    """Run SPEC_OR_MODEL over --data and save features, labels and file names to an .npz."""
    from ..training import data as datamod
    from ..training import features, models, quietly

    path = features.check_output(out, force, inputs=[data, source])
    src = datamod.inspect(data)
    plugins = installed_plugins()
    loaded = quietly(models.load, source, plugins, weights=weights, preprocess=preprocess)
    if layer:
        loaded.model = models.cut_at(loaded.model, layer)
    arrays = quietly(features.extract, loaded, src, path, batch_size=batch_size, verbose=progress(), force=force)
    n = len(arrays["class_names"])
    click.echo(
        f"wrote {path}: features {arrays['features'].shape}, labels ({len(arrays['labels'])},), "
        f"{n} class{'es' * (n != 1)}, files"
    )


@click.command("predict")
@click.argument("model", metavar="MODEL", type=click.Path(dir_okay=True))
@click.argument("images", nargs=-1, required=True)
@click.option("--top", type=click.IntRange(min=1), default=5, show_default=True, help="How many classes to show.")
@click.option(
    "--classes",
    "classes_file",
    help="A JSON list of class names (default: classes.json beside MODEL, or ImageNet's for a 1000-class output).",
)
@click.option("--preprocess", help='A backbone name (its preprocess_input), a mode (caffe, tf, torch), or "none".')
@click.option("--weights", help="For a spec: override the backbone's weights.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@guarded
def predict(model, images, top, classes_file, preprocess, weights, as_json):
    """Classify IMAGE files with MODEL (a .keras file or a spec): the top classes and their scores."""
    from ..training import models, quietly
    from ..training.predict import predict

    plugins = installed_plugins()
    loaded = quietly(models.load, model, plugins, weights=weights, preprocess=preprocess)
    found = quietly(predict, loaded, list(images), top, classes_file)
    names = found["names"]
    if names.note:
        click.echo(f"note: {names.note}", err=True)
    if as_json:
        click.echo(
            json.dumps({"classes": names.origin, "score": found["score"], "results": found["results"]}, indent=2)
        )
        return
    for result in found["results"]:
        click.echo(result["image"])
        for rank, entry in enumerate(result["top"], 1):
            click.echo(f"  {rank}. {entry[found['score']]:8.4f}  {entry['name']}")
