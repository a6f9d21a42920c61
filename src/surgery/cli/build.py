"""``surgery apply``, ``validate``, ``plan`` and ``export``: thin wrappers over ``surgery.api``.

Only commands that build import TensorFlow, and only after every check that needs none has passed.
"""

from __future__ import annotations

import json

import click

from ..errors import counted
from .common import guarded, installed_plugins
from .types import FiniteFloat


@click.command()
@click.argument("spec", type=click.Path(dir_okay=True))
@click.option("-o", "--output", "out", help="Folder for <name>.keras, or a path ending in .keras.")
@click.option("--onnx", "onnx_path", help="Also write the model as ONNX to this path.")
@click.option("--opset", type=int, help="ONNX opset (default 17).")
@click.option("--litert", "litert_path", help="Also write the model as a LiteRT (.tflite) file to this path.")
@click.option(
    "--allow-flex",
    is_flag=True,
    help="LiteRT: keep ops it has no builtin kernel for as Flex ops (the file then needs a runtime with Flex).",
)
@click.option(
    "--atol", type=FiniteFloat(min=0), help="Largest difference from Keras an export may show (default 1e-4)."
)
@click.option("--weights", help='Override the backbone\'s weights: "imagenet", "none", or a file path.')
@click.option("--force", is_flag=True, help="Overwrite existing output files.")
@click.option(
    "--plot",
    "plot_path",
    metavar="FILE",
    help="Also draw the model's graph to FILE.svg or FILE.png (frozen layers marked).",
)
@guarded
def apply(spec, out, onnx_path, opset, litert_path, allow_flex, atol, weights, force, plot_path):
    """Build the model SPEC describes, print it, and save it."""
    from ..api import apply as build_and_write

    def show(state):
        from ..report.summary import render

        for note in state.notes:
            click.echo(f"  {note}")
        click.echo(render(state.model))

    # Exporters refuse options they do not take, so each gets its own.
    onnx_options = {k: v for k, v in {"opset": opset, "atol": atol}.items() if v is not None}
    litert_options = {k: v for k, v in {"atol": atol, "allow_flex": allow_flex or None}.items() if v is not None}
    done = build_and_write(
        spec,
        output=out,
        onnx=onnx_path,
        exports={"litert": litert_path} if litert_path else None,
        force=force,
        weights=weights,
        plot=plot_path,
        options={"onnx": onnx_options, "litert": litert_options},
        plugins=installed_plugins(),
        before_writing=show,
    )
    for fmt, path in done.written.items():
        click.echo(f"wrote {path}" + (f" ({done.reports[fmt]})" if done.reports[fmt] else ""))
    if plot_path:
        click.echo(f"wrote {plot_path} ({done.plot})")


@click.command()
@click.argument("spec", type=click.Path(dir_okay=True))
@guarded
def validate(spec):
    """Check SPEC against the schema and the installed plugins, without building (no TensorFlow)."""
    from ..api import load

    parsed, _ = load(spec, installed_plugins())
    checked = "layer class names, slice text and file paths"
    if "train" in parsed.data:
        checked += ", the training options and the metrics they monitor"
    click.echo(
        f"ok: {spec}: {counted(len(parsed.steps), 'step')}; checked the schema, op and backbone names and options, "
        + checked
    )
    click.echo(
        "not checked until `surgery apply` builds it: layer configs, index ranges and names against "
        "the model, shapes, and the contents of weights and model files"
    )


@click.command()
@click.argument("spec", type=click.Path(dir_okay=True))
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help='Machine-readable output: a list of one object per step (with --groups: {"steps": [...], "groups": {...}}).',
)
@click.option(
    "--groups",
    "all_groups",
    is_flag=True,
    help="List every channel group of the final model (what the prune op can remove), with its layers.",
)
@click.option(
    "--plot",
    "plot_path",
    metavar="FILE",
    help="Also draw the model's graph to FILE.svg or FILE.png (frozen layers marked).",
)
@click.option("--force", is_flag=True, help="Overwrite an existing plot file.")
@guarded
def plan(spec, as_json, all_groups, plot_path, force):
    """Show what each step of SPEC changes, and the final model's channel groups, built with random weights."""
    from ..api import plan as plan_spec

    plugins = installed_plugins()
    if plot_path:
        from ..report.plot import check_target

        check_target(plot_path, force)
    from ..report.planning import render, render_groups

    planned = plan_spec(spec, plugins)
    steps = [c.as_dict() for c in planned.changes]
    if as_json and all_groups:
        groups = planned.groups()
        found = {"error": groups} if isinstance(groups, str) else groups.as_dict(detail=True)
        click.echo(json.dumps({"steps": steps, "groups": found}, indent=2))
    elif as_json:
        click.echo(json.dumps(steps, indent=2))
    else:
        click.echo(render(planned))
        click.echo(render_groups(planned, limit=None if all_groups else 10))
    if plot_path:
        from ..report.plot import write_plot

        report = write_plot(planned.state.model, plot_path, force)
        click.echo(f"wrote {plot_path} ({report})", err=as_json)


def _names(given: tuple):
    """A repeated option: one name as a string, several as a list, none as None."""
    return list(given) if len(given) > 1 else (given[0] if given else None)


@click.command()
@click.argument("model", metavar="MODEL.keras")
@click.option(
    "--to",
    "fmt",
    metavar="FORMAT",
    help="onnx, saved_model, litert, keras, or another installed exporter (`surgery plugins` lists them).",
)
@click.option(
    "-o",
    "--output",
    "out",
    help="The output file (ending in the format's suffix: .onnx, .savedmodel, .tflite, "
    ".keras) or a folder for MODEL's name with that suffix. Default: next to MODEL.",
)
@click.option("--opset", type=int, help="ONNX opset (onnx; default 17).")
@click.option(
    "--allow-flex",
    is_flag=True,
    help="Keep ops LiteRT has no builtin kernel for as Flex ops (litert; the file needs a runtime with Flex).",
)
@click.option(
    "--atol",
    type=FiniteFloat(min=0),
    help="Largest max abs difference from Keras that passes the check (onnx, saved_model, litert; default 1e-4).",
)
@click.option(
    "--input-name",
    "input_names",
    multiple=True,
    help="Name of the input (default: image); repeat for a model with several inputs.",
)
@click.option(
    "--output-name",
    "output_names",
    multiple=True,
    help="Name of the output (default: the output layer's name); repeat for several outputs.",
)
@click.option(
    "--quantize",
    type=click.Choice(["int8", "dynamic", "float16"]),
    help="Quantize (onnx: int8, dynamic; litert: all three; keras: int8), checked against the float model on held-out data.",
)
@click.option(
    "--calibration",
    metavar="DATA",
    help="Images to calibrate and check the quantized model on: a folder of class subfolders or an .npz.",
)
@click.option(
    "--eval", "eval_data", metavar="DATA", help="Check on this data instead of a held-out part of --calibration."
)
@click.option("--calibration-samples", type=click.IntRange(min=1), help="Calibration images (default 200).")
@click.option(
    "--max-drop", type=FiniteFloat(0, 100), help="Points of accuracy the quantized model may lose (default 1.0)."
)
@click.option(
    "--min-agreement",
    type=FiniteFloat(0, 1),
    help="Fraction of images whose top class must stay the float model's (default 0.9).",
)
@click.option("--int8-io", is_flag=True, help="litert int8: integer inputs and outputs too (default float).")
@click.option("--force", is_flag=True, help="Overwrite an existing output.")
@guarded
def export(model, fmt, out, opset, allow_flex, atol, input_names, output_names, force, **quantization):
    """Write MODEL (a .keras file) in another format, checked against Keras where the format can run."""
    from ..api import export as export_model
    from ..exporting.outputs import exporter_of

    plugins = installed_plugins()
    exporter_of(plugins.registry, fmt)  # --to missing or unknown: said as the option, not as the API's argument
    # Only what the user gave: each exporter applies its own defaults and refuses what it does not take.
    options = {
        k: v
        for k, v in {
            "opset": opset,
            "allow_flex": allow_flex or None,
            "atol": atol,
            "input_name": _names(input_names),
            "output_name": _names(output_names),
            "quantize": quantization["quantize"],
            "calibration": quantization["calibration"],
            "eval": quantization["eval_data"],
            "calibration_samples": quantization["calibration_samples"],
            "max_drop": quantization["max_drop"],
            "min_agreement": quantization["min_agreement"],
            "int8_io": quantization["int8_io"] or None,
        }.items()
        if v is not None
    }
    path, report = export_model(model, fmt, output=out, force=force, options=options, plugins=plugins)
    click.echo(f"wrote {path}" + (f" ({report})" if report else ""))
