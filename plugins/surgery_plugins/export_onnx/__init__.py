"""The ``onnx`` exporter: Keras 3's ONNX conversion (tf2onnx), named, with a dynamic batch, verified in onnxruntime.

The conversion is the one ``model.export(format="onnx")`` runs on TensorFlow, without the SavedModel
bookkeeping Keras does first and with the workarounds in ``conversion.py`` for what tf2onnx cannot trace.
Registering imports nothing heavy; TensorFlow is imported when a model is exported.

With ``quantize`` (int8, dynamic) the checked float32 file is quantized by onnxruntime and replaced only
once the quantized file passes ``check_quantized`` against the float model (docs/deploy.md).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from surgery import (
    SpecError,
    __version__,
    check_quantized,
    converting,
    export_progress,
    finish_onnx,
    hookimpl,
    keras,
    native_stderr_muted,
    onnx_runner,
    prepare_export,
    read_export_options,
    read_quantize_options,
    speed_note,
    time_alternating,
    verify_onnx,
)

from .conversion import convert

DEFAULT_OPSET = 17
OPTIONS = ("opset", "atol", "input_name", "output_name", "quantize", "calibration")
# onnxruntime quantizes to int8 (static QDQ, calibrated) or dynamic (int8 weights); float16 needs another
# package (onnxconverter-common) and runs no faster on a CPU.
QUANTIZE = ("int8", "dynamic")


def _opset(value) -> int:
    from tf2onnx import constants

    highest = max(constants.OPSET_TO_IR_VERSION)
    if isinstance(value, bool) or not isinstance(value, int) or not 9 <= value <= highest:
        raise SpecError(f"opset {value!r} is not supported; tf2onnx writes opsets 9 to {highest}")
    return value


def export(model, path, options):
    keras()
    options = read_export_options(options, OPTIONS, "onnx")
    kind, calibration = read_quantize_options(options, QUANTIZE)
    opset = _opset(options.get("opset", DEFAULT_OPSET))
    target = prepare_export(model, options, float32=True)
    start = time.monotonic()
    with converting(f"exporting to ONNX (opset {opset})", "the ONNX conversion"):
        convert(target, path, opset)
    seconds = time.monotonic() - start
    finish_onnx(path, target, model, {"producer": f"surgery {__version__}", "keras_model": model.name})
    with export_progress("checking the ONNX file in onnxruntime"):
        diff = verify_onnx(path, target, options["atol"])
    notes = "".join(f"; {n}" for n in target.notes)
    report = (
        f"opset {opset}; {target.describe()}; max abs diff vs Keras {diff:.1e} (atol {options['atol']:g})"
        f"; {seconds:.1f} s{notes}"
    )
    if kind is None:
        return report
    return f"{_quantize(Path(path), target, kind, calibration)}; float32 file: {report}"


class _Reader:
    """onnxruntime's CalibrationDataReader: the calibration samples, a batch of 8 at a time."""

    def __init__(self, name, calibration):
        self._batches = ({name: batch} for batch in calibration.batches(8))

    def get_next(self):
        return next(self._batches, None)


def _quantize(path: Path, target, kind: str, calibration) -> str:
    """Replace the checked float32 file at ``path`` by its quantized form, once that passes the accuracy check."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    name = target.input_names[0]
    with tempfile.TemporaryDirectory(prefix=".surgery-quantize-", dir=path.parent) as tmp:
        ready, quantized = Path(tmp) / "ready.onnx", Path(tmp) / "quantized.onnx"
        with converting(f"quantizing the ONNX file ({kind})", f"the ONNX {kind} quantization"), native_stderr_muted():
            # Shape inference and graph fusions first, as onnxruntime's quantization guide does.
            quant_pre_process(str(path), str(ready))
            if kind == "int8":
                quantize_static(
                    str(ready),
                    str(quantized),
                    _Reader(name, calibration),
                    quant_format=QuantFormat.QDQ,
                    per_channel=True,
                    # Unsigned activations, signed weights: onnxruntime's fast int8 kernels on x86 take this
                    # pair (ResNet50 batch 1 here: 1.6x faster than signed activations).
                    activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8,
                )
            else:
                quantize_dynamic(str(ready), str(quantized), weight_type=QuantType.QInt8)
        with export_progress(f"checking the {kind} ONNX file against the float model"):
            run = onnx_runner(quantized)
            figures = check_quantized(target, run, calibration, f"the {kind} ONNX file")
            one = {name: calibration.eval_x[:1]}
            float_run = onnx_runner(path)
            timed = time_alternating({"float": lambda: float_run(one), "quantized": lambda: run(one)})
        sizes = path.stat().st_size, quantized.stat().st_size
        os.replace(quantized, path)
    return (
        f"{kind}: {sizes[0] / 1e6:.2f} MB -> {sizes[1] / 1e6:.2f} MB; {figures.describe()}; "
        f"{speed_note(timed['float'], timed['quantized'])}"
    )


@hookimpl
def surgery_register_exporters(register):
    register(
        "onnx",
        export,
        suffix=".onnx",
        description="ONNX via tf2onnx, as Keras' model.export converts; named input/output, dynamic batch, "
        "checked in onnxruntime against Keras",
    )
