"""ONNX export of every built-in backbone: export time, parity with Keras, onnxruntime vs Keras CPU throughput.

Each backbone (include_top=False, its default input size, random weights)
runs in a fresh process with a time limit, so one that fails or runs out of
time is reported and the rest go on. Results are appended to a JSON-lines
file as they come, so a long run can be stopped and resumed (backbones
already in the file are skipped) and the table printed at any time.

    python bench/onnx.py                          # all backbones, resumable
    python bench/onnx.py mobilenetv2 resnet50     # a subset
    python bench/onnx.py --table                  # print the table of what is done
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


def measure(name: str, batch: int, repeats: int) -> dict:
    """In the child process: build, export (the exporter's own check included), compare, time both runtimes."""
    import numpy as np
    import onnxruntime as ort

    import surgery
    from surgery.keras_env import keras
    from surgery.plugins import load_plugins

    keras()
    registry = load_plugins().registry
    side = registry.backbones[name].input_shape
    model = surgery.build({"surgery": 1, "name": name, "seed": 0, "steps": [
        {"op": "backbone", "name": name, "weights": None, "include_top": False, "input_shape": list(side)}]})
    x = np.random.default_rng(0).standard_normal((batch, *side)).astype("float32")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"{name}.onnx"
        started = time.perf_counter()
        # The exporter's check must not stop the bench: the difference is measured and reported here.
        registry.exporters["onnx"].export(model, path, {"atol": 1e9})
        export_s = time.perf_counter() - started
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        runs = {"onnxruntime": lambda: session.run(None, {"image": x})[0],
                "keras": lambda: model.predict_on_batch(x)}
        outputs, seconds = {}, {}
        for runtime, run in runs.items():
            outputs[runtime] = np.asarray(run())  # warm-up (graph building, allocation)
            times = []
            for _ in range(repeats):
                t = time.perf_counter()
                run()
                times.append(time.perf_counter() - t)
            seconds[runtime] = median(times)
    diff = float(np.abs(outputs["onnxruntime"] - outputs["keras"]).max())
    return {"backbone": name, "input": "x".join(map(str, side)), "params_m": model.count_params() / 1e6,
            "export_s": export_s, "max_abs_diff": diff, "max_abs_output": float(np.abs(outputs["keras"]).max()),
            "ort_img_s": batch / seconds["onnxruntime"], "keras_img_s": batch / seconds["keras"]}


def _row(r: dict) -> list:
    if "error" in r:
        return [r["backbone"], r.get("input", ""), "", "", "FAILED", "", "", "", "", r["error"][:120]]
    ok = r["max_abs_diff"] <= PARITY
    return [r["backbone"], r["input"], f"{r['params_m']:.1f}", f"{r['export_s']:.0f}", f"{r['max_abs_diff']:.1e}",
            f"{r['max_abs_output']:.2g}", f"{r['ort_img_s']:.1f}", f"{r['keras_img_s']:.1f}",
            f"{r['ort_img_s'] / r['keras_img_s']:.2f}x", "" if ok else "above 1e-5"]


HEADER = ["backbone", "input", "params (M)", "export s", "max abs diff", "max |output|", "ORT img/s",
          "Keras img/s", "ORT/Keras", "note"]


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
    parser.add_argument("--results", type=Path, default=Path(tempfile.gettempdir()) / "surgery-bench-onnx.jsonl")
    parser.add_argument("--table", action="store_true", help="only print the table of the results file")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.batch, args.repeats)))
        return
    if not args.table:
        from surgery.plugins import load_plugins

        names = args.backbones or [b.name for b in load_plugins().registry.backbones.values()
                                   if b.plugin == "applications"]
        done = _done(args.results)
        for name in names:
            if name in done:
                continue
            cmd = [sys.executable, __file__, "--child", name, "--batch", str(args.batch),
                   "--repeats", str(args.repeats)]
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout,
                                      env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
                lines = proc.stdout.strip().splitlines()
                result = json.loads(lines[-1]) if proc.returncode == 0 and lines else {
                    "backbone": name, "error": (proc.stderr.strip().splitlines() or ["no output"])[-1]}
            except subprocess.TimeoutExpired:
                result = {"backbone": name, "error": f"no result within {args.timeout} s"}
            with args.results.open("a") as f:
                f.write(json.dumps(result) + "\n")
            print(" | ".join(_row(result)), flush=True)
    rows = list(_done(args.results).values())
    print(table(HEADER, [_row(r) for r in rows]))
    ok = [r for r in rows if "error" not in r]
    if ok:
        ratios = sorted(r["ort_img_s"] / r["keras_img_s"] for r in ok)
        print(f"\n{sum(r['max_abs_diff'] <= PARITY for r in ok)}/{len(rows)} within {PARITY:g}; "
              f"ORT/Keras median {median(ratios):.2f}x (range {ratios[0]:.2f}x to {ratios[-1]:.2f}x); "
              f"batch {args.batch}, {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
