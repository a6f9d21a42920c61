"""The ``insert``, ``replace`` and ``remove`` ops: edit one layer anywhere in the graph, residual blocks included.

Each re-traces the whole graph, every branch and named tensor with it, calling
the same layer objects again and swapping only the edited layer's calls
(``graph.retrace``'s ``around``). So every other layer keeps its weights by
construction, and a layer inside a residual block is as easy to edit as the
last one: both paths of the block see the edit where they read its tensor.
"""

from __future__ import annotations

from typing import Any

from surgery import (
    LAYER_PROPERTIES,
    OpError,
    RegisterOp,
    State,
    StepContext,
    check_layer_config,
    check_new_layer,
    find_layer,
    hookimpl,
    keras_reason,
    layer_names,
    layer_nodes,
    make_layer,
    new_layer_name,
    seeded,
)

_LAYER: dict[str, dict] = dict(LAYER_PROPERTIES)
_TARGET = {"type": "string", "minLength": 1, "description": "the name of the layer to edit"}

INSERT_SCHEMA = {
    "type": "object",
    "properties": {
        "after": {**_TARGET, "description": "insert on this layer's output (every reader of it sees the new layer)"},
        "before": {**_TARGET, "description": "insert on this (single-input) layer's input, for this layer only"},
        **_LAYER,
    },
    "required": ["layer"],
}
REPLACE_SCHEMA = {
    "type": "object",
    "properties": {
        "target": _TARGET,
        "layer": {
            **_LAYER["layer"],
            "description": "the new layer's class; omit it to keep the target's class "
            "and change only the config keys you give",
        },
        "config": {
            "type": "object",
            "description": 'the new layer\'s constructor arguments; without "layer", '
            "changes to the target's own config",
        },
        "name": {**_LAYER["name"], "description": "the new layer's name (default: the target's)"},
        "keep_weights": {
            "type": "boolean",
            "default": True,
            "description": "copy the target's weights when the new layer's have the same shapes",
        },
    },
    "required": ["target"],
}
REMOVE_SCHEMA = {"type": "object", "properties": {"target": _TARGET}, "required": ["target"]}


def _target(state, name: str):
    """The layer named ``name`` in any branch, and its calls there; never the input layer."""
    ws = state.workspace()
    layer = find_layer(ws, name)
    if type(layer).__name__ == "InputLayer":
        raise OpError(
            f'"{name}" is the model\'s input layer, which cannot be edited; use adapt_input to change '
            "the input, or insert before the first layer"
        )
    return layer, layer_nodes(ws, layer)


def _single_input(layer, nodes, what: str) -> None:
    """The edit rewires argument 0 of each call, so each call must take exactly one tensor there."""
    for node in nodes:
        args = node.arguments.args
        if len(node.input_tensors) != 1 or not args or args[0] is not node.input_tensors[0]:
            names = ", ".join(t._keras_history.operation.name for t in node.input_tensors)
            raise OpError(
                f'"{layer.name}" ({type(layer).__name__}) takes {len(node.input_tensors)} input tensors '
                f"({names}); {what}"
            )


def _single_output(layer, nodes, what: str) -> None:
    for node in nodes:
        if len(node.outputs) != 1:
            raise OpError(f'"{layer.name}" ({type(layer).__name__}) has {len(node.outputs)} outputs; {what}')


def _requested_name(params) -> str | None:
    """The new layer's name, given as "name" or, as in Keras, in its config (check_layer refuses both)."""
    return params.get("name") or params.get("config", {}).get("name")


def check_insert(params: dict[str, Any], ctx: StepContext) -> None:
    if ("after" in params) == ("before" in params):
        raise OpError('give exactly one of "after" or "before" (a layer name)')
    check_new_layer(params)


def insert(state: State, params: dict[str, Any], ctx: StepContext) -> State:
    where = "after" if "after" in params else "before"
    target, nodes = _target(state, params[where])
    if where == "after":
        _single_output(target, nodes, "insert after works on single-output layers")
    else:
        _single_input(
            target,
            nodes,
            'insert before works on single-input layers; insert "after" the layer that makes the input you mean',
        )
    config = {k: v for k, v in params.get("config", {}).items() if k != "name"}
    name = new_layer_name(state, params["layer"], _requested_name(params))
    seeded(ctx.seed)
    new = make_layer(params["layer"], config, name)

    def around(layer):
        if layer is not target:
            return layer
        if where == "after":
            return lambda *a, **kw: new(layer(*a, **kw))
        return lambda x, *a, **kw: layer(new(x), *a, **kw)

    after = state.retraced(around=around)
    ws_after = after.workspace()
    shape = tuple(layer_nodes(ws_after, ws_after.get_layer(name))[0].outputs[0].shape)
    return after.evolve(
        f'insert: {params["layer"]} "{name}" {where} {target.name} -> {shape}, {new.count_params():,} params'
    )


def check_replace(params: dict[str, Any], ctx: StepContext) -> None:
    if "layer" in params:
        check_new_layer(params)
        return
    if "name" in params.get("config", {}):
        raise OpError('give the new layer\'s name as "name", not in "config"')
    check_layer_config(params.get("config", {}))


def _replacement(target, params, name):
    """The new layer: a class and config of its own, or the target's class and config with changes."""
    if "layer" in params:
        config = {k: v for k, v in params.get("config", {}).items() if k != "name"}
        return make_layer(params["layer"], config, name)
    inherited = {k: v for k, v in target.get_config().items() if k != "trainable"}
    config = {**inherited, **params.get("config", {}), "name": name}
    try:
        return type(target).from_config(config)
    except (TypeError, ValueError, KeyError, AttributeError) as e:
        raise OpError(f"bad config for {type(target).__name__}: {keras_reason(e)}") from None


def _shapes(layer) -> list:
    return [(w.name, tuple(w.shape)) for w in layer.weights]


def replace(state: State, params: dict[str, Any], ctx: StepContext) -> State:
    target, _ = _target(state, params["target"])
    name = new_layer_name(state, type(target).__name__, _requested_name(params) or target.name, target.name)
    seeded(ctx.seed)
    new = _replacement(target, params, name)
    after = state.retraced(around=lambda layer: new if layer is target else layer)
    old_w, new_w = _shapes(target), _shapes(new)
    if not old_w and not new_w:
        weights = "no weights"
    elif not params.get("keep_weights", True):
        weights = "new weights (keep_weights: false)"
    elif [s for _, s in old_w] == [s for _, s in new_w]:
        new.set_weights(target.get_weights())
        new.trainable = target.trainable
        weights = f"weights kept ({len(old_w)} arrays)"
    else:
        differ = "; ".join(f"{n} {s}" for n, s in old_w) + " -> " + "; ".join(f"{n} {s}" for n, s in new_w)
        weights = f"new weights, the shapes differ ({differ})"
    cls = type(new).__name__
    return after.evolve(f'replace: {target.name} ({type(target).__name__}) with {cls} "{name}", {weights}')


def remove(state: State, params: dict[str, Any], ctx: StepContext) -> State:
    target, nodes = _target(state, params["target"])
    _single_input(target, nodes, "remove works on single-input, single-output layers")
    _single_output(target, nodes, "remove works on single-input, single-output layers")
    for node in nodes:
        shape_in, shape_out = tuple(node.input_tensors[0].shape), tuple(node.outputs[0].shape)
        if shape_in != shape_out:
            raise OpError(
                f'cannot remove "{target.name}" ({type(target).__name__}): its input {shape_in} and '
                f"output {shape_out} shapes differ, so the layers after it could not take its input"
            )
    after = state.retraced(around=lambda layer: (lambda x, *a, **kw: x) if layer is target else layer)
    return after.evolve(f"remove: {target.name} ({type(target).__name__}), {target.count_params():,} params")


def _with_layer_enum(schema: dict):
    """For editors: the schema with ``layer`` completing from the keras.layers classes a spec may use."""

    def editor_schema(registry) -> dict:
        names = sorted(layer_names(usable=True))
        layer = {**schema["properties"]["layer"], **({"enum": names} if names else {})}
        return {**schema, "properties": {**schema["properties"], "layer": layer}}

    return editor_schema


@hookimpl
def surgery_register_ops(register: RegisterOp) -> None:
    register(
        "insert",
        INSERT_SCHEMA,
        insert,
        check=check_insert,
        editor_schema=_with_layer_enum(INSERT_SCHEMA),
        description="Insert a built-in Keras layer after or before a named layer, anywhere in the graph",
        examples=[
            {"after": "block2_relu", "layer": "Dropout", "config": {"rate": 0.1}},
            {"before": "block3_conv", "layer": "Identity", "name": "probe_point"},
        ],
    )
    register(
        "replace",
        REPLACE_SCHEMA,
        replace,
        check=check_replace,
        editor_schema=_with_layer_enum(REPLACE_SCHEMA),
        description="Replace a named layer (keeping its weights when the shapes match)",
        examples=[
            {"target": "block2_relu", "layer": "Activation", "config": {"activation": "swish"}},
            {"target": "block2_conv", "config": {"activation": "relu"}},
            {"target": "block1_conv", "keep_weights": False},
        ],
    )
    register(
        "remove",
        REMOVE_SCHEMA,
        remove,
        description="Remove a single-input, single-output layer whose input and output shapes match",
        examples=[{"target": "block2_bn"}],
    )
