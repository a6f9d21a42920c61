"""ONNX (or LiteRT) export of every built-in backbone: export time, parity with Keras, runtime vs Keras throughput.

Each backbone (include_top=False, its default input size, random weights)
runs in a fresh process with a time limit, so one that fails or runs out of
time is reported and the rest go on. Results are appended to a JSON-lines
file as they come, so a long run can be stopped and resumed (backbones
already in the file are skipped) and the table printed at any time.

    python bench/onnx.py                          # all backbones, resumable
    python bench/onnx.py mobilenetv2 resnet50     # a subset
    python bench/onnx.py --table                  # print the table of what is done
    python bench/onnx.py --to litert              # the same with LiteRT files run by ai-edge-litert
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
# This file is called onnx.py: with its folder on sys.path, `import onnx` would import it.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]


def _load_measure():
    import importlib.util

    spec = importlib.util.spec_from_file_location("_measure", HERE / "_measure.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_measure = _load_measure()
median, table = _measure.median, _measure.table
PARITY = 1e-5


SUFFIX = {"onnx": ".onnx", "litert": ".tflite"}


def _runtime(fmt: str, path: Path):
    """``run(x) -> the first output``: onnxruntime for an ONNX file, ai-edge-litert for a LiteRT one."""
    if fmt == "onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return lambda x: session.run(None, {"image": x})[0]
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=str(path), num_threads=os.cpu_count()).get_signature_runner("serving_default")
    return lambda x: next(iter(runner(image=x).values()))


def measure(name: str, batch: int, repeats: int, fmt: str = "onnx") -> dict:
    """In the child process: build, export (the exporter's own check included), compare, time both runtimes."""
    import numpy as np

    import surgery
    from surgery import keras, load_plugins

    keras()
    registry = load_plugins().registry
    side = registry.backbones[name].input_shape
    spec = {
        "surgery": 1,
        "name": name,
        "seed": 0,
        "steps": [{"op": "backbone", "name": name, "weights": None, "include_top": False, "input_shape": list(side)}],
    }
    model = surgery.build(spec)
    x = np.random.default_rng(0).standard_normal((batch, *side)).astype("float32")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"{name}{SUFFIX[fmt]}"
        started = time.perf_counter()
        # The exporter's check must not stop the bench: the difference is measured and reported here.
        registry.exporters[fmt].export(model, path, {"atol": float("inf")})
        export_s = time.perf_counter() - started
        run_file = _runtime(fmt, path)
        runs = {"onnxruntime": lambda: run_file(x), "keras": lambda: model.predict_on_batch(x)}
        # Warm-up (graph building, allocation), then alternating runs, so that drift in
        # the machine's load (it is shared) hits both runtimes alike.
        outputs = {runtime: np.asarray(run()) for runtime, run in runs.items()}
        times = {runtime: [] for runtime in runs}
        for _ in range(repeats):
            for runtime, run in runs.items():
                t = time.perf_counter()
                run()
                times[runtime].append(time.perf_counter() - t)
        seconds = {runtime: median(t) for runtime, t in times.items()}
    diff = float(np.abs(outputs["onnxruntime"] - outputs["keras"]).max())
    scale = float(np.abs(outputs["keras"]).max())
    # Only where the difference is not plainly float32 rounding (1e-5 relative); float64 runs are slow
    # (ConvNeXt's grouped convolutions: half an hour at batch 8).
    noise = _float32_noise(spec, model, x[:2], outputs["keras"][:2]) if diff > max(PARITY, 1e-5 * scale) else None
    return {
        "backbone": name,
        "input": "x".join(map(str, side)),
        "params_m": model.count_params() / 1e6,
        "export_s": export_s,
        "max_abs_diff": diff,
        "max_abs_output": scale,
        "float32_noise": noise,
        "ort_img_s": batch / seconds["onnxruntime"],
        "keras_img_s": batch / seconds["keras"],
    }


def _float32_noise(spec: dict, model, x, keras_y) -> float:
    """How far Keras' own float32 result is from float64: the floor under any float32 runtime's difference.

    Measured on two images where ONNX and Keras differ by more than rounding: random weights
    can make a deep network amplify rounding (EfficientNetV2B3's features
    reach 4e3), and then Keras differs from exact arithmetic as much as
    onnxruntime differs from Keras.
    """
    import numpy as np

    import surgery
    from surgery import keras

    k = keras()
    k.mixed_precision.set_global_policy("float64")
    try:
        exact = surgery.build(spec)
    finally:
        k.mixed_precision.set_global_policy("float32")
    exact.set_weights([w.astype("float64") for w in model.get_weights()])
    return float(np.abs(np.asarray(exact(x.astype("float64"), training=False)) - keras_y).max())


def _row(r: dict) -> list:
    if "error" in r:
        return [r["backbone"], r.get("input", ""), "", "", "FAILED", "", "", "", "", "", "", r["error"][:120]]
    noise = r.get("float32_noise")
    return [
        r["backbone"],
        r["input"],
        f"{r['params_m']:.1f}",
        f"{r['export_s']:.0f}",
        f"{r['max_abs_diff']:.1e}",
        f"{r['max_abs_output']:.2g}",
        f"{r['max_abs_diff'] / (r['max_abs_output'] or 1):.0e}",
        "" if noise is None else f"{noise:.1e}",
        f"{r['ort_img_s']:.1f}",
        f"{r['keras_img_s']:.1f}",
        f"{r['ort_img_s'] / r['keras_img_s']:.2f}x",
        "" if r["max_abs_diff"] <= PARITY else "above 1e-5",
    ]


HEADER = [
    "backbone",
    "input",
    "params (M)",
    "export s",
    "max abs diff",
    "max abs output",
    "relative",
    "Keras f32 vs f64",
    "runtime img/s",
    "Keras img/s",
    "runtime/Keras",
    "note",
]


def _done(results: Path) -> dict:
    if not results.exists():
        return {}
    rows = [json.loads(line) for line in results.read_text().splitlines() if line.strip()]
    return {r["backbone"]: r for r in rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("backbones", nargs="*", help="default: every installed backbone of keras.applications")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--timeout", type=int, default=3600, help="seconds per backbone")
    parser.add_argument("--to", dest="fmt", choices=sorted(SUFFIX), default="onnx", help="the format (default onnx)")
    parser.add_argument("--results", type=Path, help="default: surgery-bench-FORMAT.jsonl in the temporary folder")
    parser.add_argument("--table", action="store_true", help="only print the table of the results file")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.results is None:
        args.results = Path(tempfile.gettempdir()) / f"surgery-bench-{args.fmt}.jsonl"
    if args.child:
        print(json.dumps(measure(args.child, args.batch, args.repeats, args.fmt)))
        return
    from surgery import load_plugins

    every = [b.name for b in load_plugins().registry.backbones.values() if b.plugin == "applications"]
    names = args.backbones or every
    if not args.table:
        done = _done(args.results)
        for name in names:
            if name in done:
                continue
            cmd = [
                sys.executable,
                __file__,
                "--child",
                name,
                "--batch",
                str(args.batch),
                "--repeats",
                str(args.repeats),
                "--to",
                args.fmt,
            ]
            try:
                proc = subprocess.run(
                    cmd,
                    check=False,
                    capture_output=True,
                    text=True,
                    timeout=args.timeout,
                    env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
                )
                lines = proc.stdout.strip().splitlines()
                if proc.returncode == 0 and lines:
                    result = json.loads(lines[-1])
                elif proc.returncode < 0:  # SIGKILL, with nothing on stderr, is the kernel's out-of-memory killer
                    result = {
                        "backbone": name,
                        "error": f"killed by signal {-proc.returncode}"
                        + (" (out of memory?)" if proc.returncode == -9 else ""),
                    }
                else:
                    result = {"backbone": name, "error": (proc.stderr.strip().splitlines() or ["no output"])[-1]}
            except subprocess.TimeoutExpired:
                result = {"backbone": name, "error": f"no result within {args.timeout} s"}
            with args.results.open("a") as f:
                f.write(json.dumps(result) + "\n")
            print(" | ".join(_row(result)), flush=True)
    done = _done(args.results)
    rows = [done[n] for n in every if n in done] + [r for n, r in done.items() if n not in every]
    print(table(HEADER, [_row(r) for r in rows]))
    ok = [r for r in rows if "error" not in r]
    if ok:
        ratios = sorted(r["ort_img_s"] / r["keras_img_s"] for r in ok)
        print(
            f"\n{sum(r['max_abs_diff'] <= PARITY for r in ok)}/{len(rows)} within {PARITY:g}; "
            f"{args.fmt} runtime/Keras median {median(ratios):.2f}x (range {ratios[0]:.2f}x to {ratios[-1]:.2f}x); "
            f"batch {args.batch}, {os.cpu_count()} CPUs"
        )


if __name__ == "__main__":
    main()
