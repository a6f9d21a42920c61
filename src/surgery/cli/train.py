"""``surgery train``, ``evaluate``, ``features`` and ``predict``.

Keras and TensorFlow are imported inside the command bodies only, so
``surgery --help`` stays light.
Everything that can be checked without TensorFlow (spec, data paths, output
paths) is checked first, so bad input fails in a fraction of a second.
"""

from __future__ import annotations

import click

from ..io.writing import strict_json
from ..spec.train_schema import METRICS, OPTIMIZERS, PRECISIONS, STRATEGIES
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
@click.option(
    "--epochs",
    type=click.IntRange(min=1),
    help="Epochs of every stage (overrides the spec); with --resume, the total to train the run on to.",
)
@click.option("--batch-size", type=click.IntRange(min=1), help="Images per batch (default 32).")
@click.option("--optimizer", type=click.Choice(OPTIMIZERS), help="Every stage's optimizer (default adam).")
@click.option("--learning-rate", type=FiniteFloat(min=0, min_open=True), help="Every stage's learning rate.")
@click.option("--weight-decay", type=FiniteFloat(min=0), help="Every stage's optimizer weight decay.")
@click.option("--label-smoothing", type=FiniteFloat(0, 1, max_open=True), help="Label smoothing of the loss.")
@click.option("--class-weight", type=click.Choice(["balanced"]), help="Weigh classes by their inverse frequency.")
@click.option(
    "--early-stopping",
    "patience",
    type=click.IntRange(min=0),
    metavar="PATIENCE",
    help="End a stage when the monitored metric has not improved for PATIENCE epochs (best weights restored).",
)
@click.option("--monitor", help="The metric that picks best.keras and that early stopping watches (val_loss, ...).")
@click.option(
    "--metrics",
    help="Extra metrics, comma-separated: auc, precision, recall, top_k_accuracy (top 5) or top_K_accuracy.",
)
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
@click.option(
    "--no-preprocess-in-model",
    is_flag=True,
    help="Keep the backbone's preprocessing outside the trained model (classes.json names it) instead of in it.",
)
@click.option("--resume", is_flag=True, help="Continue the interrupted run in the output folder (--epochs N: to N).")
@click.option("--force", is_flag=True, help="Start over in an output folder that holds a run.")
@guarded
def train(spec, data, validation_data, out, epochs, weights, resume, force, **given):
    """Build SPEC's model and train it, stage by stage, on --data."""
    from ..api import train as train_spec
    from ..errors import SpecError

    if resume and force:
        raise SpecError("--resume continues a run and --force starts it over; give one")
    train_spec(
        spec,
        data,
        out,
        validation_data=validation_data,
        resume=resume,
        force=force,
        epochs=epochs,
        weights=weights,
        plugins=installed_plugins(),
        echo=click.echo,
        verbose=progress(),
        **_train_options(**given),
    )


def _train_options(patience, metrics, deterministic, no_cache, no_preprocess_in_model, **same) -> dict:
    """The train section's keys from the options: those spelt otherwise on the command line translated,
    the rest (batch_size, learning_rate, ...) as they are. None: not given, the spec's value stands."""
    return {
        **same,
        "early_stopping": {"patience": patience} if patience is not None else None,
        "metrics": _metrics(metrics),
        "deterministic": deterministic or None,
        "feature_cache": False if no_cache else None,
        "preprocess_in_model": False if no_preprocess_in_model else None,
    }


def _metrics(text: str | None):
    """--metrics auc,top_3_accuracy -> the spec's form: ["auc", {"top_k_accuracy": 3}]."""
    import re

    from ..errors import SpecError

    if text is None:
        return None
    found: list[str | dict[str, int]] = []
    for name in (n.strip() for n in text.split(",") if n.strip()):
        top = re.fullmatch(r"top_(\d+)_accuracy", name)
        if top:
            found.append({"top_k_accuracy": int(top.group(1))})
        elif name in METRICS:
            found.append(name)
        else:
            raise SpecError(
                f'unknown metric "{name}"; valid: ' + ", ".join(METRICS) + ", top_K_accuracy", where="--metrics"
            )
    return found


@click.command("evaluate")
@click.argument("model", metavar="MODEL_OR_RUN", type=click.Path(dir_okay=True))
@click.option("--data", required=True, help="A folder of class subfolders of images, or an .npz with x and y.")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--preprocess", help='A backbone name, a mode (caffe, tf, torch), or "none" (default: classes.json).')
@click.option(
    "--image-size",
    type=(click.IntRange(min=1), click.IntRange(min=1)),
    metavar="HEIGHT WIDTH",
    help="Image size for a model whose input size is not fixed (default: the size classes.json says it trained at).",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--plot", "plot_path", metavar="FILE", help="Also draw the confusion matrix to FILE.svg or FILE.png.")
@click.option("--force", is_flag=True, help="Overwrite an existing plot file.")
@guarded
def evaluate(model, data, batch_size, preprocess, image_size, as_json, plot_path, force):
    """Evaluate MODEL_OR_RUN (a .keras file or a run folder) on --data: loss, metrics, per class, confusion."""
    from ..api import evaluate as evaluate_model

    target = None
    if plot_path:
        from ..training.confusion_plot import check_target

        target = check_target(plot_path, force, data)
    found = evaluate_model(
        model, data, batch_size=batch_size, preprocess=preprocess, image_size=image_size, plugins=installed_plugins()
    )
    if as_json:
        click.echo(strict_json(found.as_dict()))
    else:
        click.echo(f"evaluated {model} on {found.n:,} images of {data}")
        for line in found.lines():
            click.echo(line)
    if target is not None:
        from ..training.confusion_plot import write

        click.echo(f"wrote {target} ({write(found, target, force)})", err=as_json)


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
@click.option(
    "--image-size",
    type=(click.IntRange(min=1), click.IntRange(min=1)),
    metavar="HEIGHT WIDTH",
    help="Image size for a model whose input size is not fixed (default: the size classes.json says it trained at).",
)
@click.option("--force", is_flag=True, help="Overwrite the output file.")
@guarded
def features(source, data, out, layer, batch_size, preprocess, weights, image_size, force):
    """Run SPEC_OR_MODEL over --data and save features, labels and file names to an .npz."""
    from ..api import features as extract_features

    arrays = extract_features(
        source,
        data,
        out,
        layer=layer,
        batch_size=batch_size,
        preprocess=preprocess,
        weights=weights,
        image_size=image_size,
        force=force,
        plugins=installed_plugins(),
        verbose=progress(),
    )
    n = len(arrays["class_names"])
    click.echo(
        f"wrote {out}: features {arrays['features'].shape}, labels ({len(arrays['labels'])},), "
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
@click.option(
    "--image-size",
    type=(click.IntRange(min=1), click.IntRange(min=1)),
    metavar="HEIGHT WIDTH",
    help="Image size for a model whose input size is not fixed (default: the size classes.json says it trained at).",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@guarded
def predict(model, images, top, classes_file, preprocess, weights, image_size, as_json):
    """Classify IMAGE files with MODEL (a .keras file or a spec): the top classes and their scores."""
    from ..api import predict as classify

    found = classify(
        model,
        images,
        top=top,
        classes=classes_file,
        preprocess=preprocess,
        weights=weights,
        image_size=image_size,
        plugins=installed_plugins(),
    )
    names = found["names"]
    if names.note:
        click.echo(f"note: {names.note}", err=True)
    if as_json:
        click.echo(strict_json({"classes": names.origin, "score": found["score"], "results": found["results"]}))
        return
    for result in found["results"]:
        click.echo(result["image"])
        for rank, entry in enumerate(result["top"], 1):
            click.echo(f"  {rank}. {entry[found['score']]:8.4f}  {entry['name']}")
