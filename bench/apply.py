"""`surgery apply specs/vgg16_cut_extend.json` against the same model written by hand in Keras.

Both run as fresh processes (TensorFlow start-up included, as a user pays it),
load the same weights file, build the seed model, print a summary and save a
.keras file. Runs alternate so drift in the machine's speed hits both alike.

    python bench/apply.py [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import median, run_measured, table  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent

HAND_WRITTEN = """
import sys
import keras
from keras import layers

weights, out = sys.argv[1], sys.argv[2]
vgg = keras.applications.VGG16(weights=weights, include_top=False, input_shape=(224, 224, 3))
model = keras.Sequential()
for layer in vgg.layers[:11]:
    model.add(layer)
model.add(layers.Conv2D(32, (3, 3), activation="relu"))
model.add(layers.Flatten())
model.add(layers.Dense(2, activation="softmax"))
for layer in model.layers[7:]:
    layer.trainable = False
model.summary()
model.save(out)
"""


def make_weights(folder: Path) -> Path:
    path = folder / "vgg16_notop.weights.h5"
    code = (
        "import keras, sys; keras.applications.VGG16(weights=None, include_top=False, "
        "input_shape=(224, 224, 3)).save_weights(sys.argv[1])"
    )
    run_measured([sys.executable, "-c", code, str(path)])
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        weights = make_weights(tmp)
        script = tmp / "hand_written.py"
        script.write_text(HAND_WRITTEN)
        commands = {
            "hand-written Keras": lambda i: [sys.executable, str(script), str(weights), str(tmp / f"hand{i}.keras")],
            "surgery apply": lambda i: [
                sys.executable,
                "-m",
                "surgery",
                "apply",
                str(ROOT / "specs/vgg16_cut_extend.json"),
                "--weights",
                str(weights),
                "-o",
                str(tmp / f"surgery{i}.keras"),
            ],
        }
        results = {name: [] for name in commands}
        env = {"TF_CPP_MIN_LOG_LEVEL": "3"}
        for cmd in commands.values():  # one warm-up each: file cache, .pyc files
            run_measured(cmd("warm"), env)
        for i in range(args.runs):
            for name, cmd in commands.items():
                results[name].append(run_measured(cmd(i), env))
    rows = []
    for name, runs in results.items():
        rows.append([name, f"{median([w for w, _ in runs]):.2f}", f"{median([m for _, m in runs]):.0f}"])
    hand, ours = (results[n] for n in commands)
    wall_ratio = median([w for w, _ in ours]) / median([w for w, _ in hand])
    mem_ratio = median([m for _, m in ours]) / median([m for _, m in hand])
    rows.append(["ratio surgery / hand-written", f"{wall_ratio:.3f}", f"{mem_ratio:.3f}"])
    print(f"VGG16 seed model, {args.runs} alternating runs each, medians; {os.cpu_count()} CPUs")
    print(table(["", "wall (s)", "peak RSS (MiB)"], rows))


if __name__ == "__main__":
    main()
