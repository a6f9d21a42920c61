"""The ``litert`` exporter: a LiteRT (TensorFlow Lite) flatbuffer (``NAME.tflite``) for phones, boards and CPUs.

The model goes through the same SavedModel signature as the ``saved_model`` exporter (named inputs and
outputs, batch left open) and then TensorFlow's converter. Why not ``model.export(format="litert")``:
Keras turns on SELECT_TF_OPS there, so a model with an op LiteRT has no kernel for still writes a file,
and ai-edge-litert refuses to run it on the device. Here only LiteRT's builtin ops are allowed, and a
model that needs more is refused with the ops named; ``allow_flex`` keeps such ops as Flex (select
TensorFlow) ops, which need a LiteRT runtime built with Flex, and the report says so.

The file is run by ai-edge-litert's interpreter (the runtime that replaces the deprecated
``tf.lite.Interpreter``) and compared with Keras before it counts as written. A Flex file cannot be
run here: neither ai-edge-litert nor TensorFlow 2.21's ``tf.lite.Interpreter`` links the Flex kernels.
It is written only when asked for (``allow_flex``), and the report says that it was not run.
"""

from __future__ import annotations

import re
import tempfile
import time
from pathlib import Path

from surgery import (
    SpecError,
    SurgeryError,
    check_quantized,
    compare_export,
    converting,
    export_progress,
    hookimpl,
    keras,
    litert_runner,
    native_stderr_muted,
    prepare_export,
    read_export_options,
    read_quantize_options,
    speed_note,
    time_alternating,
)

OPTIONS = ("atol", "input_name", "output_name", "allow_flex", "quantize", "calibration", "int8_io")
SIGNATURE = "serving_default"
# What the converter's error lists: ops a Flex runtime has, and ops no LiteRT runtime has.
_NEEDS = re.compile(r"^(TF Select ops|Custom ops): (.+)$", re.M)


def _needed_ops(error: Exception) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for kind, ops in _NEEDS.findall(str(error)):
        found.setdefault(kind, []).extend(op.strip() for op in ops.split(",") if op.strip())
    return found


def _convert(saved_model: Path, flex: bool, quantized: dict | None = None) -> bytes:
    """The flatbuffer; ``quantized``: ``kind``, ``calibration``, ``int8_io`` for a post-training quantization."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if flex:
        ops.append(tf.lite.OpsSet.SELECT_TF_OPS)
    if quantized is not None:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        kind = quantized["kind"]
        if kind == "float16":
            converter.target_spec.supported_types = [tf.float16]
        elif kind == "int8":
            # Full integer: every op in int8, calibrated on the samples; an op without an int8 kernel fails
            # the conversion rather than staying float unseen.
            calibration = quantized["calibration"]
            converter.representative_dataset = lambda: ([batch] for batch in calibration.batches(1))
            ops[0] = tf.lite.OpsSet.TFLITE_BUILTINS_INT8
            if quantized["int8_io"]:
                converter.inference_input_type = tf.int8
                converter.inference_output_type = tf.int8
    converter.target_spec.supported_ops = ops
    return converter.convert()


def _litert(saved_model: Path, allow_flex: bool, quantized: dict | None = None) -> tuple[bytes, list[str]]:
    """The flatbuffer, and the Flex ops it needs (none unless ``allow_flex``)."""
    try:
        return _convert(saved_model, False, quantized), []
    except Exception as e:  # noqa: BLE001 (the converter's ConverterError; anything else is said by converting)
        needed = _needed_ops(e)
        if not needed:
            raise
    custom, flex = needed.get("Custom ops", []), needed.get("TF Select ops", [])
    # What the model is made of decides these, not a converter's failure: the user's to change (exit 2).
    if custom:
        raise SurgeryError(
            f"the model uses TensorFlow ops that no LiteRT runtime has: {', '.join(sorted(set(custom)))}; "
            "replace the layers that use them (ONNX or a SavedModel can carry them)"
        )
    if not allow_flex:
        raise SurgeryError(
            f"the model needs TensorFlow ops that LiteRT has no builtin kernel for: {', '.join(sorted(set(flex)))}; "
            "allow_flex (--allow-flex) keeps them as Flex ops, for a LiteRT runtime built with Flex"
        )
    return _convert(saved_model, True, quantized), sorted(set(flex))


def _ordered(run, target):
    """``run`` giving a list of the outputs in the target's order."""

    def ordered(inputs):
        found = run(inputs)
        return [found[n] for n in target.output_names]

    return ordered


def _verify(content: bytes, target, atol: float) -> float:
    run = _ordered(litert_runner(content), target)
    return compare_export(target, lambda inputs: dict(zip(target.output_names, run(inputs))), atol, "LiteRT")


def _check_quantized(content: bytes, float_content: bytes, target, kind: str, calibration) -> str:
    run = litert_runner(content)
    figures = check_quantized(target, _ordered(run, target), calibration, f"the {kind} LiteRT file")
    one = {target.input_names[0]: calibration.eval_x[:1]}
    float_run = litert_runner(float_content)
    timed = time_alternating({"float": lambda: float_run(one), "quantized": lambda: run(one)})
    return (
        f"{kind}: {len(float_content) / 1e6:.2f} MB -> {len(content) / 1e6:.2f} MB; {figures.describe()}; "
        f"{speed_note(timed['float'], timed['quantized'])}"
    )


def _switch(options: dict, key: str) -> bool:
    value = options.get(key, False)
    if not isinstance(value, bool):
        raise SpecError(f"{key} must be true or false, got {value!r}")
    return value


def export(model, path, options):
    keras()
    options = read_export_options(options, OPTIONS, "litert")
    allow_flex = _switch(options, "allow_flex")
    kind, calibration = read_quantize_options(options)
    int8_io = _switch(options, "int8_io")
    if int8_io and kind != "int8":
        raise SpecError("int8_io applies to an int8 quantization (--quantize int8)")
    # LiteRT runs float32 (float16 files are a quantization, not a policy): a mixed-precision model is
    # exported as its float32 twin, as for ONNX.
    target = prepare_export(model, options, float32=True)
    start = time.monotonic()
    with converting("converting to LiteRT", "the LiteRT conversion"):
        with tempfile.TemporaryDirectory(prefix="surgery-litert-") as tmp, native_stderr_muted():
            saved = Path(tmp) / "model"
            target.model.export(str(saved), format="tf_saved_model", verbose=False, input_signature=target.signature())
            content, flex = _litert(saved, allow_flex)
            quantized = None
            if kind is not None and not flex:
                spec = {"kind": kind, "calibration": calibration, "int8_io": int8_io}
                quantized = _litert(saved, allow_flex, spec)[0]
    seconds = time.monotonic() - start
    if kind is not None and flex:
        raise SurgeryError("a file with Flex ops cannot be checked here, so it is not quantized; export it in float32")
    if flex:
        checked = "not run here (no Flex runtime in ai-edge-litert): check it where it will run"
        ops = f"Flex ops {', '.join(flex)} (needs a LiteRT runtime with Flex)"
    else:
        with export_progress("checking the LiteRT file"), native_stderr_muted():
            diff = _verify(content, target, options["atol"])
        checked = f"max abs diff vs Keras {diff:.1e} (atol {options['atol']:g})"
        ops = "builtin ops only"
    report = (
        f"signature {SIGNATURE}: {target.describe()}; {ops}; {len(content) / 1e6:.2f} MB; {checked}; {seconds:.1f} s"
    )
    if quantized is not None:
        with export_progress(f"checking the {kind} LiteRT file against the float model"), native_stderr_muted():
            report = f"{_check_quantized(quantized, content, target, kind, calibration)}; float32 file: {report}"
        content = quantized
    Path(path).write_bytes(content)
    return report


@hookimpl
def surgery_register_exporters(register):
    register(
        "litert",
        export,
        suffix=".tflite",
        description="LiteRT (TensorFlow Lite) flatbuffer, builtin ops only unless allow_flex, "
        "run by ai-edge-litert and checked against Keras",
    )
