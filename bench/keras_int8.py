"""Keras' own int8 on a KerasHub ViT, as `surgery export --to keras --quantize int8` writes it, against the float model.

A ViT backbone (random weights, a preset folder written here with save_to_preset) goes through a spec with
a LoRA step and a pooled head, then `surgery.export(..., "keras", quantize int8)`: the product's path with
its checks (random weights, so the accuracy limits are off, as in bench/deploy.py). Then plain Keras loads
both files and each is run as a tf.function at batch 1 and 8, the two taken in turn within each repeat;
medians, their ratio, the file sizes and the cosine similarity of the outputs.

    python bench/keras_int8.py                                   # ViT-S/16 at 224 (22M parameters)
    python bench/keras_int8.py --hidden 768 --heads 12 --mlp 3072  # ViT-B/16 (86M)
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
if sys.path and Path(sys.path[0] or ".").resolve() == HERE:
    sys.path.pop(0)  # bench/onnx.py would shadow the onnx package
sys.path.append(str(HERE))
from _measure import median, table  # noqa: E402

NO_CHECK = {"max_drop": 100.0, "min_agreement": 0.0}


def make_files(folder: Path, args) -> tuple[Path, Path, str]:
    import keras_hub

    import surgery
    from surgery import keras

    keras().utils.set_random_seed(0)
    keras_hub.models.ViTBackbone(
        image_shape=(args.size, args.size, 3), patch_size=args.patch, num_layers=args.layers,
        num_heads=args.heads, hidden_dim=args.hidden, mlp_dim=args.mlp,
    ).save_to_preset(str(folder / "vit"))  # fmt: skip
    spec = {
        "surgery": 1,
        "name": "vit",
        "seed": 0,
        "steps": [
            {"op": "backbone", "name": "keras_hub", "preset": str(folder / "vit")},
            {"op": "lora", "rank": 4},
            {"op": "append", "layer": "GlobalAveragePooling1D"},
            {"op": "append", "layer": "Dense", "config": {"units": 10, "activation": "softmax"}, "name": "head"},
        ],
    }
    surgery.apply(spec, output=str(folder / "vit.keras"))
    x = np.random.default_rng(1).uniform(0, 255, (48, args.size, args.size, 3)).astype("float32")
    np.savez(folder / "random.npz", x=x, y=np.arange(len(x)) % 10, class_names=np.array([str(i) for i in range(10)]))
    path, report = surgery.export(
        folder / "vit.keras", "keras", output=str(folder / "vit.int8.keras"),
        options={"quantize": "int8", "calibration": str(folder / "random.npz"), **NO_CHECK},
    )  # fmt: skip
    return folder / "vit.keras", path, report


def timed(models: dict, batch: np.ndarray, repeats: int) -> dict[str, float]:
    import tensorflow as tf

    runs = {name: tf.function(lambda x, m=m: m(x, training=False)) for name, m in models.items()}
    for run in runs.values():
        run(batch)  # traced once, outside the timing
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            np.asarray(run(batch))
            times[name].append(time.perf_counter() - start)
    return {name: median(t) for name, t in times.items()}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--patch", type=int, default=16)
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--heads", type=int, default=6)
    parser.add_argument("--hidden", type=int, default=384)
    parser.add_argument("--mlp", type=int, default=1536)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args(argv)
    from surgery import keras

    with tempfile.TemporaryDirectory() as tmp:
        float_path, int8_path, report = make_files(Path(tmp), args)
        models = {name: keras().saving.load_model(str(p)) for name, p in (("float", float_path), ("int8", int8_path))}
        x = np.random.default_rng(2).uniform(0, 1, (8, args.size, args.size, 3)).astype("float32")
        want, got = (np.asarray(models[n](x)).reshape(len(x), -1) for n in ("float", "int8"))
        cosine = float(np.mean(np.sum(want * got, 1) / (np.linalg.norm(want, axis=1) * np.linalg.norm(got, axis=1))))
        rows = []
        for batch in (1, 8):
            t = timed(models, x[:batch], args.repeats)
            rows.append([batch, f"{1e3 * t['float']:.1f}", f"{1e3 * t['int8']:.1f}", f"{t['float'] / t['int8']:.2f}x"])
        sizes = float_path.stat().st_size / 1e6, int8_path.stat().st_size / 1e6
    params = f"ViT {args.layers} blocks, hidden {args.hidden}, {args.heads} heads, mlp {args.mlp}, {args.size} px"
    print(f"{params}; {os.cpu_count()} threads; median of {args.repeats} alternating runs")
    print(f"export report: {report}")
    print(f"file: {sizes[0]:.1f} MB float -> {sizes[1]:.1f} MB int8; output cosine similarity {cosine:.4f}")
    print(table(["batch", "Keras float32 ms", "Keras int8 ms", "float / int8"], rows))


if __name__ == "__main__":
    main()
