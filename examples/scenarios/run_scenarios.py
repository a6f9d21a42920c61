"""The four transfer scenarios of the reference workflows, measured with one sweep per target task.

A source CNN learns 8 shapes (examples/scenarios/shapes.py); then two target tasks, each with 10 or 200
labelled images per class: a similar one (4 new shapes) and a different one (4 stripe frequencies, which the
source never had to tell apart). One sweep per target varies what the references vary:

    steps[0].weights        "file" (the source's weights) or null (the same architecture, untrained)
    steps[2].layers         ":" (all frozen: the source as a fixed feature extractor), ":5" (the first two
                            conv blocks frozen, the rest trained), ":1" (nothing with weights frozen)
    train.samples_per_class 10 or 200
    seed                    0, 1, 2

and the table gives each strategy's test accuracy, mean and sd over the seeds:

    python examples/scenarios/run_scenarios.py            # about 15 minutes on 2 cores (measured below); writes out/scenarios/
    python examples/scenarios/run_scenarios.py --quick    # a smoke run: 1 seed, 2 epochs, a minute
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from shapes import task  # noqa: E402

STRATEGIES = {  # (weights, frozen layers) -> what the references call it
    ("file", ":"): "source frozen, new head",
    ("file", ":5"): "first 2 conv blocks frozen",
    ("file", ":1"): "fine-tune everything",
    (None, ":1"): "from scratch",
    (None, ":"): "control: frozen random backbone",
}


def build_source(keras, classes: int = 8):
    inputs = keras.Input((32, 32, 3), name="image")
    x = keras.layers.Rescaling(1 / 255, name="scale")(inputs)
    for i, filters in enumerate((16, 32, 64), start=1):
        x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"conv{i}")(x)
        x = keras.layers.MaxPooling2D(name=f"pool{i}")(x) if i < 3 else x
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    x = keras.layers.Dense(64, activation="relu", name="features")(x)
    outputs = keras.layers.Dense(classes, activation="softmax", name="shapes")(x)
    return keras.Model(inputs, outputs, name="shapes_source")


def train_source(path: Path, per_class: int, epochs: int, seed: int = 0) -> float:
    """The source CNN trained on the 8 shapes; its accuracy on held-out shapes."""
    from surgery import keras

    k = keras()
    k.utils.set_random_seed(seed)
    x, y, _ = task("source", per_class, seed=100 + seed)
    xt, yt, _ = task("source", 50, seed=200 + seed)
    model = build_source(k)
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=epochs, batch_size=32, verbose=0, shuffle=True)
    model.save(str(path))
    return float(model.evaluate(xt, yt, verbose=0)[1])


def write_npz(path: Path, name: str, per_class: int, seed: int) -> Path:
    x, y, names = task(name, per_class, seed)
    np.savez(path, x=x, y=y, class_names=np.array(names))
    return path


def target_spec(epochs: int) -> dict:
    return {
        "surgery": 1,
        "name": "target",
        "seed": 0,
        "steps": [
            {"op": "backbone", "name": "keras_file", "path": "source.keras", "weights": "file"},
            {"op": "slice", "to": "features"},
            {"op": "freeze", "layers": ":"},
            {"op": "append", "layer": "Dense", "config": {"units": 4, "activation": "softmax"}, "name": "head"},
        ],
        "train": {"batch_size": 32, "stages": [{"epochs": epochs, "learning_rate": 0.002}]},
    }


def summary(rows: list[dict]) -> dict:
    """(strategy, N) -> (mean, sd, seeds) of test accuracy."""
    found: dict = {}
    for row in rows:
        if row["status"] != "ok":
            continue
        strategy = STRATEGIES.get((row["weights"], row["layers"]))
        if strategy is not None:  # (untrained, first blocks frozen) is in the grid's product, not in the table
            found.setdefault((strategy, row["samples_per_class"]), []).append(row["test_accuracy"])
    return {k: (statistics.mean(v), statistics.stdev(v) if len(v) > 1 else 0.0, len(v)) for k, v in found.items()}


def table(results: dict, sizes: list[int]) -> str:
    head = "| target | strategy | " + " | ".join(f"N = {n}" for n in sizes) + " |"
    lines = [head, "|" + "---|" * (2 + len(sizes))]
    for target, figures in results.items():
        for strategy in STRATEGIES.values():
            cells = []
            for n in sizes:
                got = figures.get((strategy, n))
                cells.append(f"{got[0]:.3f} ± {got[1]:.3f}" if got else "")
            lines.append(f"| {target} | {strategy} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", default="out/scenarios")
    parser.add_argument("--quick", action="store_true", help="1 seed, 2 epochs, small data: a smoke run")
    args = parser.parse_args(argv)
    import surgery

    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    # Epochs by size, so that every strategy trains to a plateau: 10 images of each class are 2 batches an
    # epoch, 200 are 25.
    seeds, recipes, source_n, source_epochs = (
        ([0], {4: 2, 10: 2}, 40, 2) if args.quick else ([0, 1, 2], {10: 60, 200: 15}, 600, 20)
    )
    sizes = list(recipes)
    accuracy = train_source(out / "source.keras", source_n, source_epochs)
    print(f"source CNN: {accuracy:.3f} test accuracy on the 8 shapes")
    (out / "target.json").write_text(json.dumps(target_spec(max(recipes.values())), indent=2))
    results = {}
    for target in ("similar", "different"):
        # A fifth of the pool is the validation split; the rest leaves every class more than the largest N.
        pool = write_npz(out / f"{target}_pool.npz", target, int(max(sizes) * 1.25) + 40, seed=300)
        test = write_npz(out / f"{target}_test.npz", target, 100, seed=400)
        rows = []
        for n, epochs in recipes.items():
            grid = {
                "steps[0].weights": ["file", None],
                "steps[2].layers": [":", ":5", ":1"],
                "train.samples_per_class": [n],
                "seed": seeds,
            }
            (out / f"grid_{n}.json").write_text(json.dumps(grid, indent=2))
            folder = out / target / f"n{n}"
            rows += surgery.sweep(
                out / "target.json",
                out / f"grid_{n}.json",
                folder,
                data=pool,
                test=test,
                epochs=epochs,
                echo=None,
                resume=folder.exists(),
            )
        results[target] = summary(rows)
    text = table(results, sizes)
    (out / "table.md").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
