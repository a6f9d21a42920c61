"""The model that ``features`` and ``predict`` run: a saved ``.keras`` file or a spec built now.

A model trained by ``surgery train`` has ``classes.json`` beside it, which names
its classes and the ``preprocess_input`` its backbone expects, so it is fed
images exactly as in training. Anything else gets ``--preprocess``, or none.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import SpecError, did_you_mean
from ..keras_env import keras
from .data import DataError

SIDECAR = "classes.json"


@dataclass
class Loaded:
    model: object
    preprocess: object  # dotted path, callable or None
    class_names: list | None
    source: str


def sidecar(model_path: Path) -> dict:
    path = model_path.parent / SIDECAR
    if not path.is_file():
        return {}
    try:
        found = json.loads(path.read_text())
    except ValueError as e:
        raise DataError(f"not valid JSON ({e})", file=str(path)) from None
    return found if isinstance(found, dict) else {"class_names": found}


def preprocess_named(name: str, registry):
    """``--preprocess``: a backbone's name (its preprocess_input), a dotted path, or "none"."""
    if name.lower() == "none":
        return None
    if name in registry.backbones:
        return registry.backbones[name].preprocess
    if "." in name:
        return name
    raise SpecError(f'unknown backbone "{name}"' + did_you_mean(name, registry.backbones), where="--preprocess")


def load(path: str, plugins, load_spec, *, weights=None, preprocess: str | None = None) -> Loaded:
    """``path`` is a ``.keras`` model or a spec; ``load_spec(path, plugins, weights)`` validates a spec."""
    p = Path(path)
    if p.suffix == ".keras":
        if not p.is_file():
            raise DataError("no such model file", file=path)
        if weights is not None:
            raise SpecError("--weights applies to a spec, not to a saved model", file=path)
        k = keras()
        try:
            model = k.saving.load_model(str(p), safe_mode=True, compile=False)
        except Exception as e:
            raise DataError(f"cannot be loaded as a Keras model: {type(e).__name__}: {str(e)[:300]}",
                            file=path) from None
        side = sidecar(p)
        loaded = Loaded(model, side.get("preprocess"), side.get("class_names"), path)
    else:
        from ..executor import run_steps

        spec = load_spec(path, plugins, weights)
        state = run_steps(spec, plugins.registry)
        loaded = Loaded(state.model, state.preprocess, None, path)
    if preprocess is not None:
        loaded.preprocess = preprocess_named(preprocess, plugins.registry)
    return loaded


def cut_at(model, layer_name: str):
    """The model up to a named layer's output (the standalone feature extractor of the seeds)."""
    names = [layer.name for layer in model.layers]
    if layer_name not in names:
        raise SpecError(f'no layer named "{layer_name}"' + did_you_mean(layer_name, names), where="--layer")
    return keras().Model(model.inputs, model.get_layer(layer_name).output, name=f"{model.name}_{layer_name}")
