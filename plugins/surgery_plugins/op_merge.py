"""The ``merge`` op: join named tensors (or layers' outputs) with a Keras merge layer.

Shapes are checked here, before Keras sees them, so a mismatch is one line
that shows every input's shape rather than Keras' multi-line traceback text.
"""

from __future__ import annotations

from typing import Any

from surgery import (
    OpError,
    RegisterOp,
    State,
    StepContext,
    check_layer_config,
    hookimpl,
    make_layer,
    new_layer_name,
    seeded,
)

ELEMENTWISE = ("Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum")
MERGE_LAYERS = ELEMENTWISE + ("Concatenate",)

SCHEMA = {
    "type": "object",
    "properties": {
        "layer": {"enum": list(MERGE_LAYERS), "description": "the keras.layers merge class"},
        "inputs": {
            "type": "array",
            "minItems": 2,
            "items": {"type": "string", "minLength": 1},
            "description": 'named tensors ("as") or layer names, in order',
        },
        "config": {"type": "object", "description": "the layer's constructor arguments (Concatenate: axis)"},
        "name": {"type": "string", "pattern": "^[A-Za-z0-9_.-]+$", "description": "the new layer's name"},
    },
    "required": ["layer", "inputs"],
}


def check(params: dict[str, Any], ctx: StepContext) -> None:
    if params["layer"] == "Subtract" and len(params["inputs"]) != 2:
        raise OpError(f"Subtract takes exactly 2 inputs, got {len(params['inputs'])}")
    if "name" in params.get("config", {}):
        raise OpError('give the layer\'s name as "name", not in "config"')
    check_layer_config(params.get("config", {}))


def _shapes_text(names, tensors) -> str:
    return ", ".join(f"{n} {tuple(t.shape)}" for n, t in zip(names, tensors))


def _compatible(a, b) -> bool:
    """Keras' element-wise merges broadcast a dimension that is 1 (or unknown)."""
    return a == b or a in (1, None) or b in (1, None)


def check_shapes(cls: str, names, tensors, axis: int = -1) -> None:
    shapes = [tuple(t.shape) for t in tensors]
    ranks = {len(s) for s in shapes}
    if len(ranks) != 1:
        raise OpError(f"{cls} needs tensors of the same rank; got {_shapes_text(names, tensors)}")
    rank = ranks.pop()
    if cls == "Concatenate":
        if not -rank <= axis < rank:
            raise OpError(f"Concatenate axis {axis} is out of range for rank-{rank} tensors")
        keep = [d for d in range(1, rank) if d != axis % rank]
        if any(s[d] != shapes[0][d] for s in shapes for d in keep):
            raise OpError(
                f"Concatenate on axis {axis} needs the same shape on every other axis; "
                f"got {_shapes_text(names, tensors)}"
            )
    elif any(not _compatible(s[d], shapes[0][d]) for s in shapes for d in range(1, rank)):
        raise OpError(f"{cls} needs tensors of the same shape; got {_shapes_text(names, tensors)}")


def apply(state: State, params: dict[str, Any], ctx: StepContext) -> State:
    check(params, ctx)
    cls, names = params["layer"], params["inputs"]
    tensors = [state.tensor(n) for n in names]
    config = dict(params.get("config", {}))
    check_shapes(cls, names, tensors, config.get("axis", -1))
    name = new_layer_name(state, cls, params.get("name"))
    seeded(ctx.seed)
    layer = make_layer(cls, config, name)
    try:
        y = layer(tensors)
    except Exception as e:  # noqa: BLE001 (Keras refuses inputs with many exception types)
        raise OpError(f"{cls} cannot merge {_shapes_text(names, tensors)}: {' '.join(str(e).split())[:300]}") from None
    note = f'merge: {cls} "{name}" of {", ".join(names)} -> {tuple(y.shape)}'
    return state.with_outputs(note, [y])


@hookimpl
def surgery_register_ops(register: RegisterOp) -> None:
    register(
        "merge",
        SCHEMA,
        apply,
        check=check,
        description="Join named tensors or layers' outputs with Add, Concatenate, Multiply, Average, ...",
        examples=[
            {"layer": "Add", "inputs": ["block3_relu", "block3_bn"]},
            {"layer": "Concatenate", "inputs": ["block3_conv", "block3_relu"], "config": {"axis": -1}},
        ],
    )
