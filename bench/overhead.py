"""Building the largest backbones through surgery against building them by hand.

Each run is a fresh process that builds the model (random weights, no download):
by hand, `keras.applications.X(weights=None, include_top=False)` plus a pooled
softmax head; through surgery, `surgery.build` on the equivalent spec. Runs
alternate; medians of wall time and peak memory, and their ratios.

    python bench/overhead.py [--runs 3] [--models EfficientNetV2L ConvNeXtXLarge]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import median, run_measured, table  # noqa: E402

HAND = """
import sys, keras
cls = getattr(keras.applications, sys.argv[1])
base = cls(weights=None, include_top=False)
x = keras.layers.GlobalAveragePooling2D()(base.output)
out = keras.layers.Dense(10, activation="softmax")(x)
model = keras.Model(base.input, out)
print(model.count_params())
"""

SURGERY = """
import sys, surgery
model = surgery.build(sys.argv[1])
print(model.count_params())
"""


def spec_for(model: str) -> dict:
    return {
        "surgery": 1,
        "name": model.lower(),
        "steps": [
            {"op": "backbone", "name": model.lower(), "weights": None, "include_top": False},
            {"op": "append", "layer": "GlobalAveragePooling2D"},
            {"op": "append", "layer": "Dense", "config": {"units": 10, "activation": "softmax"}},
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--models", nargs="+", default=["EfficientNetV2L", "ConvNeXtXLarge"])
    args = parser.parse_args()
    env = {"TF_CPP_MIN_LOG_LEVEL": "3"}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models:
            spec = Path(tmp) / f"{model}.json"
            spec.write_text(json.dumps(spec_for(model)))
            commands = {
                "hand": [sys.executable, "-c", HAND, model],
                "surgery": [sys.executable, "-c", SURGERY, str(spec)],
            }
            runs = {name: [] for name in commands}
            for _ in range(args.runs):
                for name, cmd in commands.items():
                    runs[name].append(run_measured(cmd, env))
            hand_wall, ours_wall = (median([w for w, _ in runs[n]]) for n in commands)
            hand_mem, ours_mem = (median([m for _, m in runs[n]]) for n in commands)
            rows.append(
                [
                    model,
                    f"{hand_wall:.2f}",
                    f"{ours_wall:.2f}",
                    f"{ours_wall / hand_wall:.3f}",
                    f"{hand_mem:.0f}",
                    f"{ours_mem:.0f}",
                    f"{ours_mem / hand_mem:.3f}",
                ]
            )
    print(f"Building with random weights, {args.runs} alternating fresh-process runs each, medians")
    print(table(["backbone", "hand (s)", "surgery (s)", "wall ratio", "hand MiB", "surgery MiB", "memory ratio"], rows))


if __name__ == "__main__":
    main()
