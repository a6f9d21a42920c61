"""The ``outputs`` op: declare the model's outputs (several heads from one backbone).

Keras names a model's outputs after the layers that make them, and the
``.keras`` and ONNX files keep those names. An output given a ``name`` that is
not its layer's gets an ``Identity`` layer of that name, a built-in layer with
no weights, so the name survives saving without custom objects.
"""

from __future__ import annotations

from typing import Any

from surgery import OpError, RegisterOp, State, StepContext, hookimpl, keras

NAME_PATTERN = "^[A-Za-z_][A-Za-z0-9_.-]*$"

SCHEMA = {
    "type": "object",
    "properties": {
        "tensors": {
            "type": "array",
            "minItems": 1,
            "description": "the outputs, in order: a named tensor or layer name (the output takes that layer's "
            'name), or {"tensor": ..., "name": ...} to name the output',
            "items": {
                "anyOf": [
                    {"type": "string", "minLength": 1, "description": "a named tensor or layer name"},
                    {
                        "type": "object",
                        "description": 'an object {"tensor", "name"}',
                        "properties": {
                            "tensor": {"type": "string", "minLength": 1},
                            "name": {"type": "string", "pattern": NAME_PATTERN},
                        },
                        "required": ["tensor", "name"],
                        "additionalProperties": False,
                    },
                ]
            },
        },
    },
    "required": ["tensors"],
}


def _entries(params) -> list[tuple[str, str | None]]:
    return [(e, None) if isinstance(e, str) else (e["tensor"], e["name"]) for e in params["tensors"]]


def check(params: dict[str, Any], ctx: StepContext) -> None:
    named = [name for _, name in _entries(params) if name]
    for name in set(named):
        if named.count(name) > 1:
            raise OpError(f'two outputs are named "{name}"; output names must differ')


def apply(state: State, params: dict[str, Any], ctx: StepContext) -> State:
    check(params, ctx)
    taken = {layer.name: layer for layer in state.workspace().layers}
    outputs, names = [], []
    for ref, name in _entries(params):
        t = state.tensor(ref)
        producer = t._keras_history.operation
        if name and name != producer.name:
            if name in taken:
                raise OpError(f'output name "{name}" is already the name of a layer; choose another')
            t = keras().layers.Identity(name=name)(t)
            taken[name] = t._keras_history.operation
        outputs.append(t)
        names.append(name or producer.name)
    for name in set(names):
        if names.count(name) > 1:
            raise OpError(
                f'two outputs would be named "{name}" (Keras names an output after its layer); '
                'give one a name: {"tensor": ..., "name": ...}'
            )
    described = ", ".join(f"{n} {tuple(t.shape)}" for n, t in zip(names, outputs))
    return state.with_outputs(f"outputs: {len(outputs)} ({described})", outputs)


@hookimpl
def surgery_register_ops(register: RegisterOp) -> None:
    register(
        "outputs",
        SCHEMA,
        apply,
        check=check,
        description="Declare the model's outputs: one or more named tensors or layers (multi-head models)",
        examples=[{"tensors": ["block3_pool", {"tensor": "block2_pool", "name": "middle"}]}],
    )
