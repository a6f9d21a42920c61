"""The runtimes that run exported files on a CPU, each as ``run(inputs) -> {output name: float array}``.

One place for what the exporters' checks, ``surgery bench`` and the benchmarks all need: onnxruntime for an
ONNX file, ai-edge-litert for a LiteRT one (int8 inputs and outputs quantized and dequantized with the file's
own scales, so every caller feeds and reads float32 as Keras does). Each runner also lists the file's input
names: the exporters name a single input ``image`` whatever the Keras model called it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Run:
    """``run(inputs) -> {output name: float array}`` for one file; ``inputs``: its input names, in order."""

    inputs: list[str]
    call: Callable[[dict], dict]

    def __call__(self, inputs: dict) -> dict:
        return self.call(inputs)


def onnx_runner(path: str | Path, threads: int | None = None) -> Run:
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]

    def run(inputs: dict) -> dict:
        return dict(zip(names, session.run(names, inputs)))

    return Run([i.name for i in session.get_inputs()], run)


def litert_runner(content: bytes, threads: int | None = None, signature: str = "serving_default") -> Run:
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_content=content, num_threads=threads).get_signature_runner(signature)
    ins, outs = runner.get_input_details(), runner.get_output_details()

    def run(inputs: dict) -> dict:
        given = {}
        for name, x in inputs.items():
            scale, zero = ins[name]["quantization"]
            dtype = ins[name]["dtype"]
            if np.issubdtype(dtype, np.integer) and scale:
                info = np.iinfo(dtype)
                x = np.clip(np.round(np.asarray(x) / scale + zero), info.min, info.max)
            given[name] = np.asarray(x, dtype=dtype)
        found = {}
        for name, y in runner(**given).items():
            scale, zero = outs[name]["quantization"]
            integer = np.issubdtype(y.dtype, np.integer) and scale
            found[name] = (y.astype("float32") - zero) * scale if integer else y
        return found

    return Run(list(ins), run)
