"""Training with and without frozen-feature caching, on a frozen VGG16 (or ResNet50) under a small head.

Data: scikit-learn's digits (1,797 real 8x8 images, 10 classes), resized to SIZE x SIZE and repeated over
three channels, 0-255, in an .npz; a fifth held out for validation. Model: the whole backbone (random
weights, so nothing is downloaded; the work per image is the same as with ImageNet weights), frozen, then
Flatten and Dense(10, softmax). Both runs are `surgery train` through ``surgery.train`` in a fresh process
each, same seed and batches: with the feature cache (the default) and with it off (--no-cache). Epoch
time is training plus validation, checkpoints left out; the cached run also pays, once, for running the
frozen layers over the images, which is reported on its own and in the total.

    python bench/caching.py [--backbone vgg16] [--size 64] [--images 1797] [--epochs 3] [--json]
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import table  # noqa: E402

MODES = ("uncached", "cached")


def digits_npz(path: Path, size: int, images: int) -> None:
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = (digits.images[:images] * (255 / 16)).astype("uint8")
    resized = np.stack([np.asarray(Image.fromarray(p).resize((size, size), Image.BILINEAR)) for p in pixels])
    np.savez(path, x=np.repeat(resized[..., None], 3, axis=-1).astype("float32"), y=digits.target[:images])


def spec(backbone: str, size: int, epochs: int, batch: int) -> dict:
    return {
        "surgery": 1,
        "name": f"{backbone}_cache_bench",
        "seed": 0,
        "steps": [
            {"op": "backbone", "name": backbone, "weights": None, "include_top": False, "input_shape": [size, size, 3]},
            {"op": "freeze", "layers": ":"},
            {"op": "append", "layer": "Flatten"},
            {"op": "append", "layer": "Dense", "config": {"units": 10, "activation": "softmax"}},
        ],
        "train": {"batch_size": batch, "validation_split": 0.2, "stages": [{"epochs": epochs, "learning_rate": 1e-3}]},
    }


def child(mode: str, spec_path: str, data: str, out: str) -> dict:
    from surgery import train as train_spec

    started = time.perf_counter()
    result = train_spec(spec_path, data, out, feature_cache=mode == "cached", echo=lambda *a: None, verbose=0)
    wall = time.perf_counter() - started
    with (Path(out) / "log.csv").open() as f:
        last = list(csv.DictReader(f))[-1]
    return {
        "mode": mode,
        "epoch_seconds": result.epoch_seconds,
        "cache_seconds": result.feature_cache_seconds,
        "train_wall": wall,
        "val_accuracy": float(last["val_accuracy"]),
        "model": str(result.folder.final),
    }


def max_weight_difference(a: str, b: str) -> float:
    import numpy as np

    from surgery import keras

    k = keras()
    left, right = (k.saving.load_model(p) for p in (a, b))
    return max(float(np.abs(x.numpy() - y.numpy()).max()) for x, y in zip(left.weights, right.weights))


def measure(backbone: str, size: int, images: int, epochs: int, batch: int) -> dict:
    """Both runs in fresh processes; the summary run.py and the table read."""
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = tmp / "digits.npz"
        digits_npz(data, size, images)
        spec_path = tmp / "spec.json"
        spec_path.write_text(json.dumps(spec(backbone, size, epochs, batch)))
        for mode in MODES:
            cmd = [sys.executable, __file__, "--child", mode, str(spec_path), str(data), str(tmp / mode)]
            proc = subprocess.run(cmd, capture_output=True, text=True, env=None)
            if proc.returncode != 0:
                raise RuntimeError(f"{mode} run failed:\n{proc.stderr[-3000:]}")
            results[mode] = json.loads(proc.stdout.strip().splitlines()[-1])
        difference = max_weight_difference(results["uncached"]["model"], results["cached"]["model"])
    uncached, cached = (statistics.median(results[m]["epoch_seconds"]) for m in MODES)
    return {
        "backbone": backbone,
        "size": size,
        "images": images,
        "epochs": epochs,
        "batch": batch,
        "runs": results,
        "epoch_speedup": uncached / cached,
        "total_speedup": results["uncached"]["train_wall"] / results["cached"]["train_wall"],
        "max_weight_difference": difference,
    }


def render(summary: dict) -> str:
    rows = []
    for mode in MODES:
        r = summary["runs"][mode]
        rows.append(
            [
                mode,
                f"{statistics.median(r['epoch_seconds']):.3f}",
                f"{r['cache_seconds']:.1f}" if mode == "cached" else "-",
                f"{r['train_wall']:.1f}",
                f"{r['val_accuracy']:.4f}",
            ]
        )
    rows.append(["speed-up", f"{summary['epoch_speedup']:.0f}x", "", f"{summary['total_speedup']:.1f}x", ""])
    head = (
        f"{summary['backbone']} frozen, {summary['size']}x{summary['size']} digits, {summary['images']} images "
        f"(a fifth for validation), batch {summary['batch']}, {summary['epochs']} epochs; max weight difference "
        f"cached vs uncached {summary['max_weight_difference']:.1e}"
    )
    return (
        head
        + "\n"
        + table(["run", "epoch (s, median)", "feature cache (s, once)", "whole run (s)", "val accuracy"], rows)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="vgg16", help="vgg16 or resnet50 (any backbone name works)")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--images", type=int, default=1797, help="at most 1,797 (all the digits)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON line after the table")
    parser.add_argument("--child", nargs=4, metavar=("MODE", "SPEC", "DATA", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*args.child)))
        return
    summary = measure(args.backbone, args.size, args.images, args.epochs, args.batch)
    print(render(summary))
    if args.json:
        print(json.dumps(summary))


if __name__ == "__main__":
    main()
