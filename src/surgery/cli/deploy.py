"""``surgery bench``: a model's deployment forms side by side (TensorFlow imported inside the command only)."""

from __future__ import annotations

import click

from ..io.writing import strict_json
from .common import guarded, installed_plugins


@click.command("bench")
@click.argument("model", metavar="MODEL.keras")
@click.option(
    "--data",
    required=True,
    help="Images to calibrate the int8 forms on and to measure accuracy with: a folder of class subfolders or an .npz.",
)
@click.option(
    "--eval", "eval_data", metavar="DATA", help="Measure accuracy on this data instead of the rest of --data."
)
@click.option("--repeats", type=click.IntRange(min=1), default=20, show_default=True, help="Timed runs of each form.")
@click.option("--calibration-samples", "samples", type=click.IntRange(min=1), help="Calibration images (default 200).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@guarded
def bench(model, data, eval_data, repeats, samples, as_json):
    """MODEL as Keras, ONNX and LiteRT, float32 and int8, on this machine: latency, size, accuracy."""
    from ..api import bench as bench_model

    found = bench_model(model, data, repeats=repeats, samples=samples, eval=eval_data, plugins=installed_plugins())
    if as_json:
        click.echo(strict_json(found.as_dict()))
        return
    for line in found.table():
        click.echo(line)
