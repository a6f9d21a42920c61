"""Training data: a folder of class subfolders of images, or an ``.npz`` with ``x`` and ``y``.

``inspect`` reads only the file system (and the npz), so bad data is reported
before TensorFlow starts or a model is built. ``datasets`` and ``ordered`` make
the tf.data pipelines: decode and resize (``keras.utils.image_dataset_from_directory``
for folders), the backbone's ``preprocess_input``, cache, shuffle, batch, prefetch.
"""

from __future__ import annotations

import contextlib
import io
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import SurgeryError
from ..files import check_archive, check_regular

# What keras.utils.image_dataset_from_directory reads; other files are skipped.
IMAGE_SUFFIXES = (".bmp", ".gif", ".jpeg", ".jpg", ".png")
COLOR_MODES = {1: "grayscale", 3: "rgb", 4: "rgba"}
SHUFFLE_BUFFER = 1024  # decoded images, not files: a bigger buffer costs memory, not randomness that matters
SHOWN_BAD_FILES = 3


class DataError(SurgeryError):
    """The data given to train, features or predict cannot be used."""


@dataclass
class Source:
    """What a data path holds, found without TensorFlow."""

    path: Path
    kind: str  # "folder" or "npz"
    class_names: list
    files: list = field(default_factory=list)  # folder: image paths, class by class
    x: np.ndarray | None = None
    y: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.files) if self.kind == "folder" else len(self.y)

    def describe(self) -> str:
        n = len(self.class_names)
        return f"{len(self):,} images in {n} class{'es' * (n != 1)} ({_names(self.class_names)})"


def _names(names, limit=6) -> str:
    shown = ", ".join(map(str, names[:limit]))
    return shown + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")


def inspect(path, what: str = "--data") -> Source:
    p = Path(path)
    if not p.exists():
        raise DataError("no such file or folder", file=str(p), where=what)
    if p.is_dir():
        return _inspect_folder(p, what)
    if p.suffix.lower() == ".npz":
        return _inspect_npz(p, what)
    raise DataError("expected a folder of class subfolders of images, or an .npz file with x and y",
                    file=str(p), where=what)


def _images_under(folder: Path, what: str) -> list[Path]:
    """Image files under ``folder``, sorted; one that is not a regular file (a FIFO would hang the decoder)
    stops the run by name."""
    found = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            if name.lower().endswith(IMAGE_SUFFIXES):
                path = Path(root) / name
                check_regular(path, what, error=DataError)
                found.append(path)
    return found


def _inspect_folder(p: Path, what: str) -> Source:
    # Hidden folders (.ipynb_checkpoints, .git) are not classes; Keras skips them too.
    classes = sorted(d.name for d in p.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        loose = len([f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES])
        found = f"; it holds {loose} image files directly" if loose else ""
        raise DataError(f"has no class subfolders{found}: expected one folder per class, "
                        f"{p}/<class name>/<images> ({' '.join(IMAGE_SUFFIXES)})", file=str(p), where=what)
    files = []
    for name in classes:
        images = _images_under(p / name, what)
        if not images:
            raise DataError(f'class folder "{name}" holds no images ({" ".join(IMAGE_SUFFIXES)})',
                            file=str(p), where=what)
        files += images
    return Source(p, "folder", classes, files=files)


def _npz_limit() -> int:
    """Half the machine's memory: an .npz is loaded whole, so a larger one would end in the OOM killer."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2
    except (ValueError, OSError, AttributeError):
        return 1 << 35


def _inspect_npz(p: Path, what: str) -> Source:
    members = check_archive(p, what, what=".npz file (a zip of .npy arrays)", error=DataError)
    declared = sum(m.file_size for m in members)
    if declared > _npz_limit():
        raise DataError(f"its arrays declare {declared / 1e9:.1f} GB, more than half of this machine's memory; "
                        "split the data or use a folder of images", file=str(p), where=what)
    try:
        with np.load(p, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise DataError(f"not a readable .npz file ({e})", file=str(p), where=what) from None
    except ValueError as e:  # object arrays need pickle, which we never enable for data files
        raise DataError(f"cannot be read without pickle ({e}); save plain numeric arrays", file=str(p),
                        where=what) from None
    missing = [k for k in ("x", "y") if k not in arrays]
    if missing:
        has = ", ".join(sorted(arrays)) or "no arrays"
        raise DataError(f"an .npz for surgery needs arrays x (images, N x H x W x C) and y (integer labels, N); "
                        f"missing {' and '.join(missing)}; it has: {has}", file=str(p), where=what)
    x, y = arrays["x"], arrays["y"]
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"y must be a 1-D array of integer class indices, got shape {y.shape} dtype {y.dtype}",
                        file=str(p), where=what)
    if len(x) != len(y):
        raise DataError(f"x has {len(x)} images but y has {len(y)} labels", file=str(p), where=what)
    if len(y) == 0:
        raise DataError("holds no images", file=str(p), where=what)
    if y.min() < 0:
        raise DataError(f"y has a negative label ({y.min()})", file=str(p), where=what)
    if "class_names" in arrays:
        names = [str(n) for n in arrays["class_names"]]
        if y.max() >= len(names):
            raise DataError(f"y has label {y.max()} but class_names names {len(names)} classes",
                            file=str(p), where=what)
    else:
        names = [str(i) for i in range(int(y.max()) + 1)]
    files = [str(f) for f in arrays["files"]] if "files" in arrays else [f"{p.name}[{i}]" for i in range(len(y))]
    return Source(p, "npz", names, files=files, x=x, y=y.astype("int64"))


def matching_validation(train: Source, val: Source) -> None:
    if train.class_names != val.class_names:
        raise DataError(f"the validation data's classes ({_names(val.class_names)}) differ from the training "
                        f"data's ({_names(train.class_names)})", file=str(val.path), where="validation data")


# --- TensorFlow from here on: called only once a model is being trained or run ---------------


@dataclass(frozen=True)
class ImageSpec:
    """What the model's input asks of an image: size and channels."""

    height: int
    width: int
    channels: int

    @classmethod
    def of(cls, model, image_size=None) -> ImageSpec:
        shape = tuple(model.inputs[0].shape)
        if len(model.inputs) != 1 or len(shape) != 4:
            raise DataError(f"the model's input is {shape if len(model.inputs) == 1 else 'several tensors'}; "
                            "surgery feeds images to a model with one (batch, height, width, channels) input")
        h, w = image_size or shape[1:3]
        if h is None or w is None:
            raise DataError("the model's input size is not fixed (None x None); give the backbone an input_shape, "
                            "or set train.image_size")
        if shape[3] not in COLOR_MODES:
            raise DataError(f"the model's input has {shape[3]} channels; images have 1, 3 or 4")
        return cls(int(h), int(w), int(shape[3]))

    @property
    def color_mode(self) -> str:
        return COLOR_MODES[self.channels]

    @property
    def shape(self) -> tuple:
        return (self.height, self.width, self.channels)


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
        raise DataError(f"{len(bad)} of {len(paths)} image files cannot be read as images: {shown}; "
                        "delete or replace them")


def check_npz_shape(source: Source, image: ImageSpec) -> np.ndarray:
    """x as float32 (N, H, W, C) for this model; a missing channel axis is added for one-channel models."""
    x = source.x
    if x.ndim == 3 and image.channels == 1:
        x = x[..., None]
    if tuple(x.shape[1:]) != image.shape:
        raise DataError(f"x holds images of shape {tuple(source.x.shape[1:])} but the model's input is "
                        f"{image.shape}", file=str(source.path))
    if not (np.issubdtype(x.dtype, np.number) or x.dtype == bool):
        raise DataError(f"x must be numeric, got dtype {x.dtype}", file=str(source.path))
    return x.astype("float32")


def _images_and_labels(source: Source, image: ImageSpec, seed: int, split: float = 0.0):
    """Unbatched (image, label) datasets, shuffled once by seed: (train, validation or None)."""
    tf = _tf()
    if source.kind == "npz":
        x = check_npz_shape(source, image)
        order = np.random.default_rng(seed).permutation(len(x))
        n_val = int(len(x) * split)
        cut = len(x) - n_val
        train = tf.data.Dataset.from_tensor_slices((x[order[:cut]], source.y[order[:cut]]))
        val = tf.data.Dataset.from_tensor_slices((x[order[cut:]], source.y[order[cut:]])) if n_val else None
        return train, val
    from ..keras_env import keras

    k = keras()
    common = {"labels": "inferred", "label_mode": "int", "class_names": source.class_names,
              "color_mode": image.color_mode, "batch_size": None, "image_size": (image.height, image.width),
              "shuffle": True, "seed": seed, "verbose": False}
    # Keras prints "Using N files for training" whatever verbose says; the run reports its own counts.
    with contextlib.redirect_stdout(io.StringIO()):
        if split > 0:
            return tuple(k.utils.image_dataset_from_directory(str(source.path), validation_split=split,
                                                              subset="both", **common))
        return k.utils.image_dataset_from_directory(str(source.path), **common), None


def _prepared(ds, prep, cache: bool):
    """Preprocessed images in the order the pipeline shuffles them from (what a feature cache runs over)."""
    tf = _tf()
    if prep is not None:
        ds = ds.map(lambda x, y: (prep(x), y), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.cache() if cache else ds


def _shuffled(ds, n: int, seed: int):
    return ds.shuffle(min(n, SHUFFLE_BUFFER), seed=seed, reshuffle_each_iteration=True)


def _batched(ds, batch_size: int):
    return ds.batch(batch_size).prefetch(_tf().data.AUTOTUNE)


@dataclass
class Datasets:
    train: object
    validation: object | None
    n_train: int
    n_validation: int
    class_names: list
    batch_size: int = 32
    # Unbatched preprocessed images before the shuffle, and the shuffle's twin over their indices (the same
    # seed and buffer, made under the same global seed, so the same order): what a feature cache needs to
    # feed the same batches as the training pipeline.
    train_images: object = None
    validation_images: object = None
    train_order: object = None


def datasets(train_src: Source, val_src: Source | None, image: ImageSpec, prep, *, split: float,
             batch_size: int, seed: int, cache: bool) -> Datasets:
    """The training and validation pipelines (``prep``: the preprocessing function or None).

    Files were checked by ``check_readable`` beforehand."""
    train, val = _images_and_labels(train_src, image, seed, split)
    if val_src is not None:
        val, _ = _images_and_labels(val_src, image, seed)
    n_train = int(train.cardinality())
    n_val = int(val.cardinality()) if val is not None else 0
    if split > 0 and n_val == 0:
        raise DataError(f"a validation split of {split:g} of {len(train_src)} images leaves no validation image; "
                        "add images, raise the split, or give separate validation data", file=str(train_src.path))
    if n_train == 0:
        raise DataError(f"a validation split of {split:g} leaves no training image", file=str(train_src.path))
    train_images = _prepared(train, prep, cache)
    val_images = _prepared(val, prep, cache) if val is not None else None
    return Datasets(
        _batched(_shuffled(train_images, n_train, seed), batch_size),
        _batched(val_images, batch_size) if val is not None else None,
        n_train, n_val, train_src.class_names, batch_size, train_images, val_images,
        _shuffled(_tf().data.Dataset.range(n_train), n_train, seed))


def ordered(source: Source, image: ImageSpec, prep, batch_size: int):
    """Batched images in the order of ``source.files`` (class by class, then by name) and their labels."""
    tf = _tf()
    if source.kind == "npz":
        ds = tf.data.Dataset.from_tensor_slices(check_npz_shape(source, image))
        labels = source.y
    else:
        ds = tf.data.Dataset.from_tensor_slices([str(f) for f in source.files])
        ds = ds.map(lambda p: decode(tf, p, image), num_parallel_calls=tf.data.AUTOTUNE)
        labels = np.array([source.class_names.index(f.relative_to(source.path).parts[0]) for f in source.files])
    if prep is not None:
        ds = ds.map(prep, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE), labels


def load_images(paths: list, image: ImageSpec, prep):
    """Image files -> one preprocessed batch (N, H, W, C), as training saw them; unreadable files by name."""
    for p in paths:
        if not os.path.lexists(p):
            raise DataError("no such image file", file=str(p))
        check_regular(p, error=DataError)
    check_readable(paths, image)
    tf = _tf()
    batch = tf.stack([decode(tf, str(p), image) for p in paths])
    return prep(batch) if prep is not None else batch
