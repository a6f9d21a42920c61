"""The benchmark suite in one command: every part, then one table of the results against their goals.

Parts (each a fresh process, so a failing part is a row saying so and the rest go on):

  light     wall time and peak memory of the commands that never import TensorFlow
  apply     bench/apply.py: `surgery apply` of the VGG16 seed against the same model written by hand
  onnx      bench/onnx.py on a few backbones: parity with Keras, onnxruntime/Keras throughput
  caching   bench/caching.py: epoch time with and without the feature cache on a frozen VGG16
  overhead  bench/overhead.py: surgery.build against hand-built on the largest backbones
  gpu       bench/throughput.py: training img/s, built vs hand-written, mixed precision (needs a GPU)

The defaults take about 5 minutes on 2 CPU cores. Each part's own table goes to stderr as it ends;
the summary table to stdout.

    python -m bench                      # or: python bench/run.py
    python -m bench --runs 5 --onnx all  # more runs; every backbone for ONNX (an hour or more)
    python -m bench --only light caching
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _measure import median, run_measured, table  # noqa: E402

ROOT = HERE.parent
PARTS = ("light", "apply", "onnx", "caching", "overhead", "gpu")
SEED_SPEC = ROOT / "specs" / "vgg16_cut_extend.json"
ONNX_PARITY = 1e-5


def _script(name: str, *args, timeout: int) -> str:
    """Run bench/<name>.py; its stdout (its table goes on to stderr for the reader)."""
    proc = subprocess.run(
        [sys.executable, str(HERE / f"{name}.py"), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    if proc.returncode != 0:
        raise RuntimeError((proc.stderr.strip().splitlines() or ["no output"])[-1])
    print(proc.stdout, file=sys.stderr, flush=True)
    return proc.stdout


def parse_table(text: str) -> list[dict]:
    """The rows of the markdown table _measure.table printed, as dicts keyed by the header."""
    lines = [line for line in text.splitlines() if line.startswith("|") and not line.startswith("|-")]
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines]
    return [dict(zip(cells[0], row)) for row in cells[1:]]


def _json_line(text: str) -> dict:
    return json.loads(text.strip().splitlines()[-1])


def light(args) -> list[list]:
    surgery = [sys.executable, "-m", "surgery"]
    commands = {
        "surgery --help": surgery + ["--help"],
        "surgery validate specs/vgg16_cut_extend.json": surgery + ["validate", str(SEED_SPEC)],
        "surgery plugins": surgery + ["plugins"],
        "surgery schema": surgery + ["schema"],
        "reference: python -c 'import tensorflow'": [sys.executable, "-c", "import tensorflow"],
    }
    rows = []
    for name, cmd in commands.items():
        run_measured(cmd)  # warm-up: file cache, .pyc files
        runs = [run_measured(cmd, {"TF_CPP_MIN_LOG_LEVEL": "3"}) for _ in range(args.runs)]
        wall, mib = median([w for w, _ in runs]), median([m for _, m in runs])
        goal = "" if name.startswith("reference") else "no TensorFlow import"
        rows.append(["light commands", name, f"{wall:.2f} s, {mib:.0f} MiB peak", goal])
    return rows


def apply(args) -> list[list]:
    found = {r[""]: r for r in parse_table(_script("apply", "--runs", args.runs, timeout=args.timeout))}
    hand, ours, ratio = (found[k] for k in ("hand-written Keras", "surgery apply", "ratio surgery / hand-written"))
    result = (
        f"wall {ratio['wall (s)']}x ({ours['wall (s)']} s vs {hand['wall (s)']} s), peak memory "
        f"{ratio['peak RSS (MiB)']}x ({ours['peak RSS (MiB)']} vs {hand['peak RSS (MiB)']} MiB)"
    )
    return [
        [
            "apply overhead",
            "surgery apply vs hand-written Keras, VGG16 seed model (fresh processes)",
            result,
            "about 1x",
        ]
    ]


def onnx(args) -> list[list]:
    with tempfile.TemporaryDirectory() as tmp:
        results = Path(tmp) / "onnx.jsonl"
        names = [] if args.onnx == ["all"] else args.onnx
        _script("onnx", *names, "--results", results, "--repeats", args.runs, timeout=args.timeout * 8)
        rows = [json.loads(line) for line in results.read_text().splitlines() if line.strip()]
    out = []
    for r in rows:
        if "error" in r:
            out.append(
                [
                    "ONNX",
                    f"{r['backbone']}: export, parity, throughput",
                    f"FAILED: {r['error'][:100]}",
                    f"diff <= {ONNX_PARITY:g}",
                ]
            )
            continue
        result = (
            f"{r['max_abs_diff']:.1e}; {r['ort_img_s'] / r['keras_img_s']:.2f}x "
            f"({r['ort_img_s']:.1f} vs {r['keras_img_s']:.1f} img/s, batch 8)"
        )
        out.append(
            [
                "ONNX",
                f"{r['backbone']} {r['input']}: max abs diff vs Keras; onnxruntime/Keras img/s",
                result,
                f"diff <= {ONNX_PARITY:g}",
            ]
        )
    return out


def caching(args) -> list[list]:
    s = _json_line(
        _script(
            "caching", "--images", args.caching_images, "--epochs", args.caching_epochs, "--json", timeout=args.timeout
        )
    )
    runs = s["runs"]
    epoch = {m: statistics.median(runs[m]["epoch_seconds"]) for m in ("uncached", "cached")}
    what = (
        f"epoch with vs without the feature cache: frozen {s['backbone']}, {s['size']}x{s['size']} digits, "
        f"{s['images']} images, batch {s['batch']}"
    )
    result = (
        f"{s['epoch_speedup']:.0f}x ({epoch['uncached']:.1f} s -> {epoch['cached']:.2f} s); whole "
        f"{s['epochs']}-epoch run {s['total_speedup']:.1f}x (cache built once in "
        f"{runs['cached']['cache_seconds']:.0f} s); val accuracy {runs['uncached']['val_accuracy']:.4f} vs "
        f"{runs['cached']['val_accuracy']:.4f}, weights differ by {s['max_weight_difference']:.0e}"
    )
    return [["feature caching", what, result, ">= 10x, same accuracy"]]


def overhead(args) -> list[list]:
    rows = parse_table(_script("overhead", "--runs", args.overhead_runs, timeout=args.timeout * 4))
    return [
        [
            "build overhead",
            f"surgery.build vs keras.applications by hand: {r['backbone']} (fresh processes)",
            f"wall {r['wall ratio']}x ({r['surgery (s)']} s vs {r['hand (s)']} s), memory {r['memory ratio']}x",
            "<= 1.10x",
        ]
        for r in rows
    ]


def gpu(args) -> list[list]:
    s = _json_line(_script("throughput", "--runs", args.runs, "--json", timeout=args.timeout))
    what = "training img/s, surgery's model vs hand-written, mixed_float16"
    if "skipped" in s:
        return [["GPU training", what, f"not measured: {s['skipped']}", ">= 0.98x"]]
    return [
        [
            "GPU training",
            f"{what}, {s['backbone']} batch {s['batch']}, {s['device']}",
            f"{s['ratio']:.3f}x ({s['surgery_img_s']:.0f} vs {s['hand_img_s']:.0f} img/s)",
            ">= 0.98x",
        ]
    ]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", choices=PARTS, help="run only these parts")
    parser.add_argument("--skip", nargs="+", choices=PARTS, default=[], help="leave these parts out")
    parser.add_argument("--runs", type=int, default=3, help="runs per measurement (light, apply, onnx, gpu)")
    parser.add_argument("--overhead-runs", type=int, default=1, help="runs per backbone in overhead (slow)")
    parser.add_argument(
        "--onnx",
        nargs="+",
        default=["mobilenetv2", "resnet50"],
        help='backbones for the ONNX part, or "all" (every backbone: an hour or more)',
    )
    parser.add_argument("--caching-images", type=int, default=1797)
    parser.add_argument("--caching-epochs", type=int, default=3)
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per part (onnx and overhead get more)")
    args = parser.parse_args(argv)
    rows = []
    for part in args.only or PARTS:
        if part in args.skip:
            continue
        print(f"== {part}", file=sys.stderr, flush=True)
        try:
            rows += globals()[part](args)
        except (RuntimeError, subprocess.TimeoutExpired, KeyError, ValueError) as e:
            rows.append([part, "", f"FAILED: {str(e)[:200]}", ""])
    print(f"surgery benchmarks: {os.cpu_count()} CPUs; runs per measurement {args.runs}")
    print(table(["area", "measurement", "result", "goal"], rows))


if __name__ == "__main__":
    main()
