"""Training images/s under mixed precision: the model surgery builds against the same model written by hand.

For a GPU, where mixed_float16 pays (tensor cores); without one it says so and measures nothing, unless
--cpu asks for a smoke run (tiny sizes, to check that the bench works; its numbers mean nothing).

Both models: the backbone (random weights, include_top=False), GlobalAveragePooling2D, Dense(10) and a
float32 softmax, everything trainable, Adam, sparse categorical cross-entropy. By hand: the Keras
mixed-precision guide's code (global policy, then Activation("softmax", dtype="float32")). Surgery's:
the spec built and finalized as `surgery train` does it (policy, run_steps, precision.finalize) and
compiled by stages.compile_stage. Both train with fit on one random batch repeated (so the input pipeline
costs nothing), and the second epoch is timed. Each run is a fresh process; runs alternate.

    python bench/throughput.py [--backbone resnet50] [--size 224] [--batch 64] [--steps 30] [--runs 3] [--json]
    python bench/throughput.py --cpu --backbone mobilenetv2 --size 32 --batch 4 --steps 2 --runs 1
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import median, table  # noqa: E402

POLICY = "mixed_float16"
CLASSES = 10
GOAL = 0.98


def spec(backbone: str, size: int) -> dict:
    return {
        "surgery": 1,
        "name": f"{backbone}_throughput",
        "seed": 0,
        "steps": [
            {"op": "backbone", "name": backbone, "weights": None, "include_top": False, "input_shape": [size, size, 3]},
            {"op": "append", "layer": "GlobalAveragePooling2D"},
            {"op": "append", "layer": "Dense", "config": {"units": CLASSES, "activation": "softmax"}},
        ],
    }


def by_hand(keras, backbone: str, size: int):
    keras.mixed_precision.set_global_policy(POLICY)
    classes = {b.lower(): b for b in dir(keras.applications) if b[0].isupper()}
    base = getattr(keras.applications, classes[backbone])(weights=None, include_top=False, input_shape=(size, size, 3))
    x = keras.layers.GlobalAveragePooling2D()(base.output)
    x = keras.layers.Dense(CLASSES)(x)
    model = keras.Model(base.input, keras.layers.Activation("softmax", dtype="float32")(x))
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def by_surgery(keras, backbone: str, size: int):
    import surgery
    from surgery.training import precision, stages
    from surgery.training.config import Stage

    precision.set_policy(POLICY)
    model = precision.finalize(surgery.build(spec(backbone, size)), POLICY)
    loss, metrics = stages.loss_and_metrics(model, [str(i) for i in range(CLASSES)], "bench")
    stages.compile_stage(model, Stage(name="bench", epochs=1), loss, metrics)
    return model


def child(which: str, backbone: str, size: int, batch: int, steps: int, cpu: bool) -> dict:
    from surgery import keras

    k = keras()
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus and not cpu:
        return {"skipped": "no GPU"}
    k.utils.set_random_seed(0)
    model = (by_hand if which == "hand" else by_surgery)(k, backbone, size)
    x = tf.random.uniform((batch, size, size, 3), 0, 255)
    y = tf.random.uniform((batch,), 0, CLASSES, dtype=tf.int64)
    data = tf.data.Dataset.from_tensors((x, y)).repeat()
    seconds = []

    class Timer(k.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            seconds.append(time.perf_counter() - self.started)

    model.fit(data, epochs=2, steps_per_epoch=steps, verbose=0, callbacks=[Timer()])  # epoch 1 traces, warms up
    device = tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU") if gpus else "CPU"
    return {"img_s": batch * steps / seconds[-1], "device": device, "params": model.count_params()}


def measure(backbone: str, size: int, batch: int, steps: int, runs: int, cpu: bool) -> dict:
    results = {"surgery": [], "hand": []}
    device = None
    for _ in range(runs):
        for which in results:
            cmd = [
                sys.executable,
                __file__,
                "--child",
                which,
                "--backbone",
                backbone,
                "--size",
                str(size),
                "--batch",
                str(batch),
                "--steps",
                str(steps),
            ] + (["--cpu"] if cpu else [])
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                raise RuntimeError(f"{which} failed:\n{proc.stderr[-3000:]}")
            found = json.loads(proc.stdout.strip().splitlines()[-1])
            if "skipped" in found:
                return {"skipped": found["skipped"]}
            device = found["device"]
            results[which].append(found["img_s"])
    surgery_img_s, hand_img_s = median(results["surgery"]), median(results["hand"])
    return {
        "backbone": backbone,
        "size": size,
        "batch": batch,
        "steps": steps,
        "runs": runs,
        "device": device,
        "policy": POLICY,
        "surgery_img_s": surgery_img_s,
        "hand_img_s": hand_img_s,
        "ratio": surgery_img_s / hand_img_s,
    }


def render(summary: dict) -> str:
    if "skipped" in summary:
        return f"training throughput under {POLICY}: not measured ({summary['skipped']})"
    rows = [
        ["hand-written Keras", f"{summary['hand_img_s']:.1f}"],
        ["surgery", f"{summary['surgery_img_s']:.1f}"],
        ["ratio surgery / hand-written", f"{summary['ratio']:.3f} (goal >= {GOAL})"],
    ]
    return (
        f"{summary['backbone']} {summary['size']}x{summary['size']}, {summary['policy']}, batch {summary['batch']}, "
        f"{summary['steps']} steps timed, median of {summary['runs']} runs, {summary['device']}\n"
        + table(["", "training img/s"], rows)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--cpu", action="store_true", help="run without a GPU too (a smoke run)")
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON line after the table")
    parser.add_argument("--child", choices=["surgery", "hand"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.backbone, args.size, args.batch, args.steps, args.cpu)))
        return
    summary = measure(args.backbone, args.size, args.batch, args.steps, args.runs, args.cpu)
    print(render(summary))
    if args.json:
        print(json.dumps(summary))


if __name__ == "__main__":
    main()
