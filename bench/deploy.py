"""Deployment forms of a model: Keras, ONNX float32 and int8, LiteRT float32 and int8; latency, size, accuracy.

Every file is made by `surgery.export` (the product's own path, with its checks) and then timed here:
batch 1 and batch 8, the forms taken in turn within each repeat so that the shared machine's noise hits
them alike, medians reported, with ratios against float32 onnxruntime (the usual CPU baseline). Every
runtime gets the machine's cores: onnxruntime's intra-op threads and LiteRT's num_threads both set to
os.cpu_count(); Keras runs `model(x, training=False)` eagerly compiled as a tf.function.

Two parts:
- latency and size of ResNet50, MobileNetV2 and EfficientNetB0 at 224x224 (random weights, so accuracy
  means nothing there: their quantization check is switched off with --max-drop 100 --min-agreement 0);
- accuracy of a CNN trained here on scikit-learn's digits (examples/digits), float against int8, on 597
  held-out digits.

    python bench/deploy.py [--backbones resnet50 mobilenetv2 efficientnetb0] [--size 224] [--repeats 20]
    python bench/deploy.py --backbones mobilenetv2 --size 96 --repeats 5    # a quick look
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# Python puts this script's folder first on the path, where bench/onnx.py would shadow the onnx package.
if sys.path and Path(sys.path[0] or ".").resolve() == HERE:
    sys.path.pop(0)
sys.path += [str(HERE), str(ROOT / "examples" / "digits")]
from _measure import median, table  # noqa: E402

FORMS = ("keras", "onnx float32", "onnx int8", "litert float32", "litert int8")
THREADS = os.cpu_count() or 1
NO_CHECK = {"max_drop": 100.0, "min_agreement": 0.0}  # random weights: agreement is noise, not a measure


def _onnx(path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = THREADS
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: x})[0]


def _litert(path):
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=str(path), num_threads=THREADS).get_signature_runner("serving_default")
    name = next(iter(runner.get_input_details()))
    return lambda x: next(iter(runner(**{name: x}).values()))


def _keras(model):
    import tensorflow as tf

    call = tf.function(lambda x: model(x, training=False))
    return lambda x: call(x).numpy()


def make_forms(model_path: Path, calibration: Path, folder: Path, samples: int, check: dict) -> dict:
    """Every deployment form of the saved model, as {form: (run, size in bytes)}."""
    import surgery
    from surgery import keras

    files = {}
    for fmt, kind in (("onnx", None), ("onnx", "int8"), ("litert", None), ("litert", "int8")):
        suffix = ".onnx" if fmt == "onnx" else ".tflite"
        out = folder / f"{fmt}_{kind or 'float32'}{suffix}"
        options = {} if kind is None else {"quantize": kind, "calibration": str(calibration), **check}
        if kind is not None:
            options["calibration_samples"] = samples
        started = time.perf_counter()
        surgery.export(str(model_path), fmt, output=str(out), options=options)
        print(f"  {fmt} {kind or 'float32'}: exported in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        files[f"{fmt} {kind or 'float32'}"] = out
    forms = {"keras": (_keras(keras().saving.load_model(model_path)), model_path.stat().st_size)}
    for form, path in files.items():
        forms[form] = ((_onnx if form.startswith("onnx") else _litert)(path), path.stat().st_size)
    return forms


def latencies(forms: dict, x: np.ndarray, repeats: int) -> dict:
    for run, _ in forms.values():
        run(x)
    times: dict[str, list] = {form: [] for form in forms}
    for _ in range(repeats):
        for form, (run, _) in forms.items():
            started = time.perf_counter()
            run(x)
            times[form].append(time.perf_counter() - started)
    return {form: median(t) for form, t in times.items()}


def backbone_rows(name: str, size: int, repeats: int, samples: int) -> list:
    import surgery
    from surgery import keras

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        spec = {
            "surgery": 1,
            "name": name,
            "steps": [{"op": "backbone", "name": name, "weights": None, "input_shape": [size, size, 3]}],
        }
        surgery.apply(spec, output=str(folder / f"{name}.keras"))
        rng = np.random.default_rng(0)
        x = rng.uniform(0, 255, (max(2 * samples, 40), size, size, 3)).astype("float32")
        np.savez(folder / "random.npz", x=x, y=np.arange(len(x)) % 2, class_names=np.array(["a", "b"]))
        forms = make_forms(folder / f"{name}.keras", folder / "random.npz", folder, samples, NO_CHECK)
        one, eight = latencies(forms, x[:1], repeats), latencies(forms, x[:8], repeats)
        keras().backend.clear_session()
    base = one["onnx float32"]
    return [
        [name, form, f"{1e3 * one[form]:.2f}", f"{base / one[form]:.2f}x", f"{1e3 * eight[form]:.1f}",
         f"{forms[form][1] / 1e6:.1f}"]
        for form in FORMS
    ]  # fmt: skip


def digits_rows(samples: int) -> list:
    from source_model import ten_digit_classifier

    from surgery import keras

    model, (x_fit, y_fit), (x_held, y_held) = ten_digit_classifier(keras())
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model.save(folder / "digits.keras")
        names = np.array([str(i) for i in range(10)])
        np.savez(folder / "calibration.npz", x=x_fit, y=y_fit, class_names=names)
        forms = make_forms(folder / "digits.keras", folder / "calibration.npz", folder, samples, {})
        rows = []
        for form, (run, size) in forms.items():
            accuracy = np.mean(np.argmax(run(x_held.astype("float32")), axis=1) == y_held)
            rows.append(["digits CNN", form, f"{100 * accuracy:.2f}%", f"{size / 1e3:.0f}"])
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--backbones", nargs="+", default=["resnet50", "mobilenetv2", "efficientnetb0"])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--samples", type=int, default=32, help="calibration images (latency does not depend on it)")
    args = parser.parse_args(argv)
    rows = []
    for name in args.backbones:
        print(f"{name}:", file=sys.stderr)
        rows += backbone_rows(name, args.size, args.repeats, args.samples)
    print(f"latency at {args.size}x{args.size}, {THREADS} threads, median of {args.repeats} alternating runs")
    print(table(["model", "form", "batch 1 ms", "vs onnx float32", "batch 8 ms", "MB"], rows))
    print()
    print("accuracy on 597 held-out digits (trained here, 200 calibration images)")
    print(table(["model", "form", "accuracy", "KB"], digits_rows(200)))


if __name__ == "__main__":
    main()
