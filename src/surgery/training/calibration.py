"""The data a quantized export is calibrated and judged on, read as ``surgery train`` and ``evaluate`` read data.

The user's ``--calibration`` (and ``--eval``) folder or ``.npz`` goes through the same checks as training
data (links, sizes, unreadable images: one line each), the model's own image size and preprocessing
(``classes.json`` beside the model, as evaluate uses), and labels matched to the model's classes by name.
The exporter gets arrays (``exporting.quantized.Calibration``), never a path.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import SpecError
from ..exporting.quantized import DEFAULT_MAX_DROP, DEFAULT_MIN_AGREEMENT, DEFAULT_SAMPLES, Calibration
from . import data, models, pipeline
from .evaluate import matched_labels

MAX_EVAL = 1000  # held-out images the check runs: enough for a 0.1-point figure, seconds of inference
MIN_IMAGES = 20  # fewer and one image is 5 points of accuracy: the check would judge noise
SEED = 0
# The keys surgery export takes for quantization; the exporter receives quantize, int8_io and a Calibration.
READ_HERE = ("calibration", "eval", "calibration_samples", "max_drop", "min_agreement")


def _number(options: dict, key: str, default: float, low: float, high: float, where) -> float:
    value = options.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise SpecError(f"{key} must be a number from {low:g} to {high:g}, got {value!r}", where=where(key))
    return float(value)


def _samples(options: dict, where) -> int:
    value = options.get("calibration_samples", DEFAULT_SAMPLES)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SpecError(
            f"calibration_samples must be a whole number >= 1, got {value!r}", where=where("calibration_samples")
        )
    return value


def _arrays(loaded, source: data.Source, index: np.ndarray) -> np.ndarray:
    """The images at ``index`` as the model takes them (its size, its preprocessing), float32."""
    image = loaded.image()
    if source.kind == "folder":
        batch = pipeline.load_images([source.files[i] for i in index], image, loaded.prep)
        return np.asarray(batch, dtype="float32")
    x = pipeline.check_npz_shape(source, image)[index]
    return np.asarray(loaded.prep(x) if loaded.prep is not None else x, dtype="float32")


def _labels(loaded, source: data.Source) -> tuple[bool, np.ndarray | None]:
    """(whether the output is class scores, the data's labels in the model's numbering or None).

    Class scores: the model's classes.json names them, or the output has one unit per class of the data, or
    ends in a softmax. Anything else (features, a value) is judged by cosine similarity, not by top-1.
    """
    units = int(loaded.model.outputs[0].shape[-1] or 0)
    last = getattr(getattr(loaded.model.layers[-1], "activation", None), "__name__", "")
    if loaded.class_names is not None or (units > 1 and units == len(source.class_names)):
        return True, matched_labels(source, loaded.class_names, units)[1]
    return units > 1 and last == "softmax", None


def _flag(key: str) -> str:
    return "--" + key.replace("_", "-")


@dataclass(frozen=True)
class Asked:
    """A quantized export's data and limits, checked without TensorFlow (the data's files, the numbers)."""

    source: data.Source
    held: data.Source | None
    samples: int
    max_drop: float
    min_agreement: float
    where: Callable[[str], str]  # a key -> how messages name it: --calibration, or outputs.onnx.calibration
    file: str | None  # the file that gave the options (a spec), for messages; None for the command line


def asked(options: dict, where: Callable[[str], str] = _flag, file: str | None = None) -> Asked | None:
    """The calibration ``options`` ask for, each checked; None for a float export."""
    try:
        if options.get("quantize") is None:
            stray = sorted(set(READ_HERE) & set(options))
            if stray:
                raise SpecError(
                    f"{stray[0]} applies to a quantized export; add {where('quantize')} (int8, dynamic or float16)",
                    where=where(stray[0]),
                )
            return None
        given = options.get("calibration")
        if given is None:
            raise SpecError(
                f"quantize {options['quantize']} needs data to check the result against the float model: give "
                f"{where('calibration')} (a folder of class subfolders or an .npz)",
                where=where("quantize"),
            )
        return Asked(
            source=data.inspect(str(given), where("calibration")),
            held=data.inspect(str(options["eval"]), where("eval")) if options.get("eval") is not None else None,
            samples=_samples(options, where),
            max_drop=_number(options, "max_drop", DEFAULT_MAX_DROP, 0, 100, where),
            min_agreement=_number(options, "min_agreement", DEFAULT_MIN_AGREEMENT, 0, 1, where),
            where=where,
            file=file,
        )
    except SpecError as e:
        raise e.located(file=file) from None


def calibrate(request: Asked, loaded) -> Calibration:
    """The calibration and held-out arrays for ``loaded`` (a ``models.Loaded``: its size, preprocessing and
    classes)."""
    source, held = request.source, request.held
    if len(loaded.model.inputs) != 1:
        raise SpecError(
            f"quantization is calibrated on a model with one image input; this one has {len(loaded.model.inputs)}",
            file=request.file,
            where=request.where("quantize"),
        )
    rng = np.random.default_rng(SEED)
    order = rng.permutation(len(source))
    if held is None:
        if len(source) < MIN_IMAGES:
            raise SpecError(
                f"{len(source)} images are too few to calibrate and check a quantized model; give at least "
                f"{MIN_IMAGES}, or {request.where('eval')} DATA",
                file=str(source.path),
                where=request.where("calibration"),
            )
        n = min(request.samples, len(source) // 2)
        cal, held_index, held_source = order[:n], order[n : n + MAX_EVAL], source
    else:
        if len(held) < MIN_IMAGES:
            raise SpecError(
                f"{len(held)} images are too few to check a quantized model; give at least {MIN_IMAGES}",
                file=str(held.path),
                where=request.where("eval"),
            )
        cal, held_source = order[: request.samples], held
        held_index = rng.permutation(len(held))[:MAX_EVAL]
    classifier, labels = _labels(loaded, held_source)
    return Calibration(
        samples=_arrays(loaded, source, np.sort(cal)),
        eval_x=_arrays(loaded, held_source, np.sort(held_index)),
        eval_y=labels[np.sort(held_index)] if labels is not None else None,
        source=f"{len(held_index)} held-out images of {Path(str(held_source.path)).name}",
        classifier=classifier,
        max_drop=request.max_drop,
        min_agreement=request.min_agreement,
    )


def exporter_options(options: dict, calibration: Calibration) -> dict:
    """What the exporter receives: its own options and the arrays, never the data's paths."""
    return {**{k: v for k, v in options.items() if k not in READ_HERE}, "calibration": calibration}


def read(model_path: str, options: dict, plugins) -> dict:
    """``options`` with the calibration and eval paths replaced by a ``Calibration`` (for a quantized export)."""
    request = asked(options)
    if request is None:
        return options
    return exporter_options(options, calibrate(request, models.load(model_path, plugins)))


def spec_outputs(spec, exclude: dict) -> dict:
    """Format -> (its quantization options, their checked data) for a spec's quantized outputs; a format the
    command line also names is written where it says, unquantized."""
    found = {}
    for fmt in spec.outputs:
        options = spec.output_options(fmt)
        if options and fmt not in exclude:
            found[fmt] = (options, asked(options, _output_key(fmt), spec.file))
    return found


def _output_key(fmt: str) -> Callable[[str], str]:
    """How messages name an output's option: ``outputs.onnx.calibration``."""
    return lambda key: f"outputs.{fmt}.{key}"


def calibrated(quantized: dict, state, source: str, given: dict) -> dict:
    """Each quantized output's exporter options (``spec_outputs``'), with calibration arrays read for the model a
    spec built (its ``State``)."""
    from . import quietly

    loaded = models.built(state, source)
    return {
        fmt: exporter_options({**given.get(fmt, {}), **options}, quietly(calibrate, request, loaded))
        for fmt, (options, request) in quantized.items()
    }
