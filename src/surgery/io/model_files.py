"""Loading a ``.keras`` file that may come from someone else: the one loader every command uses.

Before Keras sees the file, and without importing TensorFlow, the archive is
checked (a regular file, a zip whose members declare sane sizes: a 1 MB
file must not become a 1 GiB ``config.json`` in memory) and its config is read
and refused if it holds a layer that runs code stored in the file (Lambda) or
names a file for Keras to read (a lookup layer's ``vocabulary`` path). Then
Keras loads it with ``safe_mode=True`` and without compiling, and its errors
become one line.
"""

from __future__ import annotations

import contextlib
import json
import os
import re

from ..errors import SurgeryError, one_line, shown
from ..spec.layer_catalog import CODE_CLASSES, file_arguments, nested_class_names
from .files import MIB, FileError, check_archive, check_hdf5, check_hdf5_links, read_member
from .keras_state import mend_configs, refreeze, restore

CONFIG = "config.json"
MEMBER_LIMITS = {CONFIG: 64 * MIB, "metadata.json": 1 * MIB}
NOT_A_MODEL = 'is not a Keras model file (a .keras file is a zip archive, as model.save("name.keras") writes it)'


class ModelFileError(SurgeryError):
    """A model file that cannot or must not be loaded."""


def _refused_code(path) -> str:
    return (
        f"{shown(path)}: refused: the model contains a layer that runs Python code stored in the file "
        "(e.g. a Lambda); surgery loads models with safe_mode=True, since a spec must not run code. "
        "Rebuild the model without it, or register the layer from a plugin"
    )


def check_model_file(path: str | os.PathLike, *, error=ModelFileError) -> dict:
    """The model's config, read from a checked archive; no TensorFlow. Raises ``error`` with one line."""
    try:
        check_archive(path, limits=MEMBER_LIMITS)
        raw = read_member(path, CONFIG, MEMBER_LIMITS[CONFIG])
    except FileError as e:
        reason = e.message if "not a zip archive" not in e.message else NOT_A_MODEL
        raise error(f"{shown(path)}{' ' if reason.startswith('is ') else ': '}{reason}") from None
    if raw is None:
        raise error(f"{shown(path)} is not a Keras model file: the archive has no {CONFIG}")
    try:
        config = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise error(f"{shown(path)} is not a Keras model file: its {CONFIG} is not valid JSON") from None
    if not isinstance(config, dict):
        raise error(f"{shown(path)} is not a Keras model file: its {CONFIG} is not an object")
    check_model_config(config, path, error=error)
    return config


def check_model_config(config: dict, path: str | os.PathLike, *, error=ModelFileError) -> None:
    """Refuse a model config (a ``.keras`` file's, a KerasHub preset's) that would run code stored in
    it or make Keras read a file it names; ``path`` is the file it came from, for the error line."""
    if any(name in CODE_CLASSES for name in nested_class_names(config)):
        raise error(_refused_code(path))
    for where in file_arguments(config, CONFIG):
        raise error(
            f"{shown(path)}: refused: {where} names a file for Keras to read (a lookup layer's vocabulary "
            "path); a model file may not make surgery read other files. Save the model with the "
            "vocabulary inside it (as a list)"
        )


def load_model(path: str | os.PathLike, *, error=ModelFileError, compile: bool = False):
    """A ``keras.Model`` from a checked ``.keras`` file, loaded with ``safe_mode=True`` (compiled only when asked:
    a checkpoint to resume carries its optimizer's state)."""
    from ..keras_env import keras

    config = check_model_file(path, error=error)
    k = keras()
    try:
        with _safe_mode():
            model = k.saving.load_model(str(path), safe_mode=True, compile=compile)
    except Exception as e:  # Keras and h5py raise many types; each becomes one line  # noqa: BLE001 (Keras and h5py raise many types; each becomes one line)
        raise error(_load_failure(path, e)) from None
    refreeze(model)
    restore(model, config)
    mend_configs(model)  # a layer's config its own class cannot read (KerasHub's ViT): saved again, it loads back
    return model


def _safe_mode() -> contextlib.AbstractContextManager:
    """Safe mode for one load, whatever the process set. Keras lets a global flag override load_model's
    ``safe_mode=True``, and ``keras.config.enable_unsafe_deserialization()`` (a plugin, a notebook cell, the
    user's own code around ``surgery.build``) sets it for the whole process: a spec's model could then run the
    code stored in it. Keras has no public way to scope the flag; its own SafeModeScope does it."""
    try:
        from keras.src.saving.serialization_lib import SafeModeScope
    except ImportError:  # a Keras that moved it: load_model's argument alone, as before
        return contextlib.nullcontext()
    return SafeModeScope(True)


def _load_failure(path, e: Exception) -> str:
    text = one_line(e, None)
    if "arbitrary code" in text or "unsafe" in text.lower() or "safe_mode" in text:
        return _refused_code(path)
    missing = re.search(r"Could not locate (?:class|function) '([^']+)'", text)
    if missing:
        registered = re.search(r"'registered_name': '([^']*>" + re.escape(missing.group(1)) + ")'", text)
        name = registered.group(1) if registered else missing.group(1)
        return (
            f'{shown(path)} holds a layer of class "{name}" that is not registered in this Python (a custom '
            "class): install the package or plugin that registers it, or rebuild the model from built-in "
            "layers"
        )
    return f"{shown(path)} is not a Keras model file: {type(e).__name__}: {text[:300]}"


WEIGHTS_SUFFIXES = (".weights.h5", ".h5", ".hdf5", ".keras")


def _prefixed(where: str, message: str) -> str:
    return f"{where}{' ' if message.startswith('is ') else ': '}{message}"


def check_weights_file(path: str | os.PathLike, *, error=ModelFileError) -> None:
    """A weights file Keras' ``load_weights`` takes, checked before TensorFlow starts: its suffix, and an
    HDF5 signature (``.h5``) or a checked archive (``.keras``). A FIFO, an empty or a foreign file is one line."""
    where = f'weights: "{shown(path)}"'
    if not str(path).endswith(WEIGHTS_SUFFIXES):
        raise error(f"{where} is not a weights file Keras loads: the name must end in " + ", ".join(WEIGHTS_SUFFIXES))
    try:
        if str(path).endswith(".keras"):
            check_model_file(path)
        else:
            check_hdf5(path)
    except SurgeryError as e:
        raise error(_prefixed(where, e.message)) from None


def check_weights_content(path: str | os.PathLike, *, error=ModelFileError) -> None:
    """The deep check of an HDF5 weights file before Keras reads it (h5py, no TensorFlow): damaged, or
    reaching outside itself through an external link."""
    if str(path).endswith(".keras"):
        return
    try:
        check_hdf5_links(path)
    except SurgeryError as e:
        raise error(_prefixed(f'weights: "{shown(path)}"', e.message)) from None
