"""The ``keras`` exporter: the native ``.keras`` zip, loadable without surgery installed.

With ``quantize: int8`` the file holds Keras' own int8 model (``model.quantize("int8")``: int8 kernels with
a scale per output channel in Dense, EinsumDense and Embedding layers, activations quantized as they run),
which loads in plain Keras. It is checked against the float model on held-out data, as the ONNX and
LiteRT int8 files are, and written only if it passes. Keras quantizes no convolution, so this is the path
for models whose weights are in dense layers (the KerasHub transformers); a CNN's int8 belongs in ONNX or
LiteRT, and the report says what share of the weights became int8 (docs/deploy.md).
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

from surgery import (
    ExportError,
    SpecError,
    check_quantized,
    converting,
    export_progress,
    hookimpl,
    keras,
    mend_configs,
    one_line,
    prepare_export,
    read_export_options,
    read_quantize_options,
    save_model,
    speed_note,
    time_alternating,
)

OPTIONS = ("quantize", "calibration")
QUANTIZE = ("int8",)


def export(model, path, options):
    options = read_export_options(options, OPTIONS, "keras")
    kind, calibration = read_quantize_options(options, QUANTIZE)
    if kind is None:
        save_model(model, path)  # model.save, keeping LoRA and nested frozen weights for surgery's loader
        return None
    return _int8(model, Path(path), calibration)


def _leaves(model) -> list:
    return [layer for layer in model._flatten_layers(include_self=False) if not list(layer._flatten_layers())[1:]]


def _policies_written(model) -> None:
    """Make each composite layer holding int8 layers write their dtype policies in its config.

    Keras saves a layer's int8 policy in that layer's config, but a layer that builds its own inner layers
    from its arguments (a KerasHub transformer block) writes only its own policy, so its int8 layers would
    load as float ones. Given a ``DTypePolicyMap`` from layer path to policy, as KerasHub's backbones write
    theirs, the block passes it down and each inner layer finds its own. The paths are those of a loaded
    model, since ``model`` was itself loaded from a file."""
    k = keras()
    for layer in model.layers:
        inner = [leaf for leaf in _leaves(layer) if leaf.quantization_mode is not None]
        if not inner:
            continue
        policies = k.dtype_policies.DTypePolicyMap(default_policy=layer.dtype_policy)
        for leaf in inner:
            policies[leaf.path] = leaf.dtype_policy
        written = layer.get_config

        def get_config(written=written, policies=policies):
            return {**written(), "dtype": k.dtype_policies.serialize(policies)}

        layer.get_config = get_config


def _loads_back(staged: Path, checked, x) -> None:
    """The written file, loaded by plain Keras, computes what the checked model does: an int8 layer that
    came back as a float one (its policy lost) would not."""
    import numpy as np

    try:
        back = keras().saving.load_model(str(staged), compile=False, safe_mode=True)
        same = np.allclose(np.asarray(back(x, training=False)), np.asarray(checked(x, training=False)), atol=1e-5)
    except Exception as e:  # noqa: BLE001 - whatever Keras raises, the file is not kept
        raise ExportError(
            f"the int8 .keras file does not load back in Keras: {one_line(e)}; nothing was written"
        ) from None
    if not same:
        raise ExportError(
            "the int8 .keras file loads back with other outputs than the model checked; nothing was written"
        )


def _int8(model, path: Path, calibration) -> str:
    k = keras()
    target = prepare_export(model, {}, float32=True)
    with tempfile.TemporaryDirectory(prefix=".surgery-quantize-", dir=path.parent) as tmp:
        float_path = Path(tmp) / "float.keras"
        save_model(model, float_path)
        with converting("quantizing the Keras model (int8)", "Keras' int8 quantization"):
            # A copy, as plain Keras loads the file (LoRA merged into the kernels): quantizing replaces the
            # kernels for good, and the model in memory may still be exported in other formats.
            copy = k.saving.load_model(str(float_path), compile=False, safe_mode=True)
            mend_configs(copy)  # the copy is saved in its turn
            sizes = {id(layer): layer.count_params() for layer in _leaves(copy)}
            with warnings.catch_warnings():  # Keras warns once per layer kind it does not quantize
                warnings.simplefilter("ignore")
                copy.quantize("int8")
        done = [layer for layer in _leaves(copy) if layer.dtype_policy.quantization_mode == "int8"]
        if not done:
            raise SpecError(
                "Keras' int8 quantization found no Dense, EinsumDense or Embedding layer to quantize in this "
                "model; quantize a convolutional model in ONNX or LiteRT (--to onnx or --to litert)"
            )
        share = sum(sizes.get(id(layer), 0) for layer in done) / max(1, sum(sizes.values()))
        _policies_written(copy)
        name = target.input_names[0]
        with export_progress("checking the int8 Keras model against the float model"):
            figures = check_quantized(
                target, lambda batch: copy(batch[name], training=False), calibration, "the int8 Keras model"
            )
            one = calibration.eval_x[:1]
            timed = time_alternating(
                # predict_on_batch: each model's compiled function, not eager calls (their Python overhead)
                {"float": lambda: target.model.predict_on_batch(one), "quantized": lambda: copy.predict_on_batch(one)}
            )
        staged = Path(tmp) / "int8.keras"
        save_model(copy, staged)
        _loads_back(staged, copy, calibration.eval_x[:8])
        os.replace(staged, path)
        sizes_mb = float_path.stat().st_size / 1e6, path.stat().st_size / 1e6
    return (
        f"int8: {len(done)} layers, {100 * share:.0f}% of the weights; {sizes_mb[0]:.2f} MB -> {sizes_mb[1]:.2f} MB; "
        f"{figures.describe()}; {speed_note(timed['float'], timed['quantized'])}"
    )


@hookimpl
def surgery_register_exporters(register):
    register(
        "keras",
        export,
        suffix=".keras",
        description="Keras 3 native format; loads with keras.saving.load_model, no custom objects; "
        "int8 through Keras' own quantization",
    )
