"""Training data as tf.data pipelines: decode and resize (``keras.utils.image_dataset_from_directory`` for
folders), the backbone's preprocessing, cache, shuffle, batch, prefetch.

Called only once a model is being trained or run; ``data.inspect`` has checked the paths without TensorFlow.
"""

from __future__ import annotations

import contextlib
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .data import COLOR_MODES, SHOWN_BAD_FILES, SHUFFLE_BUFFER, DataError, Source, check_image


@dataclass(frozen=True)
class ImageSpec:
    """What the model's input asks of an image: size and channels."""

    height: int
    width: int
    channels: int

    @classmethod
    def of(cls, model, image_size=None, *, file: str | None = None, option: str = "train.image_size") -> ImageSpec:
        """The images ``model`` takes; ``image_size`` (what ``option`` gave) sizes a model that does not fix
        its own. ``file`` is the command's input the model came from, named in every refusal."""
        shape = tuple(model.inputs[0].shape)
        if len(model.inputs) != 1 or len(shape) != 4:
            raise DataError(
                f"the model's input is {shape if len(model.inputs) == 1 else f'{len(model.inputs)} tensors'}; "
                "surgery feeds images to a model with one (batch, height, width, channels) input",
                file=file,
            )
        fixed = shape[1:3]
        if image_size is not None and None not in fixed and tuple(image_size) != tuple(fixed):
            raise DataError(
                f"{option} {_size(image_size)} does not apply: the model's input is fixed at {_size(fixed)}; "
                f"leave {option} out (images are resized to {_size(fixed)})",
                file=file,
            )
        h, w = image_size or fixed
        if h is None or w is None:
            raise DataError(
                f"the model's input size is not fixed ({_size(fixed)}); give {option} HEIGHT WIDTH, "
                "the size it was trained at",
                file=file,
            )
        if shape[3] not in COLOR_MODES:
            raise DataError(f"the model's input has {shape[3]} channels; images have 1, 3 or 4", file=file)
        return cls(int(h), int(w), int(shape[3]))

    @property
    def color_mode(self) -> str:
        return COLOR_MODES[self.channels]

    @property
    def shape(self) -> tuple:
        return (self.height, self.width, self.channels)


def _size(hw) -> str:
    return "x".join("None" if d is None else str(d) for d in hw)


def _tf():
    from ..keras_env import keras

    keras()
    import tensorflow as tf

    return tf


def decode(tf, path, image: ImageSpec):
    """One image file -> float32 (H, W, C), exactly as image_dataset_from_directory reads it (bilinear resize)."""
    img = tf.io.decode_image(tf.io.read_file(path), channels=image.channels, expand_animations=False)
    img = tf.image.resize(img, (image.height, image.width), method="bilinear")
    img.set_shape(image.shape)
    return img


def check_readable(files: list, image: ImageSpec) -> None:
    """Decode every image once, in parallel, so a bad file stops the run before it starts, by name."""
    if not files:
        return
    tf = _tf()
    paths = [str(f) for f in files]
    ds = tf.data.Dataset.from_tensor_slices(paths)
    # Use the pixels: from a shape alone, which is static after the resize, tf.data would prune the decode.
    ds = ds.map(lambda p: (p, tf.reduce_max(decode(tf, p, image))), num_parallel_calls=tf.data.AUTOTUNE)
    readable = {p.decode() for p, _ in ds.ignore_errors().as_numpy_iterator()}
    bad = [p for p in paths if p not in readable]
    if bad:
        shown = ", ".join(bad[:SHOWN_BAD_FILES]) + (f" and {len(bad) - SHOWN_BAD_FILES} more" if len(bad) > 3 else "")
        raise DataError(
            f"{len(bad)} of {len(paths)} image files cannot be read as images: {shown}; delete or replace them"
        )


def check_npz_shape(source: Source, image: ImageSpec) -> np.ndarray:
    """x as float32 (N, H, W, C) for this model; a missing channel axis is added for one-channel models."""
    x, _ = source.arrays()
    if x.ndim == 3 and image.channels == 1:
        x = x[..., None]
    if tuple(x.shape[1:]) != image.shape:
        raise DataError(
            f"x holds images of shape {tuple(source.arrays()[0].shape[1:])} but the model's input is {image.shape}",
            file=str(source.path),
        )
    if not (np.issubdtype(x.dtype, np.number) or x.dtype == bool):
        raise DataError(f"x must be numeric, got dtype {x.dtype}", file=str(source.path))
    return x.astype("float32")


def _unbatched(source: Source, image: ImageSpec):
    """A dataset given from Python as (image, label) elements, unbatched if it came in batches."""
    ds = source.dataset
    if len(ds.element_spec[0].shape) == len(image.shape) + 1:
        ds = ds.unbatch()
    given = ds.element_spec[0].shape.as_list()
    if len(given) != len(image.shape) or any(None not in (g, m) and g != m for g, m in zip(given, image.shape)):
        raise DataError(
            f"the dataset's images have shape {tuple(given)} but the model's input is {image.shape}",
            file=str(source.path),
        )
    tf = _tf()
    return ds.map(lambda x, y: (tf.cast(x, "float32"), tf.cast(tf.reshape(y, ()), "int64")))


def _images_and_labels(source: Source, image: ImageSpec, seed: int, split: float = 0.0):
    """Unbatched (image, label) datasets, shuffled once by seed: (train, validation or None).

    A dataset given from Python is taken as it is (its own order; no split: give validation data)."""
    tf = _tf()
    if source.kind == "dataset":
        return _unbatched(source, image), None
    if source.kind == "folder" and source.drawn:  # some of the folder's files (samples_per_class): by name
        order = np.random.default_rng(seed).permutation(len(source.files))
        paths = tf.constant([str(source.files[i]) for i in order])
        labels = tf.constant(source.labels()[order].astype("int32"))
        ds = tf.data.Dataset.from_tensor_slices((paths, labels))
        return ds.map(lambda p, y: (decode(tf, p, image), y), num_parallel_calls=tf.data.AUTOTUNE), None
    if source.kind == "npz":
        x = check_npz_shape(source, image)
        y = source.arrays()[1]
        order = np.random.default_rng(seed).permutation(len(x))
        n_val = int(len(x) * split)
        cut = len(x) - n_val
        train = tf.data.Dataset.from_tensor_slices((x[order[:cut]], y[order[:cut]]))
        val = tf.data.Dataset.from_tensor_slices((x[order[cut:]], y[order[cut:]])) if n_val else None
        return train, val
    from ..keras_env import keras

    k = keras()
    common = {
        "labels": "inferred",
        "label_mode": "int",
        "class_names": source.class_names,
        "color_mode": image.color_mode,
        "batch_size": None,
        "image_size": (image.height, image.width),
        "shuffle": True,
        "seed": seed,
        "verbose": False,
    }
    # Keras prints "Using N files for training" whatever verbose says; the run reports its own counts.
    with contextlib.redirect_stdout(io.StringIO()):
        if split > 0:
            return tuple(
                k.utils.image_dataset_from_directory(str(source.path), validation_split=split, subset="both", **common)
            )
        return k.utils.image_dataset_from_directory(str(source.path), **common), None


def _prepared(ds, prep, cache: bool, classes: int | None = None):
    """Preprocessed images in the order the pipeline shuffles them from (what a feature cache runs over);
    labels one-hot when ``classes`` is given (for label smoothing and the probability metrics)."""
    tf = _tf()
    if prep is not None:
        ds = ds.map(lambda x, y: (prep(x), y), num_parallel_calls=tf.data.AUTOTUNE)
    if classes is not None:
        ds = ds.map(lambda x, y: (x, tf.one_hot(y, classes)), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.cache() if cache else ds


def _shuffled(ds, n: int, seed: int):
    return ds.shuffle(min(n, SHUFFLE_BUFFER), seed=seed, reshuffle_each_iteration=True)


def _batched(ds, batch_size: int):
    return ds.batch(batch_size).prefetch(_tf().data.AUTOTUNE)


@dataclass
class Datasets:
    train: Any
    validation: Any | None
    n_train: int
    n_validation: int
    class_names: list
    batch_size: int = 32
    # Unbatched preprocessed images before the shuffle, and the shuffle's twin over their indices (the same
    # seed and buffer, made under the same global seed, so the same order): what a feature cache needs to
    # feed the same batches as the training pipeline.
    train_images: Any = None
    validation_images: Any = None
    train_order: Any = None


def datasets(
    train_src: Source,
    val_src: Source | None,
    image: ImageSpec,
    prep,
    *,
    split: float,
    batch_size: int,
    seed: int,
    cache: bool,
    one_hot: bool = False,
) -> Datasets:
    """The training and validation pipelines (``prep``: the preprocessing function or None).

    Files were checked by ``check_readable`` beforehand."""
    train, val = _images_and_labels(train_src, image, seed, split)
    if val_src is not None:
        val, _ = _images_and_labels(val_src, image, seed)
    n_train = _count(train, train_src)
    n_val = _count(val, val_src) if val is not None else 0
    if split > 0 and n_val == 0:
        raise DataError(
            f"a validation split of {split:g} of {len(train_src)} images leaves no validation image; "
            "add images, raise the split, or give separate validation data",
            file=str(train_src.path),
        )
    if n_train == 0:
        raise DataError(f"a validation split of {split:g} leaves no training image", file=str(train_src.path))
    classes = len(train_src.class_names) if one_hot else None
    train_images = _prepared(train, prep, cache, classes)
    val_images = _prepared(val, prep, cache, classes) if val is not None else None
    return Datasets(
        _batched(_shuffled(train_images, n_train, seed), batch_size),
        _batched(val_images, batch_size) if val is not None else None,
        n_train,
        n_val,
        train_src.class_names,
        batch_size,
        train_images,
        val_images,
        _shuffled(_tf().data.Dataset.range(n_train), n_train, seed),
    )


def iterators_per_epoch(ds) -> int:
    """How many iterators ``fit`` makes of ``ds`` per epoch: Keras' EpochIterator makes one at the start of an
    epoch and, when it knows the dataset's length, another at its end (tests/test_sweep.py holds Keras to it)."""
    return 2 if int(ds.cardinality()) >= 0 else 1


def skip_epochs(sets: Datasets, epochs: int) -> None:
    """Bring a resumed run's shuffles to where an uninterrupted run's were after ``epochs`` epochs.

    A shuffle that reshuffles each iteration draws its next order when an iterator is made; making the
    iterators ``fit`` would have made, without reading from them, costs no image. So a run resumed within a
    stage whose batches all come from one pipeline (the images, or the feature cache's order) trains on the
    batches the uninterrupted run trained on."""
    for ds in (sets.train, sets.train_order):
        if ds is not None:
            for _ in range(epochs * iterators_per_epoch(ds)):
                iter(ds)


def _count(ds, source: Source | None) -> int:
    """How many images a dataset holds; one given from Python may not know (its labels were counted)."""
    n = int(ds.cardinality())
    return n if n >= 0 else len(source) if source is not None else 0


def ordered(source: Source, image: ImageSpec, prep, batch_size: int):
    """Batched images in the order of ``source.files`` (class by class, then by name) and their labels."""
    tf = _tf()
    if source.kind == "dataset":
        ds = _unbatched(source, image).map(lambda x, y: x)
    elif source.kind == "npz":
        ds = tf.data.Dataset.from_tensor_slices(check_npz_shape(source, image))
    else:
        ds = tf.data.Dataset.from_tensor_slices([str(f) for f in source.files])
        ds = ds.map(lambda p: decode(tf, p, image), num_parallel_calls=tf.data.AUTOTUNE)
    if prep is not None:
        ds = ds.map(prep, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE), source.labels()


def load_images(paths: list, image: ImageSpec, prep):
    """Image files -> one preprocessed batch (N, H, W, C), as training saw them; unreadable files by name."""
    for p in paths:
        if not os.path.lexists(p):
            raise DataError("no such image file", file=str(p))
        check_image(Path(p))
    check_readable(paths, image)
    tf = _tf()
    batch = tf.stack([decode(tf, str(p), image) for p in paths])
    return prep(batch) if prep is not None else batch
