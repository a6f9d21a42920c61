"""A preprocessing function as built-in layers at a model's input, so the model takes raw 0-255 pixels.

Every keras.applications preprocessing ("caffe", "tf", "torch" modes, and the pass-through of models that
preprocess themselves) is a per-pixel affine map ``y = M x + b`` over the channels, so it is measured
rather than looked up: the function is called on a few probe pixels, ``M`` and ``b`` are solved for, and
the map is checked on random pixels. That also covers a plugin's backbone. The map becomes one built-in
layer, so the file loads with ``safe_mode`` and no custom objects: ``Rescaling(scale, offset)`` when ``M``
is diagonal ("tf", "torch"), else a frozen 1x1 ``Conv2D`` whose kernel is ``M`` and bias ``b`` ("caffe":
the RGB->BGR swap and the mean). The ``preprocess`` op and ``surgery train`` both use it.
"""

from __future__ import annotations

from ..errors import OpError
from ..keras_env import keras
from .layers import unique_name


def measure(fn, channels: int, name: str):
    """(M, b) with fn(x) == x @ M.T + b on pixels; OpError if fn is not such a map."""
    import numpy as np

    def call(x):
        return np.asarray(keras().ops.convert_to_numpy(fn(x.copy())), dtype="float64").reshape(-1, channels)

    # float64 probes: keras' preprocess_input keeps a float64 array's precision, so M and b come out exact.
    probes = np.zeros((channels + 1, 1, 1, channels))
    for c in range(channels):
        probes[c + 1, 0, 0, c] = 100.0
    out = call(probes)
    b = out[0]
    m = ((out[1:] - b) / 100.0).T
    x = np.random.default_rng(0).uniform(0, 255, size=(2, 3, 3, channels))
    if not np.allclose(call(x), x.reshape(-1, channels) @ m.T + b, rtol=1e-5, atol=1e-4):
        raise OpError(
            f"{name} is not a per-pixel affine map of the channels, so it cannot be expressed as "
            "Rescaling or 1x1 Conv2D layers; preprocess the data outside the model"
        )
    return m, b


def affine_layers(keras, m, b, channels: int, name: str):
    """The built-in layer(s) computing ``M x + b`` on ``channels`` channels, and a description."""
    import numpy as np

    if channels != len(b):
        # An adapted input (adapt_input): every channel gets the mean of the map's per-channel scale and offset,
        # the counterpart of the "mean" kernel rule for an image whose channels are all the same.
        mean_scale, mean_offset = float(m.sum(axis=1).mean()), float(b.mean())
        return [keras.layers.Rescaling(mean_scale, mean_offset, name=name)], (
            f"Rescaling (scale {mean_scale:.6g}, offset {mean_offset:.6g}: the means over the function's {len(b)} channels, "
            f"for a {channels}-channel input)"
        )
    if np.allclose(m, np.diag(np.diag(m)), atol=0):
        scale, offset = np.diag(m), b

        def value(v):
            """A scalar when every channel has the same value: the layer's config reads as Keras users write it."""
            return float(v[0]) if np.all(v == v[0]) else [float(s) for s in v]

        def shown(v, digits):
            return np.round(value(v), digits).tolist()

        return [keras.layers.Rescaling(value(scale), value(offset), name=name)], (
            f"Rescaling (scale {shown(scale, 6)}, offset {shown(offset, 4)})"
        )
    conv = keras.layers.Conv2D(channels, 1, use_bias=True, name=name)
    conv.build((None, None, None, channels))
    conv.set_weights([m.T.reshape(1, 1, channels, channels).astype("float32"), b.astype("float32")])
    conv.trainable = False
    return [conv], f"frozen 1x1 Conv2D (channel order and offsets {np.round(b, 4).tolist()})"


def into_model(state, fn, fname: str, written_for: int):
    """The state with ``fn`` (named ``fname`` in messages, written for ``written_for`` channels) at its input."""
    import numpy as np

    k = keras()
    model = state.model
    if len(model.inputs) != 1 or len(model.inputs[0].shape) != 4:
        shapes = ", ".join(str(tuple(t.shape)) for t in model.inputs)
        raise OpError(f"preprocess needs one image input (None, height, width, channels); the model has {shapes}")
    m, b = measure(fn, written_for, fname)
    if np.allclose(m, np.eye(len(b))) and np.allclose(b, 0):
        return state.evolve(
            f"preprocess: {fname} is the identity (the model preprocesses its own input); nothing added",
            preprocess=None,
        )
    old = model.inputs[0]
    name = unique_name("preprocess", [layer.name for layer in state.workspace().layers])
    layers, described = affine_layers(k, m, b, old.shape[-1], name)
    new_input = k.Input(shape=old.shape[1:], dtype=old.dtype, name=old._keras_history.operation.name)
    x = new_input
    for layer in layers:
        x = layer(x)
    after = state.retraced(inputs=[new_input], feeds=[x])
    return after.evolve(
        f'preprocess: {fname} as {described} "{name}"; the model takes raw 0-255 pixels', preprocess=None
    )


def for_backbone(info, registry):
    """(function, its name for messages, the channel count it was written for) of a backbone's preprocessing."""
    from .preprocessing import function

    fn = info.preprocess
    name = fn if isinstance(fn, str) else getattr(fn, "__qualname__", repr(fn))
    return function(info.name, registry), name, info.input_shape[-1] if info.input_shape else 3
