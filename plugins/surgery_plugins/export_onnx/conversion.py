"""The conversion behind the ``onnx`` exporter: the model's inference call, traced as a ``tf.function``, handed
to ``tf2onnx.convert.from_function``, as Keras' ``model.export(format="onnx")`` does on TensorFlow.

``tf2onnx.convert.from_keras`` fails on Keras 3 functional models (KeyError on ``keras_tensor_N`` output
names, tf2onnx 1.17). Three things in the trace stop tf2onnx from converting some built-in backbones, and
``_traceable`` works around each while the export runs; three more context managers take time out of
tf2onnx's optimizer without changing what it writes. Each says what it changes and what it measured.
"""

from __future__ import annotations

import contextlib
import os

from surgery import is_quiet, native_stderr_muted


@contextlib.contextmanager
def _constants_frozen(model):
    """Captured tensors as numpy arrays while tracing.

    Some layers keep eager tensors as attributes (Normalization's mean and
    variance: EfficientNet, ConvNeXt). A traced function captures those as
    extra inputs, and tf2onnx keeps them as extra ONNX graph inputs with no
    value. Numpy arrays are embedded as constants instead.
    """
    import tensorflow as tf

    saved = []
    for layer in model._flatten_layers(include_self=True, recursive=True):
        for name, value in list(vars(layer).items()):
            if isinstance(value, tf.Tensor) and not isinstance(value, tf.Variable) and not name.startswith("_"):
                saved.append((layer, name, value))
                # object.__setattr__: Keras' attribute tracking must not see a temporary swap.
                object.__setattr__(layer, name, value.numpy())
    swapped = _graph_constants_as_arrays(model)
    try:
        yield
    finally:
        for layer, name, value in saved:
            object.__setattr__(layer, name, value)
        for arguments, args, kwargs in swapped:
            arguments.args, arguments.kwargs = args, kwargs


def _graph_constants_as_arrays(model) -> list:
    """The same for constants a functional graph passes to its operations (ViTDet's input normalisation,
    ``(x - ops.array(mean)) / ops.array(std)``): each node keeps them among its call's arguments.
    Returns what to put back."""
    import tensorflow as tf

    def constant(value) -> bool:
        return isinstance(value, tf.Tensor) and not isinstance(value, tf.Variable)

    def frozen(value):
        return value.numpy() if constant(value) else value

    swapped = []
    for layer in model._flatten_layers(include_self=True, recursive=True):
        for operation in getattr(layer, "_operations", []):
            for node in getattr(operation, "_inbound_nodes", []):
                arguments = getattr(node, "arguments", None)
                if arguments is None or not any(
                    constant(a) for a in tf.nest.flatten((arguments.args, arguments.kwargs))
                ):
                    continue
                swapped.append((arguments, arguments.args, arguments.kwargs))
                arguments.args = tf.nest.map_structure(frozen, arguments.args)
                arguments.kwargs = tf.nest.map_structure(frozen, arguments.kwargs)
    return swapped


@contextlib.contextmanager
def _grouped_conv_without_xla():
    """Grouped convolutions traced as plain Conv2D ops.

    Keras' TensorFlow backend runs grouped convolutions (ConvNeXt's depthwise
    ``Conv2D(groups=C)``) in a nested ``tf.function(jit_compile=True)``,
    because TensorFlow's CPU kernel lacks them. tf2onnx cannot inline that
    call (StatefulPartitionedCall), but converts a grouped Conv2D op directly
    into an ONNX Conv with ``group``; the CPU kernel is never run here.
    """
    try:
        from keras.src.backend import standardize_data_format
        from keras.src.backend.tensorflow import nn

        nn.conv, nn._convert_data_format  # noqa: B018 (both are used below)
    except (ImportError, AttributeError):  # another Keras layout: export as is; finish_onnx names the layer
        yield
        return
    import tensorflow as tf

    original = nn.conv

    def conv(inputs, kernel, strides=1, padding="valid", data_format=None, dilation_rate=1):
        data_format = standardize_data_format(data_format)
        channels = inputs.shape[-1] if data_format == "channels_last" else inputs.shape[1]
        if channels == kernel.shape[-2]:
            return original(inputs, kernel, strides, padding, data_format, dilation_rate)
        return tf.nn.convolution(
            inputs,
            kernel,
            strides,
            padding.upper(),
            data_format=nn._convert_data_format(data_format, len(inputs.shape)),
            dilations=dilation_rate,
        )

    nn.conv = conv
    try:
        yield
    finally:
        nn.conv = original


_erfc_registered = False


def _register_erfc() -> None:
    """Teach tf2onnx TensorFlow's Erfc: exact GELU (ConvNeXt) is ``0.5 x erfc(-x/sqrt 2)`` in TensorFlow.

    ONNX has Erf (opset 9) but no Erfc, and tf2onnx 1.17 has no handler for it.
    ``1 - erf(x)`` loses precision only where erfc is below float32's epsilon,
    an absolute error under 1e-7 there.
    """
    global _erfc_registered
    if _erfc_registered:
        return
    import numpy as np
    from tf2onnx import utils
    from tf2onnx.handler import tf_op

    @tf_op("Erfc")
    class Erfc:
        @classmethod
        def version_9(cls, ctx, node, **kwargs):
            dtype = utils.map_onnx_to_numpy_type(ctx.get_dtype(node.input[0]))
            erf = ctx.make_node("Erf", [node.input[0]], op_name_scope=node.name)
            one = ctx.make_const(utils.make_name(f"{node.name}_one"), np.array(1, dtype=dtype))
            node.type = "Sub"
            ctx.replace_inputs(node, [one.output[0], erf.output[0]])

    _erfc_registered = True


@contextlib.contextmanager
def _traceable(model):
    _register_erfc()
    with _constants_frozen(model), _grouped_conv_without_xla():
        yield


@contextlib.contextmanager
def _tf2onnx_quiet():
    """tf2onnx logs every op it cannot convert; we say it once, naming the layer (finish_onnx)."""
    import logging

    logger = logging.getLogger("tf2onnx")
    level = logger.level
    if is_quiet():
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


# tf2onnx deep-copies the whole graph before each of its ~36 optimizer passes, to put it back if a pass
# raises; that copying is a third of an export (InceptionV3: 41 s of which 14 s, bench/onnx.py). With
# this variable set tf2onnx 1.17 passes the graph along uncopied (it reads any value as off; "FALSE"
# also means off if a later tf2onnx reads the value). A pass that raises then fails the export, so
# `_convert` runs it once more the careful way: the file is the same, only slower.
CATCH_ERRORS = "TF2ONNX_CATCH_ERRORS"


@contextlib.contextmanager
def _uncopied_passes():
    if CATCH_ERRORS in os.environ:  # the user's own choice stands
        yield
        return
    os.environ[CATCH_ERRORS] = "FALSE"
    try:
        yield
    finally:
        os.environ.pop(CATCH_ERRORS, None)


# After each optimizer pass tf2onnx writes every node back into its protobuf (Graph.update_proto), copying
# every constant, the weights included, each time; no pass reads those protobufs, and make_graph writes them
# once more at the end, which is what the file holds. Skipping the writes during the passes takes a third
# off a weight-heavy export (ConvNeXtTiny at 32 px: 54 s to 37 s, bench/onnx_passes.py).
@contextlib.contextmanager
def _protos_written_once():
    from tf2onnx import optimizer
    from tf2onnx.graph import Graph

    passes = optimizer.optimize_graph

    def optimize_graph(*args, **kwargs):
        write = Graph.update_proto
        Graph.update_proto = lambda self, external_tensor_storage=None: None
        try:
            return passes(*args, **kwargs)
        finally:
            Graph.update_proto = write

    optimizer.optimize_graph = optimize_graph
    try:
        yield
    finally:
        optimizer.optimize_graph = passes


# Before its transpose pass tf2onnx turns each Reshape of a constant into a constant and re-sorts the whole
# graph after every one of them; nothing in that loop reads the order, so one sort after it gives the same
# graph. NASNetMobile (32 px) has 40 such reshapes per pass: 160 sorts, 14 of its 45 s (bench/onnx_passes.py).
@contextlib.contextmanager
def _reshapes_folded_then_sorted_once():
    from tf2onnx.optimizer.transpose_optimizer import TransposeOptimizer

    fold = TransposeOptimizer.pre_optimize_action

    def pre_optimize_action(self):
        graph, asked = self._g, []
        graph.topological_sort = asked.append  # an instance attribute: the class's method is untouched
        try:
            fold(self)
        finally:
            del graph.topological_sort
        if asked:
            graph.topological_sort(graph.get_nodes())

    TransposeOptimizer.pre_optimize_action = pre_optimize_action
    try:
        yield
    finally:
        TransposeOptimizer.pre_optimize_action = fold


# tf2onnx's back-to-back pass joins Reshape(Reshape(x, a), b) into Reshape(x, b) always; but a 0 in ONNX's
# shape `b` copies that dimension of its input, which was the first Reshape's output and is now x. Where
# tf2onnx itself writes such a shape (a Transpose that only moves a 1-sized dimension becomes Reshape
# [0, 1, -1, d]) after a Dense's flattening Reshape, the joined one copies the flattened batch * tokens:
# MiT's attention failed in onnxruntime for every batch. The pair is left as it is where `b` may copy.
@contextlib.contextmanager
def _reshapes_joined_only_where_exact():
    from tf2onnx.optimizer import back_to_back_optimizer as back_to_back

    key = ("Reshape",)
    join = back_to_back._func_map[key]

    def joined_if_exact(g, node, consumers):
        second = consumers[0] if len(consumers) == 1 else None
        if second is not None and second.type == "Reshape" and not second.get_attr_value("allowzero", 0):
            shape = second.inputs[1]
            if not shape.is_const() or 0 in shape.get_tensor_value(as_list=True):
                return []
        return join(g, node, consumers)

    back_to_back._func_map[key] = joined_if_exact
    try:
        yield
    finally:
        back_to_back._func_map[key] = join


def _inference_function(model, signature):
    """The model's inference call as a tf.function, what Keras' ONNX export hands to tf2onnx.

    Keras first tracks the model in a SavedModel ExportArchive, whose walk over every trackable object
    and resource serves SavedModel files and nothing in an ONNX one: a seventh of an export on a deep
    backbone (NASNetMobile at 32 px: Keras' tracked trace 8.4 s, the same trace alone 3.0 s).
    """
    import tensorflow as tf

    return tf.function(lambda inputs: model(inputs, training=False), input_signature=signature, autograph=False)


def _numpy2_ready_tf2onnx() -> None:
    """Keras' own fix for tf2onnx 1.17 under numpy 2, which ``model.export`` applies before converting."""
    try:
        from keras.src.export.tf2onnx_lib import patch_tf2onnx
    except ImportError:  # a Keras without it: a tf2onnx that needs no fix
        return
    import warnings

    with warnings.catch_warnings():  # its numpy 2 probe, hasattr(np, "object"), warns on stderr otherwise
        warnings.simplefilter("ignore", FutureWarning)
        patch_tf2onnx()


def convert(target, path, opset) -> None:
    """``target``'s model converted by tf2onnx into an ONNX file at ``path`` (no check yet: ``verify_onnx``)."""
    import tf2onnx

    signature = target.signature()
    function = _inference_function(target.model, signature)
    _numpy2_ready_tf2onnx()

    def run():
        with (
            _traceable(target.model),
            _tf2onnx_quiet(),
            native_stderr_muted(),
            _protos_written_once(),
            _reshapes_folded_then_sorted_once(),
            _reshapes_joined_only_where_exact(),
        ):
            tf2onnx.convert.from_function(function, input_signature=signature, opset=opset, output_path=str(path))

    try:
        with _uncopied_passes():
            run()
    except Exception:  # noqa: BLE001 - whatever failed, the careful conversion decides what the user sees
        if CATCH_ERRORS in os.environ:
            raise
        run()
