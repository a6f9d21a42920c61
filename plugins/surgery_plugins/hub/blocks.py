"""KerasHub backbones rebuilt so that every block is a layer of the functional graph.

ViT, DeiT and DINOv2 keep all their transformer blocks inside one encoder layer, so a spec could
not cut after block 6, freeze blocks 0-5 by name or read block 8's output. Their encoders' ``call``
is a plain loop over the blocks; ``unroll`` calls the same block objects (weights shared, not
copied) one after another in a new functional graph, so each block becomes a layer named as
KerasHub names it. The other families (CLIP, SigLIP, the CNNs) already are such graphs.

Some KerasHub layers write a ``get_config`` their own constructor rejects, so a model holding them
saves but never loads. ``MENDS`` says how to give those layers a config the constructor accepts
(the same class, the keys it refuses dropped or the ones it needs added); registered with surgery
(``register_config_mends``), it is given to the layers of every model surgery builds or loads, so the
``.keras`` file loads with ``keras.saving.load_model(path, safe_mode=True)`` in a Python that has
keras-hub and not surgery. Only the instances change; KerasHub's classes stay as they are.
"""

from __future__ import annotations

import sys

from surgery import keras, make_model, retrace


def _vit_encoder(encoder, x, **_):
    # ViTEncoder.call: dropout, the blocks, the final LayerNormalization.
    x = encoder.dropout(x)
    for block in encoder.encoder_layers:
        x = block(x)
    return [encoder.layer_norm(x)]


def _deit_encoder(encoder, x, **_):
    # DeiTEncoder.call returns (x, hidden states, attention scores); the backbone uses x only. A block
    # returns (x, None) unless asked for its scores, and a graph node's outputs must all be tensors.
    for block in encoder.encoder_layers:
        x = block(x, return_attention_scores=True)[0]
    return [encoder.layer_norm(x)]


def _dinov2_encoder(encoder, x, **_):
    # DINOV2Encoder.call returns (x, {"stage1": ..., ...}); the outputs are listed flat, in the
    # order keras.tree.flatten gives the node's outputs (x, then the stages by sorted key).
    stages = {}
    for k, block in enumerate(encoder.layers, start=1):
        x = block(x)
        stages[f"stage{k}"] = x
    return keras().tree.flatten((x, stages))


def _dinov3_encoder(encoder, x, position_embeddings=None, num_prefix_tokens=0, **_):
    # DINOV3Encoder.call: each block takes the rotary position embeddings and the count of prefix tokens.
    stages = {}
    for k, block in enumerate(encoder.layers, start=1):
        x = block(x, position_embeddings=position_embeddings, num_prefix_tokens=num_prefix_tokens)
        stages[f"stage{k}"] = x
    return keras().tree.flatten((x, stages))


UNROLL = {
    "ViTEncoder": _vit_encoder,
    "DeiTEncoder": _deit_encoder,
    "DINOV2Encoder": _dinov2_encoder,
    "DINOV3Encoder": _dinov3_encoder,
}


def unroll(model):
    """``model`` with each encoder listed in UNROLL replaced by its blocks; ``model`` itself otherwise."""
    if not any(type(layer).__name__ in UNROLL for layer in model.layers):
        return model
    k = keras()
    (old_input,) = model.inputs
    image = k.Input(shape=tuple(old_input.shape[1:]), dtype=old_input.dtype, name=_input_name(model))

    def around(layer):
        recipe = UNROLL.get(type(layer).__name__)
        if recipe is None:
            return layer
        return lambda x, *args, **kwargs: recipe(layer, x, **kwargs)

    outputs = retrace(model, {id(old_input): image}, model.outputs, around=around)
    return make_model(image, outputs, name=model.name)


def _input_name(model) -> str:
    name = model.layers[0].name
    return name if not name.startswith("input_layer") else "images"


def _without(*keys):
    def mend(layer, config):
        return {k: v for k, v in config.items() if k not in keys}

    return mend


def _mit_encoder(layer, config):
    # MiT's block writes its MixFFN object and "drop_prop" (its constructor takes drop_prob) and leaves
    # out sr_ratio and layer_norm_epsilon, which its attention and norms were built with.
    kept = {k: v for k, v in config.items() if k not in ("mlp", "drop_prop")}
    return {
        **kept,
        "drop_prob": layer.drop_prop,
        "sr_ratio": layer.attn.sr_ratio,
        "layer_norm_epsilon": layer.norm1.epsilon,
    }


def _given_class(attribute: str, key: str):
    """For a layer built with a layer class as an argument (Swin's PatchEmbedding its ``norm_layer``, a
    stage its ``downsample``): KerasHub passes the class to serialize_keras_object, which calls the class's
    get_config unbound, so the layer's get_config fails. KerasHub's get_config runs with the class set aside,
    and the class is written as Keras writes a function, by module and name, which the layer's from_config
    turns back into the class through deserialize_keras_object (in safe mode too: it looks up only a
    KerasSaveable class of keras or keras_hub)."""

    def mend(layer, _config):
        given = getattr(layer, attribute)
        setattr(layer, attribute, None)
        try:
            config = type(layer).get_config(layer)
        finally:
            setattr(layer, attribute, given)
        return {**config, key: None if given is None else _class_reference(layer, given)}

    return mend


def _class_reference(layer, given: type) -> dict:
    found = getattr(sys.modules.get(given.__module__), given.__name__, None)
    if (
        given.__module__.split(".")[0] not in ("keras", "keras_hub")
        or found is not given
        or not issubclass(given, keras().layers.Layer)
    ):
        raise TypeError(
            f"{layer.name} was built with {given!r}, not a Keras or KerasHub layer class: it cannot be saved"
        )
    return {"module": given.__module__, "class_name": "function", "config": given.__name__}


# class name -> how to turn the config KerasHub writes into one its constructor accepts
MENDS = {
    "ViTPatchingAndEmbedding": _without("num_patches", "num_positions"),
    "ViTEncoderBlock": _without("key_dim"),
    "DeiTEmbeddings": _without("num_patches", "num_positions"),
    "DeiTEncoderBlock": _without("key_dim"),
    "HierarchicalTransformerEncoder": _mit_encoder,
    "PatchEmbedding": _given_class("norm_layer", "norm_layer"),
    "SwinTransformerStage": _given_class("_downsample_cls", "downsample"),
}
