"""Transfer vs scratch vs two-stage fine-tuning on the digits task, over several seeds.

For each seed: a source CNN trained on digits 0-4, then for N = 5, 10, 20 labelled
images per digit of 5-9, the three specs of examples/digits/ (and a control:
transfer's spec on an untrained copy of the source) trained with ``surgery train``
(in this process) and scored on every other image of 5-9. Prints the mean and
standard deviation of the test accuracy, and its range.

    python bench/transfer.py [--seeds 5] [--labels 5 10 20] [-o out/bench_transfer]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples" / "digits"))
sys.path.insert(0, str(ROOT / "bench"))

from _measure import table  # noqa: E402
from run_demo import METHODS, compare, make_sources, target_split  # noqa: E402


def cell(values) -> str:
    mean, sd = statistics.mean(values), statistics.pstdev(values)
    return f"{mean:.3f} ± {sd:.3f} ({min(values):.3f}-{max(values):.3f})"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--labels", type=int, nargs="+", default=[5, 10, 20])
    parser.add_argument("-o", "--output", default="out/bench_transfer")
    args = parser.parse_args(argv)
    folder = Path(args.output)
    started = time.perf_counter()
    scores = {(n, m): [] for n in args.labels for m in METHODS}
    for seed in range(args.seeds):
        sources = make_sources(folder / f"sources_seed{seed}", seed)
        for n in args.labels:
            for method, acc in compare(n, seed, folder, sources).items():
                scores[(n, method)].append(acc)
            print(
                f"seed {seed}, N={n}: " + ", ".join(f"{m} {scores[(n, m)][-1]:.3f}" for m in METHODS),
                file=sys.stderr,
                flush=True,
            )
    rows = [[n, len(target_split(n, 0)[3])] + [cell(scores[(n, m)]) for m in METHODS] for n in args.labels]
    print(
        f"test accuracy on held-out digits 5-9, {args.seeds} seeds (mean ± sd, min-max), "
        f"{time.perf_counter() - started:.0f} s"
    )
    print(
        table(
            [
                "N per digit",
                "test images",
                "transfer (frozen)",
                "scratch",
                "two-stage fine-tune",
                "control: frozen random backbone",
            ],
            rows,
        )
    )


if __name__ == "__main__":
    main()
