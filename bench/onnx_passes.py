"""ONNX conversion time: plain Keras ``model.export(format="onnx")`` against surgery's exporter.

Plain Keras first tracks the model in a SavedModel export archive, then lets tf2onnx deep-copy the
graph before each optimizer pass and write every node, weights included, back into its protobuf after
each; surgery's exporter traces the same inference function without the archive, converts without the
copies (and again with them only if a pass raises) and writes the protobufs once, at the end, then
checks the file in onnxruntime. Both run in this one process, alternating, on the same backbone (random weights),
so the machine's drifting load hits both alike; the table gives medians and their ratio.

    python bench/onnx_passes.py                          # mobilenetv2 densenet121 inceptionv3
    python bench/onnx_passes.py resnet50 --repeats 3
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]  # bench/onnx.py would shadow onnx


def _load_measure():
    import importlib.util

    spec = importlib.util.spec_from_file_location("_measure", HERE / "_measure.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_measure = _load_measure()
median, table = _measure.median, _measure.table


def measure(name: str, repeats: int) -> list:
    import numpy as np

    import surgery
    from surgery import keras, load_plugins

    keras()
    registry = load_plugins().registry
    side = list(registry.backbones[name].input_shape)
    spec = {
        "surgery": 1,
        "name": name,
        "steps": [{"op": "backbone", "name": name, "weights": None, "include_top": False, "input_shape": side}],
    }
    model = surgery.build(spec)
    model.predict_on_batch(np.zeros((1, *side), "float32"))  # Keras exports only a model that has been called
    exporter = registry.exporters["onnx"]
    times: dict[str, list[float]] = {"keras": [], "surgery": []}
    with tempfile.TemporaryDirectory() as folder:
        runs = {
            "keras": lambda: model.export(str(Path(folder) / "k.onnx"), format="onnx", verbose=False),
            "surgery": lambda: exporter.export(model, Path(folder) / "s.onnx", {}),
        }
        for _ in range(repeats):
            for what, run in runs.items():
                started = time.perf_counter()
                run()
                times[what].append(time.perf_counter() - started)
    keras_s, surgery_s = median(times["keras"]), median(times["surgery"])
    return [name, f"{keras_s:.1f}", f"{surgery_s:.1f}", f"{keras_s / surgery_s:.2f}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("backbones", nargs="*", default=["mobilenetv2", "densenet121", "inceptionv3"])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    rows = [measure(name, args.repeats) for name in args.backbones]
    header = ["backbone", "plain Keras export s", "surgery export + check s", "Keras / surgery"]
    print(table(header, rows))


if __name__ == "__main__":
    main()
