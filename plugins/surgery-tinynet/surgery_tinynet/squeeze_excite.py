"""The ``squeeze_excite`` op: a squeeze-and-excitation block (Hu et al., 2018) after a named layer.

The block rescales each channel of the layer's output by a learnt gate; it is
inserted *inside* the graph, so the layers after it are called again on the
gated tensor (they keep their weights: layers are reused, not copied).
"""

from __future__ import annotations

from surgery import OpError, did_you_mean, keras, output_tensor_of, seeded

SCHEMA = {
    "type": "object",
    "properties": {
        "after": {"type": "string", "minLength": 1, "description": "name of the layer whose output is gated"},
        "ratio": {"type": "integer", "minimum": 1, "default": 4, "description": "channel reduction of the bottleneck"},
        "name": {
            "type": "string",
            "pattern": "^[A-Za-z][A-Za-z0-9_]*$",
            "description": "prefix of the new layers' names (default: <after>_se)",
        },
    },
    "required": ["after"],
}


def _se_block(layers, channels, ratio, name):
    squeeze = layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_squeeze")
    reduce = layers.Conv2D(max(1, channels // ratio), 1, activation="relu", name=f"{name}_reduce")
    expand = layers.Conv2D(channels, 1, activation="sigmoid", name=f"{name}_expand")
    excite = layers.Multiply(name=f"{name}_excite")

    def gate(x):
        return excite([x, expand(reduce(squeeze(x)))])

    return gate


def apply(state, params, ctx):
    model = state.model
    names = [layer.name for layer in model.layers]
    after = params["after"]
    if after not in names:
        raise OpError(f'no layer named "{after}"' + did_you_mean(after, names))
    target = model.layers[names.index(after)]
    out = output_tensor_of(model, target)
    if out is None or len(out.shape) != 4:
        shape = "several outputs" if out is None else f"output shape {tuple(out.shape)}"
        raise OpError(f'"{after}" has {shape}; squeeze_excite needs a 4-D (image) output')
    name = params.get("name", f"{after}_se")
    if any(n.startswith(f"{name}_") for n in names):
        raise OpError(f'layers named "{name}_..." already exist; give this block another "name"')
    seeded(ctx.seed)
    gate = _se_block(keras().layers, out.shape[-1], params.get("ratio", 4), name)

    def around(layer):
        return (lambda *a, **kw: gate(layer(*a, **kw))) if layer is target else layer

    # state.retraced re-runs every branch and named tensor, not only the outputs.
    after_state = state.retraced(around=around)
    added = len(after_state.model.layers) - len(model.layers)
    return after_state.evolve(f"squeeze_excite: {added} layers after {after} (ratio {params.get('ratio', 4)})")
