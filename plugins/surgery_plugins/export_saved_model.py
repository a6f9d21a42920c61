"""The ``saved_model`` exporter: a TensorFlow SavedModel folder (``NAME.savedmodel``) for TF Serving and converters.

One call in Keras 3 (``model.export(format="tf_saved_model")``); the
``serving_default`` signature takes the named input (``image`` by default)
and returns a dict keyed by output name. Mixed precision is kept: serving on
a GPU is where a SavedModel usually runs. Like the ONNX file, it is loaded
back and compared with Keras before it counts as written.
"""

from __future__ import annotations

import time

from surgery import (
    compare_export,
    converting,
    export_progress,
    hookimpl,
    keras,
    native_stderr_muted,
    prepare_export,
    read_export_options,
)

OPTIONS = ("atol", "input_name", "output_name")
SIGNATURE = "serving_default"


def _verify(path, target, atol) -> float:
    import tensorflow as tf

    serve = tf.saved_model.load(str(path)).signatures[SIGNATURE]

    def run(inputs):
        result = serve(**{name: tf.constant(value) for name, value in inputs.items()})
        return {name: result[name].numpy() for name in target.output_names}

    return compare_export(target, run, atol, "the SavedModel")


def export(model, path, options):
    keras()
    options = read_export_options(options, OPTIONS, "saved_model")
    target = prepare_export(model, options, float32=False)
    start = time.monotonic()
    with converting("exporting the SavedModel", "the SavedModel export"):
        with native_stderr_muted():
            target.model.export(str(path), format="tf_saved_model", verbose=False, input_signature=target.signature())
    seconds = time.monotonic() - start
    with export_progress("checking the SavedModel"), native_stderr_muted():
        diff = _verify(path, target, options["atol"])
    return (
        f"signature {SIGNATURE}: {target.describe()}; max abs diff vs Keras {diff:.1e} "
        f"(atol {options['atol']:g}); {seconds:.1f} s"
    )


@hookimpl
def surgery_register_exporters(register):
    register(
        "saved_model",
        export,
        suffix=".savedmodel",
        description="TensorFlow SavedModel folder (serving_default signature, named input and outputs), "
        "checked against Keras",
    )
