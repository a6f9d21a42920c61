"""The model that ``features`` and ``predict`` run: a saved ``.keras`` file or a spec built now.

A model trained by ``surgery train`` has ``classes.json`` beside it, which names
its classes and the preprocessing its backbone expects (by the backbone's name,
see ``surgery.model.preprocessing``), so it is fed images exactly as in training.
Anything else gets ``--preprocess``, or none. The sidecar is someone else's
data: it is read bounded and checked field by field, and nothing it names is
imported.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import SpecError, did_you_mean
from ..io.files import MIB, read_json
from ..io.model_files import load_model
from ..keras_env import keras
from ..model import preprocessing
from .data import DataError, check_class_names

SIDECAR = "classes.json"
SIDECAR_LIMIT = 16 * MIB  # a million class names fit


@dataclass
class Loaded:
    model: Any
    preprocess: str | None  # a backbone name or mode (surgery.model.preprocessing), or None
    class_names: list | None
    source: str
    prep: Any = None  # the preprocessing function ``preprocess`` names, resolved by ``load``
    tensors: dict = field(default_factory=dict)  # a spec's named tensors ("as"), for features --layer
    image_size: tuple | None = None  # --image-size: for a model whose input size is not fixed
    trained_size: tuple | None = None  # the size classes.json says the model was trained at

    def image(self):
        """The images the model takes: its own fixed size, else --image-size, else the size it was trained at."""
        from .pipeline import ImageSpec

        size = self.image_size
        if size is None and None in tuple(self.model.inputs[0].shape)[1:3]:
            size = self.trained_size
        return ImageSpec.of(self.model, size, file=self.source, option="--image-size")


@dataclass
class Sidecar:
    class_names: list | None = None
    preprocess: str | None = None
    input_shape: list | None = None


def read_sidecar(path: Path, registry) -> Sidecar:
    """``classes.json``: class names, the preprocessing by name and the input shape, each checked."""
    found = read_json(path, SIDECAR_LIMIT, what=SIDECAR, error=DataError)
    if isinstance(found, list):  # a bare list of class names
        found = {"class_names": found}
    if not isinstance(found, dict):
        raise DataError('expected an object with "class_names" (a list of names) and "preprocess"', file=str(path))
    unknown = sorted(set(found) - {"class_names", "preprocess", "input_shape"})
    if unknown:
        raise DataError(
            f'unknown key "{unknown[0]}"; a {SIDECAR} has class_names, preprocess, input_shape', file=str(path)
        )
    names = found.get("class_names")
    if names is not None and (not isinstance(names, list) or not all(isinstance(n, str) for n in names)):
        raise DataError("class_names must be a list of strings", file=str(path))
    if names is not None:
        check_class_names(names, str(path), None)
    shape = found.get("input_shape")
    if shape is not None and (
        not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape)
    ):
        raise DataError("input_shape must be a list of positive integers", file=str(path))
    prep = preprocessing.canonical(found.get("preprocess"), registry, file=str(path), error=DataError)
    return Sidecar(names, prep, shape)


def sidecar_beside(model_path: Path, registry) -> Sidecar:
    path = model_path.parent / SIDECAR
    return read_sidecar(path, registry) if path.exists() else Sidecar()


def run_model(folder: Path) -> Path | None:
    """The final model of a run folder surgery wrote (the one its marker names), else its best.keras."""
    from ..io.writing import MARKER, is_surgery_folder

    if not is_surgery_folder(folder, "run"):
        return None
    try:
        name = json.loads((folder / MARKER).read_text()).get("model", "")
    except (OSError, ValueError, AttributeError):
        name = ""
    plain = isinstance(name, str) and name.endswith(".keras") and "/" not in name
    for candidate in ([folder / name] if plain else []) + [folder / "best.keras"]:
        if candidate.is_file():
            return candidate
    return None


def load(
    path: str,
    plugins,
    *,
    weights=None,
    preprocess: str | None = None,
    compile: bool = False,
    image_size: tuple | None = None,
) -> Loaded:
    """``path`` is a ``.keras`` model, a run folder or a spec (``weights`` overrides a spec's, as ``--weights``
    does). ``compile``: with the loss and metrics it was trained with (to evaluate it). ``image_size``: what
    ``--image-size`` gave, for a model whose input size is not fixed."""
    p = Path(path)
    found = run_model(p) if p.is_dir() else None
    if found is not None:
        p, path = found, str(found)
    if p.is_dir():
        raise DataError(
            "is a folder; give a .keras model file (a run folder's model is <name>.keras or best.keras in "
            "it) or a spec (.json)",
            file=path,
        )
    if p.suffix == ".keras":
        if not p.exists():
            raise DataError("no such model file", file=path)
        if weights is not None:
            raise SpecError("--weights applies to a spec, not to a saved model", file=path)
        side = sidecar_beside(p, plugins.registry)  # before the model: a bad sidecar costs no TensorFlow start
        loaded = Loaded(load_model(p, error=DataError, compile=compile), side.preprocess, side.class_names, path)
        if side.input_shape is not None and len(side.input_shape) == 3:
            loaded.trained_size = tuple(side.input_shape[:2])
    elif p.suffix == ".json":
        from ..executor import run_steps
        from ..spec.loading import load_spec

        spec = load_spec(path, plugins.registry, plugins.broken, weights=weights)
        loaded = built(run_steps(spec, plugins.registry), path)
    else:
        raise DataError("is neither a Keras model (.keras) nor a spec (.json)", file=path)
    if preprocess is not None:
        loaded.preprocess = preprocessing.canonical(preprocess, plugins.registry, where="--preprocess")
    loaded.prep = preprocessing.function(loaded.preprocess, plugins.registry)
    loaded.image_size = tuple(image_size) if image_size is not None else None
    return loaded


def built(state, source: str) -> Loaded:
    """A model a spec built (its ``State``): fed as its backbone expects unless a ``preprocess`` step put
    the preprocessing inside; no class names (a spec has no data)."""
    loaded = Loaded(
        state.model, state.backbone if state.preprocess is not None else None, None, source, tensors=dict(state.tensors)
    )
    loaded.prep = state.preprocess
    return loaded


def cut_at(loaded: Loaded, name: str):
    """The model up to a named layer's output, or a tensor a spec named with "as" (the standalone feature
    extractor of the tutorials)."""
    model = loaded.model
    named = {n: t for n, t in loaded.tensors.items() if not n.startswith("#")}
    if name in named:
        return keras().Model(model.inputs, named[name], name=f"{model.name}_{name}")
    names = [layer.name for layer in model.layers]
    if name not in names:
        what = "layer or named tensor" if named else "layer named"
        raise SpecError(f'no {what} "{name}"' + did_you_mean(name, names + list(named)), where="--layer")
    return keras().Model(model.inputs, model.get_layer(name).output, name=f"{model.name}_{name}")
