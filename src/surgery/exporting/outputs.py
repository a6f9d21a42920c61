"""Where a build's outputs go and how they are written: planned and checked before the work, written all or none.

``plan_outputs`` decides every output's path from the spec's ``outputs``, ``-o`` and the extra
formats asked for (``--onnx``), and checks each before anything is built. ``write_outputs`` runs the
exporters into temporary files and places them together (``writing.Outputs``), so a failed export
leaves none. ``export_file`` does the same for a saved ``.keras`` model (``surgery export``).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import SpecError, SurgeryError, did_you_mean
from ..io.writing import Outputs, check_output, output_path
from ..model.lora import merged as lora_merged

if TYPE_CHECKING:
    from ..plugins.registry import ExporterInfo, Registry
    from ..spec.loading import Spec

# The options only the ONNX exporter takes on `surgery apply` (export takes each exporter's own).
ONNX_OPTIONS = ("opset", "atol")


def plan_outputs(
    spec: Spec,
    registry: Registry,
    *,
    output: str | None = None,
    extra: dict[str, str] | None = None,
    force: bool = False,
) -> dict[str, Path]:
    """Format -> path for everything a build writes, checked before anything is built.

    ``output`` is ``-o``: a folder for ``<name>.keras`` or a path ending in ``.keras``; ``extra`` maps
    other formats to paths typed on the command line. Outputs named in the spec stay in its folder
    (``spec.validate`` checked them); none may be one of the spec's inputs.
    """
    planned = {fmt: spec.output_file(fmt) for fmt in spec.outputs}
    creatable: set[str] = set()
    if output is not None or "keras" not in planned:
        planned["keras"], named_folder = output_path(output, spec.name, ".keras")
        if named_folder:
            creatable.add("keras")
    for fmt, typed in (extra or {}).items():
        planned[fmt] = Path(typed)
        # `-o out/ --onnx out/model.onnx`: the folder -o creates may hold the other outputs too.
        if "keras" in creatable and os.path.abspath(planned[fmt].parent) == os.path.abspath(planned["keras"].parent):
            creatable.add(fmt)
    inputs = spec.files_read()
    for fmt, path in planned.items():
        if fmt not in registry.exporters:
            raise SpecError(
                f'no exporter for "{fmt}" is installed' + did_you_mean(fmt, registry.exporters),
                file=spec.file,
                where="outputs",
            )
        check_output(path, force, f"output {fmt}", fmt in creatable, inputs)
    return planned


def write_outputs(
    model: Any,
    planned: dict[str, Path],
    registry: Registry,
    *,
    force: bool = False,
    options: dict[str, dict[str, Any]] | None = None,
    also: dict[str, tuple[Path, Callable[[Path], str | None]]] | None = None,
) -> dict[str, str | None]:
    """Export ``model`` to every planned path, all or none; format -> the exporter's one-line report.

    ``options`` maps a format to its exporter's options. ``also`` adds outputs that are not exports (the
    picture): name -> (path, a function writing it to the temporary path it is given); they are placed
    with the others, or none is.
    """
    reports: dict[str, str | None] = {}
    with Outputs(force) as outputs:
        for fmt, path in planned.items():
            tmp = outputs.stage(path)
            # Only the .keras file keeps LoRA as LoRA (surgery's loader puts it back); every other format
            # gets the matrices merged into the kernels, as a deployed model should have them.
            keep = contextlib.nullcontext() if fmt == "keras" else lora_merged(model)
            try:
                with keep:
                    reports[fmt] = registry.exporters[fmt].export(model, tmp, dict((options or {}).get(fmt, {})))
            except SurgeryError as e:
                raise e.located(file=str(path), where=f"output {fmt}") from None
        for name, (path, write) in (also or {}).items():
            reports[name] = write(outputs.stage(path))
        outputs.commit()
    return reports


def exporter_of(registry: Registry, fmt: str | None) -> ExporterInfo:
    if fmt is None:
        raise SpecError("--to is required: " + ", ".join(sorted(registry.exporters)))
    if fmt not in registry.exporters:
        raise SpecError(f'no exporter "{fmt}" is installed' + did_you_mean(fmt, registry.exporters), where="--to")
    return registry.exporters[fmt]


def export_target(model_path: Path, exporter: ExporterInfo, output: str | None, force: bool) -> Path:
    """Where ``surgery export`` writes: ``-o`` (a file with the format's suffix, or a folder), else beside MODEL."""
    if output is None:
        path, may_create = model_path.with_suffix(exporter.suffix), False
    else:
        path, may_create = output_path(output, model_path.stem, exporter.suffix)
    if path.resolve() == model_path.resolve():
        raise SpecError("is the model being exported; choose another output path", file=str(path), where="-o")
    check_output(path, force, f"output {exporter.format}", may_create, inputs=[model_path])
    return path


def export_file(
    model_path: str | os.PathLike[str],
    fmt: str | None,
    registry: Registry,
    *,
    output: str | None = None,
    force: bool = False,
    options: dict[str, Any] | None = None,
) -> tuple[Path, str | None]:
    """A saved ``.keras`` model written in another format, checked like ``apply``'s outputs.

    Everything that can be checked without TensorFlow (the format, the paths, the file) is checked before
    the model is loaded, so a typo costs no start-up time.
    """
    from ..io.model_files import check_model_file, load_model

    model_path = Path(model_path)
    exporter = exporter_of(registry, fmt)
    if not model_path.exists():
        raise SpecError("no such file", file=str(model_path))
    path = export_target(model_path, exporter, output, force)
    check_model_file(model_path)
    model = load_model(model_path)
    reports = write_outputs(
        model, {exporter.format: path}, registry, force=force, options={exporter.format: options or {}}
    )
    return path, reports[exporter.format]
