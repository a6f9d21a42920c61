"""The ``head`` op: what most transfer-learning models end with, as one step."""

from __future__ import annotations

from surgery import OpError, keras, make_model, seeded

SCHEMA = {
    "type": "object",
    "properties": {
        "classes": {"type": "integer", "minimum": 1, "description": "units of the final Dense layer"},
        "pooling": {
            "enum": ["avg", "max", "flatten"],
            "default": "avg",
            "description": "how a feature map becomes a vector (ignored for a vector output)",
        },
        "dropout": {
            "type": "number",
            "minimum": 0,
            "exclusiveMaximum": 1,
            "default": 0,
            "description": "dropout rate before the classifier; 0 adds no Dropout layer",
        },
        "activation": {
            "type": ["string", "null"],
            "default": "softmax",
            "description": "the classifier's activation; null for logits",
        },
        "name": {
            "type": "string",
            "pattern": "^[A-Za-z][A-Za-z0-9_]*$",
            "default": "head",
            "description": "prefix of the new layers' names",
        },
    },
    "required": ["classes"],
}

_POOL = {"avg": "GlobalAveragePooling", "max": "GlobalMaxPooling"}


def check(params, ctx):
    # Sigmoid over one class or softmax over one class is a classic silent mistake.
    if params["classes"] == 1 and params.get("activation", "softmax") == "softmax":
        raise OpError('softmax over 1 class always outputs 1.0; use "activation": "sigmoid" for a binary head')


def _pool_layer(layers, kind, rank, name):
    if kind == "flatten":
        return layers.Flatten(name=f"{name}_flatten")
    if rank not in (3, 4):
        raise OpError(f"cannot pool a {rank}-D output; head pools 3-D (sequence) or 4-D (image) outputs")
    return getattr(layers, f"{_POOL[kind]}{rank - 2}D")(name=f"{name}_pool")


def apply(state, params, ctx):
    check(params, ctx)
    layers = keras().layers
    name = params.get("name", "head")
    taken = {layer.name for layer in state.model.layers}
    clash = sorted(n for n in taken if n.startswith(f"{name}_"))
    if clash:
        raise OpError(f'the model already has layers named "{name}_..." ({clash[0]}); give this head another "name"')
    x = state.output
    seeded(ctx.seed)
    new = []
    if len(x.shape) > 2:
        new.append(_pool_layer(layers, params.get("pooling", "avg"), len(x.shape), name))
    if params.get("dropout", 0) > 0:
        new.append(layers.Dropout(params["dropout"], name=f"{name}_dropout"))
    try:
        new.append(
            layers.Dense(params["classes"], activation=params.get("activation", "softmax"), name=f"{name}_dense")
        )
    except ValueError as e:
        raise OpError(f"activation {params.get('activation')!r}: {' '.join(str(e).split())[:200]}") from None
    for layer in new:
        x = layer(x)
    n = params["classes"]
    note = f"head: {' -> '.join(type(lay).__name__ for lay in new)}, {n} class{'es' * (n != 1)}"
    return state.evolve(note, model=make_model(state.model.inputs, x))
