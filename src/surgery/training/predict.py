"""``surgery predict``: the classifier mode, top-k classes for each image.

Class names come from, in order: ``--classes FILE``; ``classes.json`` beside a
model that ``surgery train`` wrote; ImageNet's names for a 1000-class output
(Keras' ``imagenet_class_index.json``, which ``decode_predictions`` downloads on
first use: offline and not cached, we say so and show indices); else indices.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import SpecError, one_line
from ..io.files import read_json
from ..keras_env import keras, keras_cache_dir, native_stderr_muted
from . import pipeline
from .data import check_class_names
from .models import SIDECAR_LIMIT
from .stages import output_activation

IMAGENET_CLASSES = 1000
IMAGENET_INDEX = "imagenet_class_index.json"
# Where keras.applications.imagenet_utils.decode_predictions gets it (CLASS_INDEX_PATH there).
IMAGENET_INDEX_URL = "https://storage.googleapis.com/download.tensorflow.org/data/imagenet_class_index.json"


@dataclass
class Names:
    names: list | None
    origin: str  # what they are, for the report
    note: str | None = None  # said on stderr: why there are no names


def imagenet_names() -> Names:
    """ImageNet's 1000 class names from Keras' cache, downloading the index as decode_predictions would."""
    cached = keras_cache_dir() / IMAGENET_INDEX
    if not cached.is_file():
        try:
            # get_file announces the download on stdout, which is this command's output.
            with native_stderr_muted(), contextlib.redirect_stdout(io.StringIO()):
                keras().utils.get_file(
                    IMAGENET_INDEX,
                    IMAGENET_INDEX_URL,
                    cache_dir=str(cached.parent.parent),
                    cache_subdir=cached.parent.name,
                )
        except Exception as e:  # noqa: BLE001 (a download fails in many ways; offline is expected)
            reason = one_line(e, 160)
            return Names(
                None,
                "indices",
                f"ImageNet class names are not available offline: Keras downloads "
                f"{IMAGENET_INDEX} on first use (as decode_predictions does) and could not ({reason}), "
                f"and no copy is cached in {cached.parent}; showing class indices. Connect to the "
                "internet once, or copy the file there",
            )
    index = read_json(cached, SIDECAR_LIMIT, what=IMAGENET_INDEX, error=SpecError)
    try:
        return Names([str(index[str(i)][1]) for i in range(IMAGENET_CLASSES)], "ImageNet")
    except (KeyError, IndexError, TypeError):
        raise SpecError(
            "is not Keras' ImageNet class index; delete it and Keras downloads it again", file=str(cached)
        ) from None


def read_classes(path: str, units: int) -> Names:
    p = Path(path)
    found = read_json(p, SIDECAR_LIMIT, "--classes", what="class names file", error=SpecError)
    names = found.get("class_names") if isinstance(found, dict) else found
    if not isinstance(names, list):
        raise SpecError('expected a JSON list of names, or an object with "class_names"', file=path, where="--classes")
    if len(names) != units:
        raise SpecError(f"names {len(names)} classes but the model outputs {units}", file=path, where="--classes")
    return Names(check_class_names(names, path, "--classes", error=SpecError), p.name)


def class_names(loaded, units: int, classes_file: str | None) -> Names:
    if classes_file:
        return read_classes(classes_file, units)
    if loaded.class_names is not None:
        if len(loaded.class_names) != units:
            # The same refusal as --classes: names for another model would label every score wrongly.
            raise SpecError(
                f"names {len(loaded.class_names)} classes but the model outputs {units}; "
                "give the right names with --classes",
                file=str(Path(loaded.source).parent / "classes.json"),
            )
        return Names(list(loaded.class_names), "classes.json")
    if units == IMAGENET_CLASSES:
        return imagenet_names()
    return Names(None, "indices")


def _check_classifier(model, source: str) -> None:
    outputs = model.outputs
    if len(outputs) != 1:
        raise SpecError(
            f"the model has {len(outputs)} outputs; predict needs a classifier with one "
            "(use `surgery features` for other outputs)",
            file=source,
        )
    if len(outputs[0].shape) != 2:
        raise SpecError(
            f"the model's output has shape {tuple(outputs[0].shape)}, not (batch, classes); "
            "predict needs a classifier (use `surgery features` for other outputs)",
            file=source,
        )


def _scores(model, batch):
    k = keras()
    out = np.asarray(k.ops.convert_to_numpy(model.predict(batch, verbose=0)), dtype="float64")
    activation = output_activation(model)
    if out.shape[1] == 1:  # one sigmoid unit: two classes
        p = out[:, 0] if activation == "sigmoid" else 1 / (1 + np.exp(-out[:, 0]))
        return np.stack([1 - p, p], axis=1), "probability"
    return out, ("probability" if activation == "softmax" else "logit")


def predict(loaded, images: list[str], top: int, classes_file: str | None = None) -> dict:
    _check_classifier(loaded.model, loaded.source)
    image = loaded.image()
    batch = pipeline.load_images(images, image, loaded.prep)
    scores, kind = _scores(loaded.model, batch)
    names = class_names(loaded, scores.shape[1], classes_file)
    results = []
    for path, row in zip(images, scores):
        order = np.argsort(-row, kind="stable")[:top]
        results.append(
            {
                "image": path,
                "top": [
                    {"index": int(i), "name": names.names[i] if names.names else str(int(i)), kind: float(row[i])}
                    for i in order
                ],
            }
        )
    return {"names": names, "score": kind, "results": results}
