"""Mixed precision: the policy is set before the model is built; the final activation runs in float32.

Setting Keras' global policy before ``run_steps`` makes every layer the steps
create compute in float16/bfloat16 with float32 variables. Layers loaded from a
``.keras`` file keep the policy they were saved with (float32), so ``finalize``
moves those to the run's policy too. Softmax in float16 loses small
probabilities and can overflow, hence the float32 output (the Keras
mixed-precision guide's advice).
"""

from __future__ import annotations

from ..keras_env import keras
from ..model.graph import make_model, retrace


def set_policy(name: str) -> None:
    keras().mixed_precision.set_global_policy(name)


def finalize(model, policy: str):
    """The model with every float32 layer on ``policy`` and a float32 final activation (float32: unchanged)."""
    if policy == "float32":
        return model
    k = keras()
    for layer in model.layers:
        if not isinstance(layer, k.layers.InputLayer) and layer.dtype_policy.name == "float32":
            layer.dtype_policy = policy
    if len(model.outputs) != 1:
        return model  # the loss check refuses several outputs with a clear message
    last = model.outputs[0]._keras_history.operation
    activation = getattr(last, "activation", None)
    if isinstance(last, (k.layers.Activation, k.layers.Softmax)):
        last.dtype_policy = "float32"
        head = None
    elif activation is not None and activation is not k.activations.linear:
        # Dense(..., activation="softmax") -> Dense(linear) + Activation("softmax", dtype="float32")
        last.activation = k.activations.linear
        head = k.layers.Activation(activation, dtype="float32", name=f"{last.name}_{activation.__name__}")
    else:
        head = k.layers.Activation("linear", dtype="float32", name=f"{last.name}_float32")
    # Re-trace so that the graph's tensors carry the new compute dtypes.
    inputs = [k.Input(shape=t.shape[1:], dtype=t.dtype, name=t._keras_history.operation.name) for t in model.inputs]
    (out,) = retrace(model, {id(a): b for a, b in zip(model.inputs, inputs)}, model.outputs)
    return make_model(inputs, head(out) if head is not None else out, name=model.name)
