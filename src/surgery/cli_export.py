"""``surgery export MODEL.keras --to FORMAT``: write a saved model in another format, checked like ``apply``'s.

Everything that can be checked without TensorFlow (the format, the paths,
the options) is checked before the model is loaded, so a typo costs no
start-up time. The model is loaded by the ``keras_file`` backbone, the same
safe_mode=True loader a spec uses.
"""

from __future__ import annotations

from pathlib import Path

import click

from .cli_types import FiniteFloat

from .cli import _plugins, guarded
from .errors import SpecError, SurgeryError, did_you_mean


def _options(opset, atol, input_names, output_names) -> dict:
    """Only what the user gave: each exporter applies its own defaults and refuses what it does not take."""
    options = {"opset": opset, "atol": atol,
               "input_name": list(input_names) if len(input_names) > 1 else (input_names[0] if input_names else None),
               "output_name": list(output_names) if len(output_names) > 1 else (output_names[0] if output_names else None)}
    return {k: v for k, v in options.items() if v is not None}


def _target(model_path: Path, out: str | None, exporter, force: bool) -> Path:
    from .writing import check_output, output_path

    if out is None:
        path, may_create = model_path.with_suffix(exporter.suffix), False
    else:
        path, may_create = output_path(out, model_path.stem, exporter.suffix)
    if path.resolve() == model_path.resolve():
        raise SpecError("is the model being exported; choose another output path", file=str(path), where="-o")
    check_output(path, force, f"output {exporter.format}", may_create)
    return path


@click.command("export")
@click.argument("model", metavar="MODEL.keras")
@click.option("--to", "fmt", metavar="FORMAT", help="onnx, saved_model, keras, or another installed exporter "
              "(`surgery plugins` lists them).")
@click.option("-o", "--output", "out", help="The output file (ending in the format's suffix: .onnx, .savedmodel, "
              ".keras) or a folder for MODEL's name with that suffix. Default: next to MODEL.")
@click.option("--opset", type=int, help="ONNX opset (onnx; default 17).")
@click.option("--atol", type=FiniteFloat(min=0), help="Largest max abs difference from Keras that passes the check "
              "(onnx, saved_model; default 1e-4).")
@click.option("--input-name", "input_names", multiple=True,
              help="Name of the input (default: image); repeat for a model with several inputs.")
@click.option("--output-name", "output_names", multiple=True,
              help="Name of the output (default: the output layer's name); repeat for several outputs.")
@click.option("--force", is_flag=True, help="Overwrite an existing output.")
@guarded
def export_command(model, fmt, out, opset, atol, input_names, output_names, force):
    """Write MODEL (a .keras file) in another format, checked against Keras where the format can run."""
    from .writing import atomic_output

    registry = _plugins().registry
    if fmt is None:
        raise SpecError("--to is required: " + ", ".join(sorted(registry.exporters)))
    if fmt not in registry.exporters:
        raise SpecError(f'no exporter "{fmt}" is installed' + did_you_mean(fmt, registry.exporters), where="--to")
    model_path = Path(model)
    if not model_path.is_file():
        raise SpecError("no such file" if not model_path.exists() else "is not a file", file=model)
    exporter = registry.exporters[fmt]
    path = _target(model_path, out, exporter, force)
    options = _options(opset, atol, input_names, output_names)
    if "keras_file" not in registry.backbones:
        raise SpecError('loading a .keras file needs the "keras_file" backbone plugin, which is not loaded')

    # Its errors already name the file.
    loaded = registry.backbones["keras_file"].build(path=str(model_path))
    try:
        with atomic_output(path, force) as tmp:
            report = exporter.export(loaded, tmp, options)
    except SurgeryError as e:
        raise e.located(file=str(path)) from None
    click.echo(f"wrote {path}" + (f" ({report})" if report else ""))
