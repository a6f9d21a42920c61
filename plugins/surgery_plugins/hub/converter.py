"""A preset's image converter (its scale and offset) as a Rescaling layer at the model's input.

KerasHub feeds its backbones what the preset's ``ImageConverter`` makes of the pixels (``x * scale +
offset``: ViT and SigLIP to [-1, 1], DINOv2 and CLIP standardised by their own means and deviations).
A spec's model takes raw 0-255 pixels instead, as keras.applications models with the ``preprocess``
op do, so the ``.keras`` file, the ONNX file and ``surgery train`` cannot disagree on the scaling.
Resizing stays with the data pipeline, which brings images to the model's input size.

A folder's ``image_converter.json`` is read as untrusted data (bounded, strict, a KerasHub class, no
code or file arguments) and only its numbers are used; nothing in it is deserialised.
"""

from __future__ import annotations

import math
import os

from surgery import (
    OpError,
    keras,
    make_model,
    one_line,
    retrace,
    shown,
)

from .preset_files import read_keras_hub_json

FILE = "image_converter.json"
LIMIT = 1024 * 1024


def _numbers(value, key: str, where: str, channels: int | None):
    """A converter's scale or offset: None, one number, or one per channel."""
    if value is None:
        return None
    values = value if isinstance(value, list) else [value]
    if (
        not values
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values)
        or (len(values) > 1 and channels is not None and len(values) != channels)
    ):
        raise OpError(f"preset: {where}: {key} must be a number or one number per channel, got {str(value)[:80]}")
    return [float(v) for v in values] if len(values) > 1 else float(values[0])


def check_folder(preset: str) -> None:
    """The folder's converter config, if it has one, before TensorFlow starts."""
    path = os.path.join(preset, FILE)
    if os.path.exists(path):
        _read(path)


def _read(path: str, channels: int | None = None):
    config = read_keras_hub_json(path, LIMIT, "image converter config", "a KerasHub image converter")
    inner = config["config"]
    where = shown(path)
    return _numbers(inner.get("scale"), "scale", where, channels), _numbers(
        inner.get("offset"), "offset", where, channels
    )


def scale_and_offset(preset: str, folder: bool, channels: int):
    """(scale, offset) of the preset's image converter; None where it has none."""
    if folder:
        path = os.path.join(preset, FILE)
        return _read(path, channels) if os.path.exists(path) else None
    import keras_hub

    try:
        converter = keras_hub.layers.ImageConverter.from_preset(preset)
    except (ValueError, FileNotFoundError):  # KerasHub's words for "this preset has no image converter"
        return None
    except Exception as e:  # noqa: BLE001 (a download failing half-way: never a silently unscaled model)
        raise OpError(f'preset "{preset}": its image converter could not be loaded: {one_line(e, 200)}') from None
    where = f'the image converter of preset "{preset}"'
    return _numbers(_plain(converter.scale), "scale", where, channels), _numbers(
        _plain(converter.offset), "offset", where, channels
    )


def _plain(value):
    if value is None or isinstance(value, (int, float)):
        return value
    return [float(v) for v in list(value)]


def into_model(model, scale, offset):
    """``model`` behind ``Rescaling(scale, offset)`` named "preprocess": it takes raw 0-255 pixels."""
    k = keras()
    (old,) = model.inputs
    image = k.Input(shape=tuple(old.shape[1:]), dtype=old.dtype, name=model.layers[0].name)
    x = k.layers.Rescaling(1.0 if scale is None else scale, 0.0 if offset is None else offset, name="preprocess")(image)
    return make_model(image, retrace(model, {id(old): x}, model.outputs), name=model.name)
