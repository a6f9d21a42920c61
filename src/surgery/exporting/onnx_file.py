"""The ONNX file an exporter wrote: named dimensions, no TensorFlow op left unconverted, and onnxruntime's
agreement with Keras (the check every export gets, ``export_check.compare``)."""

from __future__ import annotations

import re

from ..errors import one_line
from .export_check import BATCH_DIM, ExportError, Target, _all_layers, compare


def layer_for_node(model, node_name: str) -> str | None:
    """The Keras layer whose name scope a TensorFlow/ONNX node name is in (the innermost one)."""
    names = {layer.name for layer in _all_layers(model)}
    for part in reversed(node_name.split("/")):
        base = re.sub(r"_\d+$", "", part)
        for candidate in (part, base):
            if candidate in names:
                return candidate
    return None


def finish_onnx(path, target: Target, model, metadata: dict) -> None:
    """Refuse unconverted ops, name the batch dimension ``batch`` and record where the file came from.

    tf2onnx names every free dimension ``unk__N``, a different one per tensor,
    so nothing says that the inputs and outputs share their first dimension.
    One load and one save: the file can be as large as the model's weights.
    """
    import onnx

    proto = onnx.load(str(path))
    _refuse_unconverted(proto, model)
    graph = proto.graph
    symbols = set()
    for value in list(graph.input) + list(graph.output):
        dims = value.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            symbols.add(dims[0].dim_param)
    for value in list(graph.input) + list(graph.output) + list(graph.value_info):
        for dim in value.type.tensor_type.shape.dim:
            if dim.HasField("dim_param") and dim.dim_param in symbols:
                dim.dim_param = BATCH_DIM
    found = ([v.name for v in graph.input], sorted(v.name for v in graph.output))
    if found != (target.input_names, sorted(target.output_names)):
        raise ExportError(
            f"the ONNX file has inputs {found[0]} and outputs {found[1]}, expected "
            f"{target.input_names} and {sorted(target.output_names)}"
        )
    onnx.helper.set_model_props(proto, {k: str(v) for k, v in metadata.items()})
    onnx.save(proto, str(path))


def unconverted_nodes(proto) -> list:
    """Nodes that are not ONNX operators: TensorFlow ops tf2onnx left in the graph because it cannot convert them."""
    import onnx

    default = {"", "ai.onnx"}
    return [
        n
        for n in proto.graph.node
        if (n.domain in default and not onnx.defs.has(n.op_type, ""))
        or n.domain not in default | {"ai.onnx.ml", "com.microsoft"}
    ]


def _refuse_unconverted(proto, model) -> None:
    """One error naming the first layer whose operation has no ONNX equivalent."""
    nodes = unconverted_nodes(proto)
    if not nodes:
        return
    ops = sorted({n.op_type for n in nodes})
    layers = {layer.name: layer for layer in _all_layers(model)}
    for node in nodes:
        name = layer_for_node(model, node.name)
        if name is not None:
            raise ExportError(
                f'layer "{name}" ({type(layers[name]).__name__}) cannot be exported to ONNX: tf2onnx '
                f"has no conversion for the TensorFlow op {node.op_type} (all unconverted ops: "
                f"{', '.join(ops)}); remove the layer from the model or replace it"
            )
    raise ExportError(f"tf2onnx could not convert the TensorFlow ops {', '.join(ops)} (in {nodes[0].name})")


def verify_onnx(path, target: Target, atol: float) -> float:
    """onnx.checker, then onnxruntime against Keras on a random batch; returns the max abs difference."""
    import onnx
    import onnxruntime as ort

    try:
        onnx.checker.check_model(str(path))
    except onnx.checker.ValidationError as e:
        raise ExportError(f"onnx.checker rejected the file: {one_line(e)}") from None
    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001 (onnxruntime raises its own, unexported, exception types)
        raise ExportError(f"onnxruntime cannot load the file: {one_line(e)}") from None

    def run(inputs):
        return dict(zip(target.output_names, session.run(target.output_names, inputs)))

    return compare(target, run, atol, "onnxruntime")
