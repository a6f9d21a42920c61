"""Accuracy after pruning: the digits source CNN with half its channels removed, fine-tuned with `surgery train`.

For each seed, offline (scikit-learn's digits):

1. Digits 0-4 (901 images) split, stratified by the seed, into a training part (2/3) and a
   held-out test part (1/3).
2. The source CNN of examples/digits/source_model.py (``build_source``: conv1 16, conv2 32,
   features 64, a softmax head) trained on the training part as source_model.py trains it
   (Adam at 1e-3, 15 epochs, batch 32).
3. Two specs start from that model (the ``keras_file`` backbone) and are fine-tuned the same
   way with ``surgery.train`` (what ``surgery train`` runs): the training part, Adam at FT_LR
   for FT_EPOCHS epochs, batch 32, no validation split, deterministic ops, the seed.
   - unpruned: the model as it is (the baseline: trained as long, evaluated the same way);
   - pruned: plus ``{"op": "prune", "ratio": 0.5}`` (l1, local: conv1, conv2 and features each
     keep half their channels; the 5-way head cannot lose any).
   A control prunes with ``"criterion": "random"`` instead, to show what the criterion adds.
4. Each model's accuracy on the test part; the pruned one also before its fine-tuning.

    python bench/prune_recovery.py                  # 5 seeds, about 2 minutes on 2 CPU cores
    python bench/prune_recovery.py --seeds 3 --epochs 10
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples" / "digits"))
sys.path.insert(0, str(ROOT / "bench"))

from _measure import table  # noqa: E402
from source_model import build_source, digits  # noqa: E402

CLASSES = [0, 1, 2, 3, 4]
RATIO = 0.5
FT_EPOCHS, FT_LR = 10, 1e-3


def split(seed: int):
    """(train x, train y, test x, test y): a stratified 2/3 - 1/3 split of digits 0-4."""
    x, y = digits(CLASSES)
    rng = np.random.default_rng(seed)
    test = np.concatenate([rng.permutation(np.flatnonzero(y == c))[: int(np.sum(y == c)) // 3] for c in CLASSES])
    train = np.setdiff1d(np.arange(len(y)), test)
    return x[train], y[train], x[test], y[test]


def train_source(path: Path, x, y, seed: int):
    """source_model.py's recipe, on the training part only."""
    from surgery import keras

    k = keras()
    k.utils.set_random_seed(seed)
    model = build_source(k)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=15, batch_size=32, verbose=0)
    model.save(str(path))
    return model


def spec(source: Path, seed: int, prune: dict | None, epochs: int) -> dict:
    steps = [{"op": "backbone", "name": "keras_file", "path": str(source)}]
    if prune is not None:
        steps.append({"op": "prune", **prune})
    return {
        "surgery": 1,
        "name": "digits_pruned" if prune else "digits_unpruned",
        "seed": seed,
        "steps": steps,
        "train": {
            "validation_split": 0,
            "batch_size": 32,
            "deterministic": True,
            "stages": [{"name": "fine_tune", "epochs": epochs, "optimizer": "adam", "learning_rate": FT_LR}],
        },
    }


def accuracy(model, x, y) -> float:
    return float(np.mean(np.argmax(model.predict(x, verbose=0), axis=1) == y))


METHODS = {"unpruned": None, "pruned": {"ratio": RATIO}, "random": {"ratio": RATIO, "criterion": "random"}}


def one_seed(seed: int, folder: Path, epochs: int) -> dict:
    import surgery

    x, y, tx, ty = split(seed)
    source = folder / f"source_seed{seed}.keras"
    r: dict = {"seed": seed, "test": len(ty), "source": accuracy(train_source(source, x, y, seed), tx, ty)}
    data = folder / f"train_seed{seed}.npz"
    np.savez(data, x=x, y=y, class_names=np.array([str(c) for c in CLASSES]))
    for method, prune in METHODS.items():
        s = spec(source, seed, prune, epochs)
        before = surgery.build(s)
        r[f"{method}_params"], r[f"{method}_flops"] = before.count_params(), surgery.count_flops(before)
        r[f"{method}_before"] = accuracy(before, tx, ty)
        run = surgery.train(s, str(data), folder / f"{method}_seed{seed}", force=True, echo=None, verbose=0)
        r[method] = accuracy(run.model, tx, ty)
    return r


def cell(values, digits: int = 3) -> str:
    return f"{statistics.mean(values):.{digits}f} ± {statistics.pstdev(values):.{digits}f}"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=FT_EPOCHS, help="fine-tuning epochs (both models)")
    parser.add_argument("-o", "--output", help="keep the models and runs here (default: a temporary folder)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.output or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        rows = []
        for seed in range(args.seeds):
            rows.append(one_seed(seed, folder, args.epochs))
            r = rows[-1]
            print(
                f"seed {seed}: source {r['source']:.3f}, unpruned {r['unpruned']:.3f}, pruned {r['pruned_before']:.3f} "
                f"-> {r['pruned']:.3f}, random {r['random_before']:.3f} -> {r['random']:.3f}",
                file=sys.stderr,
                flush=True,
            )
    header = [
        "seed",
        "test images",
        "source (trained, not fine-tuned)",
        "unpruned + fine-tune",
        "pruned 50%, before fine-tune",
        "pruned 50% + fine-tune",
        "difference (points)",
        "control: random channels + fine-tune",
    ]

    def line(r):
        return [
            r["seed"],
            r["test"],
            f"{r['source']:.3f}",
            f"{r['unpruned']:.3f}",
            f"{r['pruned_before']:.3f}",
            f"{r['pruned']:.3f}",
            f"{100 * (r['pruned'] - r['unpruned']):+.1f}",
            f"{r['random']:.3f} (from {r['random_before']:.3f})",
        ]

    diffs = [100 * (r["pruned"] - r["unpruned"]) for r in rows]
    mean_row = [
        "mean ± sd",
        "",
        cell([r["source"] for r in rows]),
        cell([r["unpruned"] for r in rows]),
        cell([r["pruned_before"] for r in rows]),
        cell([r["pruned"] for r in rows]),
        f"{statistics.mean(diffs):+.1f} ± {statistics.pstdev(diffs):.1f}",
        cell([r["random"] for r in rows]),
    ]
    r0 = rows[0]
    print(
        f"digits 0-4, held-out test accuracy, {args.seeds} seeds; fine-tune: {args.epochs} epochs, Adam {FT_LR:g}, "
        f"batch 32; pruned: ratio {RATIO}, l1, local; {time.perf_counter() - started:.0f} s"
    )
    print(table(header, [line(r) for r in rows] + [mean_row]))
    print(
        f"\nparams {r0['unpruned_params']:,} -> {r0['pruned_params']:,} "
        f"({r0['pruned_params'] / r0['unpruned_params'] - 1:+.1%}); FLOPs {r0['unpruned_flops']:,} -> "
        f"{r0['pruned_flops']:,} ({r0['pruned_flops'] / r0['unpruned_flops'] - 1:+.1%})"
    )
    worst = min(diffs)
    print(
        f"pruned + fine-tune vs unpruned + fine-tune: {statistics.mean(diffs):+.1f} points on average, "
        f"{worst:+.1f} at worst; goal: within 1 point ({'met' if statistics.mean(diffs) >= -1 else 'NOT met'} "
        f"on average, {'met' if worst >= -1 else 'not met'} on every seed)"
    )


if __name__ == "__main__":
    main()
