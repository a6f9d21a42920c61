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
    ExportError,
    SpecError,
    compare_export,
    converting,
    export_progress,
    hookimpl,
    keras,
    native_stderr_muted,
    prepare_export,
    read_export_options,
)

OPTIONS = ("atol", "input_name", "output_name", "allow_flex")
SIGNATURE = "serving_default"
# What the converter's error lists: ops a Flex runtime has, and ops no LiteRT runtime has.
_NEEDS = re.compile(r"^(TF Select ops|Custom ops): (.+)$", re.M)


def _needed_ops(error: Exception) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for kind, ops in _NEEDS.findall(str(error)):
        found.setdefault(kind, []).extend(op.strip() for op in ops.split(",") if op.strip())
    return found


def _convert(saved_model: Path, flex: bool) -> bytes:
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if flex:
        ops.append(tf.lite.OpsSet.SELECT_TF_OPS)
    converter.target_spec.supported_ops = ops
    return converter.convert()


def _litert(saved_model: Path, allow_flex: bool) -> tuple[bytes, list[str]]:
    """The flatbuffer, and the Flex ops it needs (none unless ``allow_flex``)."""
    try:
        return _convert(saved_model, flex=False), []
    except Exception as e:  # noqa: BLE001 (the converter's ConverterError; anything else is said by converting)
        needed = _needed_ops(e)
        if not needed:
            raise
    custom, flex = needed.get("Custom ops", []), needed.get("TF Select ops", [])
    if custom:
        raise ExportError(
            f"the model uses TensorFlow ops that no LiteRT runtime has: {', '.join(sorted(set(custom)))}; "
            "replace the layers that use them (ONNX or a SavedModel can carry them)"
        )
    if not allow_flex:
        raise ExportError(
            f"the model needs TensorFlow ops that LiteRT has no builtin kernel for: {', '.join(sorted(set(flex)))}; "
            "allow_flex (--allow-flex) keeps them as Flex ops, for a LiteRT runtime built with Flex"
        )
    return _convert(saved_model, flex=True), sorted(set(flex))


def _verify(content: bytes, target, atol: float) -> float:
    from ai_edge_litert.interpreter import Interpreter

    def run(inputs):
        result = Interpreter(model_content=content).get_signature_runner(SIGNATURE)(**inputs)
        return {name: result[name] for name in target.output_names}

    return compare_export(target, run, atol, "LiteRT")


def _allow_flex(options: dict) -> bool:
    value = options.get("allow_flex", False)
    if not isinstance(value, bool):
        raise SpecError(f"allow_flex must be true or false, got {value!r}")
    return value


def export(model, path, options):
    keras()
    options = read_export_options(options, OPTIONS, "litert")
    allow_flex = _allow_flex(options)
    # LiteRT runs float32 (float16 files are a quantization, not a policy): a mixed-precision model is
    # exported as its float32 twin, as for ONNX.
    target = prepare_export(model, options, float32=True)
    start = time.monotonic()
    with converting("converting to LiteRT", "the LiteRT conversion"):
        with tempfile.TemporaryDirectory(prefix="surgery-litert-") as tmp, native_stderr_muted():
            saved = Path(tmp) / "model"
            target.model.export(str(saved), format="tf_saved_model", verbose=False, input_signature=target.signature())
            content, flex = _litert(saved, allow_flex)
    seconds = time.monotonic() - start
    if flex:
        checked = "not run here (no Flex runtime in ai-edge-litert): check it where it will run"
        ops = f"Flex ops {', '.join(flex)} (needs a LiteRT runtime with Flex)"
    else:
        with export_progress("checking the LiteRT file"), native_stderr_muted():
            diff = _verify(content, target, options["atol"])
        checked = f"max abs diff vs Keras {diff:.1e} (atol {options['atol']:g})"
        ops = "builtin ops only"
    Path(path).write_bytes(content)
    return f"signature {SIGNATURE}: {target.describe()}; {ops}; {len(content) / 1e6:.2f} MB; {checked}; {seconds:.1f} s"


@hookimpl
def surgery_register_exporters(register):
    register(
        "litert",
        export,
        suffix=".tflite",
        description="LiteRT (TensorFlow Lite) flatbuffer, builtin ops only unless allow_flex, "
        "run by ai-edge-litert and checked against Keras",
    )
