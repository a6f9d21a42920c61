"""The ``freeze`` and ``unfreeze`` ops: choose which layers train.

Keras 3 runs a BatchNormalization layer whose ``trainable`` is False in
inference mode (it uses, and does not update, its moving statistics). So BN
layers in a frozen range stay in inference mode. ``unfreeze`` leaves BN layers
frozen unless ``"batchnorm": "train"`` is given: unfreezing them would let
small fine-tuning batches overwrite the statistics learnt on the source data,
which is the Keras transfer-learning guide's reason to keep them frozen.
"""

from __future__ import annotations

import math

from surgery import OpError, hookimpl
from surgery.selectors import SELECTOR_ANY_OF, SELECTOR_PROPERTIES, parse_slice, resolve

FREEZE_SCHEMA = {"type": "object", "properties": dict(SELECTOR_PROPERTIES), "anyOf": SELECTOR_ANY_OF}
UNFREEZE_SCHEMA = {
    "type": "object",
    "properties": {
        **SELECTOR_PROPERTIES,
        "batchnorm": {"enum": ["keep_frozen", "train"], "default": "keep_frozen",
                      "description": "whether BatchNormalization layers in the selection train too"},
    },
    "anyOf": SELECTOR_ANY_OF,
}


def check(params, ctx):
    if "layers" in params:
        parse_slice(params["layers"])


def _is_bn(layer) -> bool:
    return type(layer).__name__ in ("BatchNormalization", "SyncBatchNormalization")


def _sublayers(layer):
    return layer._flatten_layers(include_self=True, recursive=True)


def _params(layers) -> int:
    return sum(math.prod(w.shape) for layer in layers for w in layer.weights)


def _span(layers) -> str:
    return layers[0].name if len(layers) == 1 else f"{layers[0].name} .. {layers[-1].name}"


def freeze(state, params, ctx):
    picked = [state.model.layers[i] for i in resolve(state.model.layers, params)]
    for layer in picked:
        layer.trainable = False
    return state.evolve(f"freeze: {len(picked)} layers ({_span(picked)}), {_params(picked):,} params", model=state.model)


def unfreeze(state, params, ctx):
    picked = [state.model.layers[i] for i in resolve(state.model.layers, params)]
    keep_bn = params.get("batchnorm", "keep_frozen") == "keep_frozen"
    if keep_bn and all(_is_bn(layer) for layer in picked):
        raise OpError('selects only BatchNormalization layers, which unfreeze keeps frozen; '
                      'add "batchnorm": "train" to train them')
    kept_bn = 0
    for layer in picked:
        layer.trainable = True
        if keep_bn:
            for sub in _sublayers(layer):
                if _is_bn(sub):
                    sub.trainable = False
                    kept_bn += 1
    note = f"unfreeze: {len(picked)} layers ({_span(picked)})"
    if kept_bn:
        note += f"; {kept_bn} BatchNormalization layers kept frozen (inference mode)"
    return state.evolve(note, model=state.model)


@hookimpl
def surgery_register_ops(register):
    register("freeze", FREEZE_SCHEMA, freeze, check=check,
             description="Make layers non-trainable, by index range, names, globs or layer types",
             examples=[{"layers": "8:"}, {"names": ["block1_*"]}, {"types": ["BatchNormalization"]}])
    register("unfreeze", UNFREEZE_SCHEMA, unfreeze, check=check,
             description="Make layers trainable again (BatchNormalization stays frozen unless batchnorm=train)",
             examples=[{"layers": "-4:"}, {"names": ["conv5_*"], "batchnorm": "train"}])
