"""``surgery bench``: one model in its deployment forms, side by side on this machine.

Keras, ONNX float32 and int8, LiteRT float32 and int8, each made by the exporters (with their checks, the
int8 ones calibrated on the given data and judged against the float model) into a temporary folder, then
timed at batch 1 and 8: every repeat runs the forms in turn, so that a shared machine's noise hits them
alike, and the medians are reported with their ratio to float32 onnxruntime (the usual CPU baseline).
With labelled data, each form's top-1 accuracy on the held-out images the int8 check used.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..exporting.outputs import export_file
from ..exporting.quantized import Calibration, latencies
from ..exporting.runtimes import litert_runner, onnx_runner
from ..io.model_files import load_model
from . import calibration as calibration_data

# (form, exporter, quantize): the forms in the order of the table.
FORMS = (
    ("keras", None, None),
    ("onnx float32", "onnx", None),
    ("onnx int8", "onnx", "int8"),
    ("litert float32", "litert", None),
    ("litert int8", "litert", "int8"),
)
BASELINE = "onnx float32"
BATCHES = (1, 8)


@dataclass
class Bench:
    images: str
    threads: int
    repeats: int
    rows: list[dict] = field(default_factory=list)

    def table(self) -> list[str]:
        labelled = any(r["accuracy"] is not None for r in self.rows)
        head = ["form", *(f"batch {b} ms" for b in BATCHES), f"vs {BASELINE}", "MB", *(["accuracy"] * labelled)]
        cells = [head]
        for r in self.rows:
            cells.append(
                [
                    r["form"],
                    *(f"{1e3 * r[f'batch_{b}_s']:.2f}" for b in BATCHES),
                    f"{r['speedup']:.2f}x",
                    f"{r['bytes'] / 1e6:.2f}",
                    *([f"{100 * r['accuracy']:.2f}%" if r["accuracy"] is not None else ""] * labelled),
                ]
            )
        widths = [max(len(row[i]) for row in cells) for i in range(len(head))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
        return [*lines, f"median of {self.repeats} alternating runs, {self.threads} threads; {self.images}"]

    def as_dict(self) -> dict:
        return {"images": self.images, "threads": self.threads, "repeats": self.repeats, "forms": self.rows}


def _keras_run(model):
    import tensorflow as tf

    call = tf.function(lambda x: model(x, training=False))
    return lambda x: [np.asarray(call(x))]


def _forms(model, model_path: str, data: Calibration, registry, folder: Path, threads: int) -> dict:
    """{form: (run(images) -> outputs, size in bytes)}, each file made by its exporter and fed through its own
    input name."""
    forms = {"keras": (_keras_run(model), Path(model_path).stat().st_size)}
    for form, fmt, kind in FORMS[1:]:
        path = folder / f"{form.replace(' ', '_')}{registry.exporters[fmt].suffix}"
        options = {"quantize": kind, "calibration": data} if kind else {}
        export_file(model_path, fmt, registry, output=str(path), options=options)
        run = onnx_runner(path, threads) if fmt == "onnx" else litert_runner(path.read_bytes(), threads)
        forms[form] = (lambda x, run=run: list(run({run.inputs[0]: x}).values()), path.stat().st_size)
    return forms


def _call(run, x):
    return lambda: run(x)


def bench(model_path: str, data: str, plugins, *, repeats: int = 20, limits: dict | None = None) -> Bench:
    """``limits``: ``calibration_samples``, ``eval``, ``max_drop``, ``min_agreement`` for the int8 forms, as for
    export."""
    options: dict = {
        "quantize": "int8",
        "calibration": data,
        **{k: v for k, v in (limits or {}).items() if v is not None},
    }
    held: Calibration = calibration_data.read(model_path, options, plugins)["calibration"]
    threads = os.cpu_count() or 1
    model = load_model(Path(model_path))
    with tempfile.TemporaryDirectory(prefix="surgery-bench-") as tmp:
        forms = _forms(model, model_path, held, plugins.registry, Path(tmp), threads)
        timed = {
            b: latencies({form: _call(run, held.eval_x[:b]) for form, (run, _) in forms.items()}, repeats)
            for b in BATCHES
        }
        rows = []
        for form, (run, size) in forms.items():
            accuracy = None
            if held.eval_y is not None:
                scores = np.concatenate([run(held.eval_x[i : i + 64])[0] for i in range(0, len(held.eval_x), 64)])
                accuracy = float(np.mean(scores.reshape(len(scores), -1).argmax(1) == held.eval_y))
            rows.append(
                {
                    "form": form,
                    **{f"batch_{b}_s": timed[b][form] for b in BATCHES},
                    "speedup": timed[1][BASELINE] / timed[1][form],
                    "bytes": size,
                    "accuracy": accuracy,
                }
            )
    return Bench(held.source, threads, repeats, rows)
