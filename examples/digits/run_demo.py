"""Develop-a-model transfer learning, offline, on scikit-learn's digits.

1. Train a small source CNN on digits 0-4 (source_model.py) and save it; save the same
   architecture untrained too.
2. Take N labelled images of each of the digits 5-9 (the target task); every other
   image of 5-9 is the held-out test set.
3. Train three models with ``surgery train``, each from a spec in this folder:
   - transfer.json: the source cut before its head, frozen, with a new head;
   - scratch.json: the same architecture from random weights, everything trained;
   - finetune.json: transfer's stage, then a second stage that unfreezes the top of
     the backbone at a 10x lower learning rate;
   and, as a control, transfer.json on the untrained copy (a frozen random backbone).
4. Print each model's accuracy on the test set.

    python examples/digits/run_demo.py --labels 20 --seed 0 -o out/digits

The specs name ../../out/digits/source.keras, so after one run of this script
(with the default -o) they also run by hand:

    surgery train examples/digits/finetune.json --data out/digits/target_20_seed0.npz -o out/digits/ft
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from source_model import build_source, digits, train_source  # noqa: E402

SOURCE_CLASSES = [0, 1, 2, 3, 4]
TARGET_CLASSES = [5, 6, 7, 8, 9]
# method -> (its spec in this folder, which source model the spec's keras_file backbone loads)
METHODS = {
    "transfer": ("transfer.json", "trained"),
    "scratch": ("scratch.json", "untrained"),
    "fine_tune": ("finetune.json", "trained"),
    # A control: transfer's recipe on the untrained copy shows what the source's weights add.
    "frozen_random": ("transfer.json", "untrained"),
}
SOURCE_FILES = {"trained": "source.keras", "untrained": "source_untrained.keras"}


def target_split(n_per_class: int, seed: int):
    """(train x, train y, test x, test y): n labelled images of each target digit, the rest held out."""
    x, y = digits(TARGET_CLASSES)
    rng = np.random.default_rng(seed)
    train = np.concatenate(
        [rng.choice(np.flatnonzero(y == c), n_per_class, replace=False) for c in range(len(TARGET_CLASSES))]
    )
    test = np.setdiff1d(np.arange(len(y)), train)
    return x[train], y[train], x[test], y[test]


def write_npz(path: Path, x, y) -> Path:
    np.savez(path, x=x, y=y, class_names=np.array([str(c) for c in TARGET_CLASSES]))
    return path


def make_sources(folder: Path, seed: int = 0) -> dict:
    """The trained source model and the same architecture untrained (for the from-scratch baseline)."""
    from surgery import keras

    folder.mkdir(parents=True, exist_ok=True)
    paths = {kind: folder / name for kind, name in SOURCE_FILES.items()}
    train_source(paths["trained"], seed=seed)
    k = keras()
    k.utils.set_random_seed(seed + 1)
    build_source(k).save(str(paths["untrained"]))
    return paths


def spec_for(method: str, sources: dict) -> dict:
    """The method's spec from this folder, pointed at one of these source files."""
    file, kind = METHODS[method]
    spec = json.loads((HERE / file).read_text())
    spec["steps"][0]["path"] = str(sources[kind])
    return spec


def accuracy(model, x, y) -> float:
    return float(np.mean(np.argmax(model.predict(x, verbose=0), axis=1) == y))


def run(method: str, sources: dict, data: Path, test, out: Path, seed: int, echo=lambda *_: None) -> float:
    """Train one method with ``surgery train`` (in this process) and return its test accuracy."""
    from surgery import train as train_spec

    result = train_spec(spec_for(method, sources), str(data), out, seed=seed, force=True, echo=echo, verbose=0)
    return accuracy(result.model, *test)


def compare(n_per_class: int, seed: int, folder: Path, sources: dict, echo=lambda *_: None) -> dict:
    """Test accuracy of every method for one sample of the target task."""
    x, y, tx, ty = target_split(n_per_class, seed)
    data = write_npz(folder / f"target_{n_per_class}_seed{seed}.npz", x, y)
    return {m: run(m, sources, data, (tx, ty), folder / f"{m}_{n_per_class}_seed{seed}", seed, echo) for m in METHODS}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--labels", type=int, default=20, help="labelled images per target digit")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-o", "--output", default="out/digits")
    args = parser.parse_args(argv)
    folder = Path(args.output)
    folder.mkdir(parents=True, exist_ok=True)
    sources = make_sources(folder, args.seed)
    print(f"source model: {sources['trained']} (digits 0-4)")
    scores = compare(args.labels, args.seed, folder, sources)
    held_out = len(target_split(args.labels, args.seed)[3])
    print(f"test accuracy on {held_out} held-out images of digits 5-9, {args.labels} labelled images per digit:")
    for method, acc in scores.items():
        print(f"  {method:13s} {acc:.3f}")


if __name__ == "__main__":
    main()
