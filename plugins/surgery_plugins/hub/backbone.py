"""The ``keras_hub`` backbone: a KerasHub preset (DINOv2, ViT, DeiT, SigLIP, CLIP, ResNet, ...), block by block.

A preset is a name KerasHub downloads and caches (``dinov2_small``), a handle (``hf://...``,
``kaggle://...``) or a folder ``save_to_preset`` wrote (written with a slash, relative to the spec).
A folder comes from someone else: its ``config.json`` is read bounded and strict, must name a
KerasHub class and is refused if it would run code or read a file, and its weights file is checked
as every weights file is, before TensorFlow starts.
"""

from __future__ import annotations

import importlib.util
import os
import re

from surgery import (
    OpError,
    check_weights_content,
    check_weights_file,
    hookimpl,
    mend_configs,
    one_line,
    register_config_mends,
    shown,
)

from . import catalog, converter
from .blocks import MENDS, unroll
from .preset_files import read_keras_hub_json

CONFIG_LIMIT = 4 * 1024 * 1024
NAME = re.compile(r"^[A-Za-z0-9_.-]+$")  # a KerasHub preset name: dinov2_small, vit_base_patch16_224_imagenet
HANDLE = re.compile(r"^(kaggle|hf|modelscope)://[A-Za-z0-9_./-]+$")
TOWERS = ("vision_encoder", "image_encoder")  # CLIP's and SigLIP's vision tower, SAM's image encoder

OPTIONS = {
    "preset": {
        "type": "string",
        "minLength": 1,
        "format": "folder-or-name",
        "x-required": True,
        "description": "a KerasHub preset name (dinov2_small), a handle (hf://..., kaggle://...), or a folder "
        "save_to_preset wrote, written with a slash (./my_preset), relative to the spec",
    },
    "weights": {
        "description": '"preset" (default): the preset\'s weights; null: its architecture with random weights',
        "default": "preset",
        "anyOf": [{"const": "preset"}, {"type": "null"}],
    },
    "image_shape": {
        "type": "array",
        "items": {"type": "integer", "minimum": 1},
        "minItems": 3,
        "maxItems": 3,
        "description": "[height, width, channels]: the preset's own unless given",
    },
    "preprocess": {
        "type": "boolean",
        "default": True,
        "description": "true (default): the preset's image converter (scale and offset) as a Rescaling layer "
        '"preprocess" at the input, so the model takes raw 0-255 pixels; false: it takes what the converter '
        "makes of them",
    },
    "part": {
        "enum": list(TOWERS),
        "description": "one tower of a multi-tower preset, by KerasHub's attribute: vision_encoder (CLIP, "
        "SigLIP), image_encoder (SAM)",
    },
}


def _folder(preset: str) -> bool:
    return ("/" in preset or "\\" in preset) and "://" not in preset


def check(options):
    """What can be known without TensorFlow: keras-hub installed, a well-formed name, a sound folder."""
    if importlib.util.find_spec("keras_hub") is None:
        raise OpError("the keras_hub backbone needs KerasHub: pip install 'surgery[hub]' (or keras-hub)")
    preset = options["preset"]
    if not _folder(preset):
        if not (NAME.match(preset) or HANDLE.match(preset)):
            raise OpError(
                f'preset: "{preset}" is neither a KerasHub preset name (e.g. dinov2_small), a handle '
                "(hf://org/model, kaggle://owner/model/keras/variant) nor a folder (written with a slash: ./my_preset)"
            )
        return
    config_path = os.path.join(preset, "config.json")
    if not os.path.exists(config_path):
        raise OpError(
            f"preset: {shown(preset)} is not a KerasHub preset folder: it has no config.json "
            "(a preset folder is what backbone.save_to_preset(folder) writes)"
        )
    read_keras_hub_json(config_path, CONFIG_LIMIT, "preset config", "a KerasHub backbone")
    if options.get("preprocess", True):
        converter.check_folder(preset)
    if options.get("weights", "preset") is not None:
        weights = os.path.join(preset, "model.weights.h5")
        if os.path.exists(os.path.join(preset, "model.weights.json")):
            # Its index names the shard files Keras then opens; not checked here yet, so not read.
            raise OpError(
                f"preset: {shown(preset)} holds sharded weights (model.weights.json), which surgery does not "
                "read yet; save the backbone again in one file: save_to_preset(folder, max_shard_size=...) above its size in GB"
            )
        if not os.path.exists(weights):
            raise OpError(
                f'preset: {shown(preset)} has no model.weights.h5; use "weights": null for the architecture alone'
            )
        check_weights_file(weights, error=OpError)


def build(preset, weights="preset", image_shape=None, part=None, preprocess=True):
    import keras_hub

    load_weights = weights is not None
    if _folder(preset) and load_weights:
        check_weights_content(os.path.join(preset, "model.weights.h5"), error=OpError)
    kwargs = {"image_shape": tuple(image_shape)} if image_shape else {}
    try:
        model = keras_hub.models.Backbone.from_preset(preset, load_weights=load_weights, **kwargs)
    except Exception as e:  # noqa: BLE001 (requests, kagglehub, huggingface_hub and Keras each raise their own)
        raise OpError(_load_failure(preset, image_shape, e)) from None
    if part is not None:
        model = _tower(model, part, preset)
    model = unroll(model)
    mend_configs(model)
    if preprocess:
        affine = converter.scale_and_offset(preset, _folder(preset), model.inputs[0].shape[-1])
        if affine is not None and affine != (None, None):
            model = converter.into_model(model, *affine)
    return model


def _tower(model, part, preset):
    tower = getattr(model, part, None)
    if tower is None:
        raise OpError(f'part: "{part}": preset {preset} ({type(model).__name__}) has no {part}; drop "part"')
    return tower


def _load_failure(preset, image_shape, err: Exception) -> str:
    text = one_line(err, 300)
    network = ("Connection", "Timeout", "resolve", "Max retries", "unreachable", "offline", "HTTP")
    if not _folder(preset) and any(word in f"{type(err).__name__} {text}" for word in network):
        return (
            f'could not download the KerasHub preset "{preset}" and no copy is cached: it needs the internet '
            "once (KerasHub caches it), or give a preset folder that save_to_preset wrote (./folder) "
            f"[{text[:160]}]"
        )
    if image_shape and ("shape" in text.lower()):
        return f"preset {preset}: its weights do not fit image_shape {list(image_shape)}: {text}"
    return f"preset {preset}: KerasHub could not load it: {text}"


@hookimpl
def surgery_register_backbones(register):
    register_config_mends("keras_hub", MENDS)  # for the models surgery loads too, not only those it builds
    register(
        "keras_hub",
        build,
        options=OPTIONS,
        check=check,
        description="a KerasHub backbone preset (ViT, DINOv2, SigLIP, CLIP, ResNet, ...), each block a layer",
        presets=catalog.presets,
    )
