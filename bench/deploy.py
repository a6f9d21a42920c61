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
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# Python puts this script's folder first on the path, where bench/onnx.py would shadow the onnx package.
if sys.path and Path(sys.path[0] or ".").resolve() == HERE:
    sys.path.pop(0)
sys.path += [str(HERE), str(ROOT / "examples" / "digits")]
from _measure import table  # noqa: E402

NO_CHECK = {"max_drop": 100.0, "min_agreement": 0.0}  # random weights: agreement is noise, not a measure


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
        x = np.random.default_rng(0).uniform(0, 255, (samples + 40, size, size, 3)).astype("float32")
        np.savez(folder / "random.npz", x=x, y=np.arange(len(x)) % 2, class_names=np.array(["a", "b"]))
        found = surgery.bench(
            folder / f"{name}.keras", folder / "random.npz", repeats=repeats, samples=samples, limits=NO_CHECK
        )
        keras().backend.clear_session()
    return [
        [name, r["form"], f"{1e3 * r['batch_1_s']:.2f}", f"{r['speedup']:.2f}x", f"{1e3 * r['batch_8_s']:.1f}",
         f"{r['bytes'] / 1e6:.1f}"]
        for r in found.rows
    ]  # fmt: skip


def digits_rows(repeats: int) -> tuple[list, str]:
    from source_model import ten_digit_classifier

    import surgery
    from surgery import keras

    model, (x_fit, y_fit), (x_held, y_held) = ten_digit_classifier(keras())
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model.save(folder / "digits.keras")
        names = np.array([str(i) for i in range(10)])
        np.savez(folder / "fit.npz", x=x_fit, y=y_fit, class_names=names)
        np.savez(folder / "held.npz", x=x_held, y=y_held, class_names=names)
        found = surgery.bench(
            folder / "digits.keras", folder / "fit.npz", repeats=repeats, samples=200, eval=folder / "held.npz"
        )
    return [
        ["digits CNN", r["form"], f"{100 * r['accuracy']:.2f}%", f"{r['bytes'] / 1e3:.0f}"] for r in found.rows
    ], found.images


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
    print(f"latency at {args.size}x{args.size}, {os.cpu_count()} threads, median of {args.repeats} alternating runs")
    print(table(["model", "form", "batch 1 ms", "vs onnx float32", "batch 8 ms", "MB"], rows))
    print()
    digits, images = digits_rows(args.repeats)
    print(f"accuracy of a CNN trained here on digits: {images}, 200 calibration images")
    print(table(["model", "form", "accuracy", "KB"], digits))


if __name__ == "__main__":
    main()
