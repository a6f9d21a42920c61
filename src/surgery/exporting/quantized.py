"""The check that makes a quantized export trustworthy: the quantized file against the float model on held-out
data, and both timed (numpy only; the exporters run the files).

A quantized model is not expected to match Keras to 1e-4 as a float export is, so it is judged by what its
user cares about: for labelled data, the float and quantized top-1 accuracy and how often the two agree;
without labels, agreement for a classifier and cosine similarity for other outputs. Past ``max_drop``
(points of accuracy) or under ``min_agreement`` / ``min_cosine`` the export fails with the figures, and
nothing is written.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import SpecError, SurgeryError
from ..spec.schema import QUANTIZE_KINDS
from .export_check import Target

KINDS = QUANTIZE_KINDS
DEFAULT_SAMPLES = 200  # calibration images: what onnxruntime's and LiteRT's guides use, a few hundred
DEFAULT_MAX_DROP = 1.0  # points of top-1 accuracy
DEFAULT_MIN_AGREEMENT = 0.9  # the quantized model's top-1 equals the float model's on this fraction
DEFAULT_MIN_COSINE = 0.99  # for outputs that are not class scores


class AccuracyError(SurgeryError):
    """The quantized file is further from the float model than the limits allow: what the user's data and
    limits decide (exit 2), unlike an ExportError, where a converter failed."""


@dataclass(frozen=True)
class Calibration:
    """Held-out images as the model takes them (preprocessed, float32), read by the host from the user's data.

    ``samples`` calibrate int8 activations; ``eval_x`` (with ``eval_y`` class indices in the model's
    order, or None) judge the result.
    """

    samples: np.ndarray
    eval_x: np.ndarray
    eval_y: np.ndarray | None
    source: str
    classifier: bool = True  # class scores (judged by top-1); else features or a value (judged by cosine)
    max_drop: float = DEFAULT_MAX_DROP
    min_agreement: float = DEFAULT_MIN_AGREEMENT
    min_cosine: float = DEFAULT_MIN_COSINE

    def batches(self, size: int = 1):
        """The calibration samples in batches (the converters' representative data)."""
        for start in range(0, len(self.samples), size):
            yield self.samples[start : start + size]


def read_options(options: dict, kinds: tuple = KINDS) -> tuple[str | None, Calibration | None]:
    """(the quantization asked for, its calibration), each checked; (None, None) for a float export."""
    kind = options.get("quantize")
    if kind is None:
        return None, None
    if kind not in kinds:
        raise SpecError(f"quantize must be one of {', '.join(kinds)} for this format, not {kind!r}")
    calibration = options.get("calibration")
    if not isinstance(calibration, Calibration):
        raise SpecError(
            f"quantize {kind} needs data to check the result against the float model: give --calibration DATA "
            "(a folder of class subfolders or an .npz)"
        )
    return kind, calibration


@dataclass(frozen=True)
class Figures:
    n: int
    agreement: float | None = None
    float_accuracy: float | None = None
    quantized_accuracy: float | None = None
    cosine: float | None = None

    def describe(self) -> str:
        if self.cosine is not None:
            return f"cosine similarity to the float model {self.cosine:.4f} on {self.n} images"
        text = f"top-1 agreement with the float model {100 * (self.agreement or 0):.1f}% on {self.n} images"
        if self.float_accuracy is not None and self.quantized_accuracy is not None:
            text = (
                f"accuracy {100 * self.float_accuracy:.2f}% float, {100 * self.quantized_accuracy:.2f}% quantized; "
                + text
            )
        return text


def _one_output(outputs) -> np.ndarray:
    if isinstance(outputs, dict):
        outputs = list(outputs.values())
    if isinstance(outputs, (list, tuple)):
        if len(outputs) != 1:
            raise SpecError(f"quantization is checked on a model with one output; this one has {len(outputs)}")
        outputs = outputs[0]
    return np.asarray(outputs, dtype="float64").reshape(len(outputs), -1)


def _cosine(want: np.ndarray, got: np.ndarray) -> float:
    """Mean cosine similarity per image; a single value per image is compared across the images instead."""
    if want.shape[1] == 1:
        want, got = want.T, got.T
    dot = np.sum(want * got, axis=1)
    norms = np.linalg.norm(want, axis=1) * np.linalg.norm(got, axis=1)
    same = np.all(want == got, axis=1)  # two zero vectors are alike
    return float(np.mean(np.where(norms > 0, dot / np.maximum(norms, 1e-30), same)))


def figures(expected, actual, labels: np.ndarray | None, classifier: bool = True) -> Figures:
    """How the quantized outputs compare with the float ones (both for the same images)."""
    want, got = _one_output(expected), _one_output(actual)
    n = len(want)
    if not classifier or want.shape[1] == 1:
        return Figures(n, cosine=_cosine(want, got))
    float_top, quant_top = want.argmax(axis=1), got.argmax(axis=1)
    agreement = float(np.mean(float_top == quant_top))
    if labels is None:
        return Figures(n, agreement=agreement)
    return Figures(
        n,
        agreement=agreement,
        float_accuracy=float(np.mean(float_top == labels)),
        quantized_accuracy=float(np.mean(quant_top == labels)),
    )


def check(target: Target, run: Callable[[dict], Any], calibration: Calibration, what: str) -> Figures:
    """Run the quantized file (``run(inputs) -> outputs``) and the float model on the held-out images; fail
    with the figures when the quantized one is worse than the limits allow."""
    from .export_check import keras_outputs

    name = target.input_names[0]
    expected, actual = [], []
    for start in range(0, len(calibration.eval_x), 64):
        batch = {name: calibration.eval_x[start : start + 64]}
        expected.append(_one_output(keras_outputs(target, batch)))
        actual.append(_one_output(run(batch)))
    found = figures(np.concatenate(expected), np.concatenate(actual), calibration.eval_y, calibration.classifier)
    problems = []
    if found.float_accuracy is not None and found.quantized_accuracy is not None:
        drop = 100 * (found.float_accuracy - found.quantized_accuracy)
        if drop > calibration.max_drop:
            problems.append(f"it loses {drop:.2f} points of accuracy (max_drop {calibration.max_drop:g})")
    if found.agreement is not None and found.agreement < calibration.min_agreement:
        problems.append(
            f"its top-1 agrees with the float model's on {100 * found.agreement:.1f}% of images "
            f"(min_agreement {calibration.min_agreement:g})"
        )
    if found.cosine is not None and found.cosine < calibration.min_cosine:
        problems.append(f"cosine similarity {found.cosine:.4f} (min_cosine {calibration.min_cosine:g})")
    if problems:
        raise AccuracyError(
            f"{what} is too far from the float model on {calibration.source}: {'; '.join(problems)} "
            f"({found.describe()}); nothing was written"
        )
    return found


# Seconds to wait before each timed run. After a run, onnxruntime's pool threads spin for a while looking for
# work; on a 2-core machine they took the next run's cores and made whichever form came next up to 2x slower
# (ResNet50's float32 ONNX at batch 1: 64 ms after an int8 session, 34-38 ms after a pause of 50 ms or with
# spinning off).
SETTLE_S = 0.05


def latencies(runs: dict[str, Callable[[], Any]], repeats: int = 30) -> dict[str, float]:
    """Median seconds of each ``run()``, the runs taken in turn so that the machine's noise hits all alike, each
    after a pause in which the previous run's threads go idle."""
    for run in runs.values():
        run()  # the first call allocates and plans
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            time.sleep(SETTLE_S)
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {name: float(np.median(t)) for name, t in times.items()}


def speed_note(float_s: float, quantized_s: float) -> str:
    """``batch-1 latency 2.10 ms float, 0.74 ms int8 (2.84x)``, saying so when quantized is slower."""
    ratio = float_s / quantized_s if quantized_s > 0 else float("inf")
    text = f"batch-1 latency {1e3 * float_s:.2f} ms float, {1e3 * quantized_s:.2f} ms quantized ({ratio:.2f}x)"
    # Below 0.95x it is slower beyond the timing noise of a shared machine.
    return text + ("; SLOWER than float on this machine" if ratio < 0.95 else "")
