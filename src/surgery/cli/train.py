"""``surgery train``, ``evaluate``, ``features`` and ``predict``.

Keras and TensorFlow are imported inside the command bodies only, so
``surgery --help`` stays light.
Everything that can be checked without TensorFlow (spec, data paths, output
paths) is checked first, so bad input fails in a fraction of a second.
"""

from __future__ import annotations

import click

from ..io.writing import strict_json
from ..spec.train_options import BY_NAME, FLAGGED
from ..spec.train_values import FLOAT32_MAX
from .common import guarded, installed_plugins, progress
from .types import FiniteFloat


def _click_type(schema: dict):
    """The click type that takes what ``schema`` allows (the resolved config checks the rest)."""
    if "enum" in schema:
        return click.Choice(schema["enum"])
    low, high = schema.get("minimum", schema.get("exclusiveMinimum")), schema.get("maximum")
    if schema.get("type") == "integer":
        return click.IntRange(low, high)
    if schema.get("type") == "number":
        # float32's ceiling stays the config's check (one clear line): in --help it would be a 39-digit bound.
        high = schema.get("exclusiveMaximum", None if high == FLOAT32_MAX else high)
        return FiniteFloat(low, high, min_open="exclusiveMinimum" in schema, max_open="exclusiveMaximum" in schema)
    return None


def _table_options(command):
    """The options of spec.train_options' table that have a flag, in the table's order."""
    for option in reversed(FLAGGED):
        flag = option.flag
        assert flag is not None
        if flag.switch:
            command = click.option(option.flag_name, option.name, is_flag=True, default=None, help=flag.help)(command)
        else:
            kind = _click_type(flag.schema or option.schema)
            command = click.option(option.flag_name, option.name, type=kind, metavar=flag.metavar, help=flag.help)(
                command
            )
    return command


def _as_spec(given: dict) -> dict:
    """The flags' values as the train section's: None where not given, so the spec's value stands."""
    values = {}
    for name, value in given.items():
        flag = BY_NAME[name].flag
        assert flag is not None
        if value is not None and flag.switch:
            value = flag.value if value else None
        elif value is not None and flag.to_spec is not None:
            value = flag.to_spec(value)
        values[name] = value
    return values


# evaluate, features and predict take a model whose input size may be open.
_image_size = click.option(
    "--image-size",
    type=(click.IntRange(min=1), click.IntRange(min=1)),
    metavar="HEIGHT WIDTH",
    help="Image size for a model whose input size is not fixed (default: the size classes.json says it trained at).",
)


@click.command("train")
@click.argument("spec", type=click.Path(dir_okay=True))
@click.option("-o", "--output", "out", help="Folder for the run (default runs/<name>).")
@_table_options
@click.option("--weights", help='Override the backbone\'s weights: "imagenet", "none", or a file path.')
@click.option("--resume", is_flag=True, help="Continue the interrupted run in the output folder (--epochs N: to N).")
@click.option("--force", is_flag=True, help="Start over in an output folder that holds a run.")
@guarded
def train(spec, out, weights, resume, force, **given):
    """Build SPEC's model and train it, stage by stage, on --data."""
    from ..api import train as train_spec
    from ..errors import SpecError

    if resume and force:
        raise SpecError("--resume continues a run and --force starts it over; give one")
    options = _as_spec(given)
    train_spec(
        spec,
        options.pop("data"),
        out,
        resume=resume,
        force=force,
        weights=weights,
        plugins=installed_plugins(),
        echo=click.echo,
        verbose=progress(),
        **options,
    )


@click.command("evaluate")
@click.argument("model", metavar="MODEL_OR_RUN", type=click.Path(dir_okay=True))
@click.option("--data", required=True, help="A folder of class subfolders of images, or an .npz with x and y.")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--preprocess", help='A backbone name, a mode (caffe, tf, torch), or "none" (default: classes.json).')
@_image_size
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
@_image_size
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
@_image_size
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
