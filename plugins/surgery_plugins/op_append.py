"""The ``append`` op: add any built-in Keras layer, by class name and config, after the current output.

With ``"input"`` the layer branches from an earlier tensor (a name given with
``"as"``, or a layer's name) instead. The new layer's output becomes the
model's output; the head it branched away from is kept aside (``State.with_outputs``),
so an ``outputs`` step can still name it.
"""

from __future__ import annotations

from typing import Any

from surgery import (
    LAYER_PROPERTIES,
    OpError,
    RegisterOp,
    State,
    StepContext,
    call_layer,
    check_new_layer,
    hookimpl,
    layer_names,
    make_layer,
    new_layer_name,
    seeded,
)

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        **LAYER_PROPERTIES,
        "input": {
            "type": "string",
            "minLength": 1,
            "description": 'branch from this named tensor ("as") or layer\'s output instead of the current output',
        },
    },
    "required": ["layer"],
}


def check(params: dict[str, Any], ctx: StepContext) -> None:
    check_new_layer(params)


def apply(state: State, params: dict[str, Any], ctx: StepContext) -> State:
    check(params, ctx)
    config = dict(params.get("config", {}))
    name = new_layer_name(state, params["layer"], params.get("name") or config.pop("name", None))
    x = state.tensor(params["input"]) if "input" in params else state.output
    seeded(ctx.seed)
    layer = make_layer(params["layer"], config, name)
    y = call_layer(layer, x, f"append {params['layer']} to")
    if isinstance(y, (list, tuple)):
        raise OpError(f"{params['layer']} returns {len(y)} tensors; append takes single-output layers")
    source = f" on {params['input']}" if "input" in params else ""
    note = f'append: {params["layer"]} "{name}"{source} -> {tuple(y.shape)}, {layer.count_params():,} params'
    if params["layer"] == "Dense" and len(x.shape) > 2:
        note += (
            f" (Dense on a {len(x.shape)}-D input acts on the last axis only; put Flatten or "
            "GlobalAveragePooling2D before it for one vector per image)"
        )
    return state.with_outputs(note, [y])


def editor_schema(registry) -> dict:
    """For editors: ``layer`` completes from the keras.layers classes a spec may use."""
    names = sorted(layer_names(usable=True))
    layer = {**SCHEMA["properties"]["layer"], **({"enum": names} if names else {})}
    return {**SCHEMA, "properties": {**SCHEMA["properties"], "layer": layer}}


@hookimpl
def surgery_register_ops(register: RegisterOp) -> None:
    register(
        "append",
        SCHEMA,
        apply,
        check=check,
        editor_schema=editor_schema,
        description="Add a built-in Keras layer (by class name and config) after the current output",
        examples=[
            {"layer": "Dense", "config": {"units": 10, "activation": "softmax"}},
            {"layer": "Flatten"},
            {"layer": "Dense", "config": {"units": 64}, "input": "block2_pool"},
        ],
    )
