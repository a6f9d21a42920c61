"""``surgery features``: the standalone feature extractor, run over a dataset into one ``.npz``.

The file holds ``features`` (N x the model's output shape), ``labels`` (N class
indices), ``class_names`` and ``files`` (the image paths relative to the data
folder, or the npz's own ``files`` / ``name[i]``), so a separate model can train
on it, as in the tutorials' "extract features, then fit another classifier".
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import SpecError
from ..io import writing
from . import data, pipeline


def check_output(out: str, force: bool, inputs=()) -> Path:
    path = Path(out)
    if path.suffix != ".npz":
        raise SpecError("the output must be an .npz file path (features.npz)", file=out, where="-o")
    writing.check_output(path, force, "-o", inputs=inputs)
    return path


def extract(loaded, source: data.Source, out: Path, *, batch_size: int, verbose, force: bool = False) -> dict:
    """Run ``loaded.model`` over every image of ``source`` in order; write and return the arrays."""
    image = loaded.image()
    if source.kind == "folder":
        pipeline.check_readable(source.files, image)
    images, labels = pipeline.ordered(source, image, loaded.prep, batch_size)
    features = loaded.model.predict(images, verbose=verbose)
    if isinstance(features, (list, tuple)):
        raise SpecError(f"the model has {len(features)} outputs; features needs one (choose one with --layer)")
    files = [os.path.relpath(f, source.path) for f in source.files] if source.kind == "folder" else list(source.files)
    arrays = {
        "features": np.asarray(features).astype("float32"),  # bfloat16 has no numpy file format
        "labels": np.asarray(labels, dtype="int64"),
        "class_names": np.array(source.class_names, dtype=str),
        "files": np.array(files, dtype=str),
    }
    # A file object, so that numpy does not add a second .npz suffix to the temporary name.
    with writing.atomic_output(out, force) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)  # type: ignore[arg-type]  # numpy's stubs take the first keyword for allow_pickle
    return arrays
