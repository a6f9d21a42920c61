"""Training data: a folder of class subfolders of images, or an ``.npz`` with ``x`` and ``y``.

``inspect`` reads only the file system (and the npz), so bad data is reported
before TensorFlow starts or a model is built; ``pipeline`` makes the tf.data
pipelines from what it found.
"""

from __future__ import annotations

import dataclasses
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SurgeryError
from ..io.files import check_archive, check_regular

# What keras.utils.image_dataset_from_directory reads; other files are skipped.
IMAGE_SUFFIXES = (".bmp", ".gif", ".jpeg", ".jpg", ".png")
COLOR_MODES = {1: "grayscale", 3: "rgb", 4: "rgba"}
SHUFFLE_BUFFER = 1024  # decoded images, not files: a bigger buffer costs memory, not randomness that matters
SHOWN_BAD_FILES = 3
# More classes than any dataset people train on (ImageNet-21k has 21,841): a label beyond it is a broken file,
# and a list of that many names would be built before anything else could refuse it.
MAX_CLASSES = 100_000
# An image file's bytes: 512 MiB holds an uncompressed BMP of Pillow's pixel limit; a bigger (or sparse) file
# named .png is refused from its size alone, before anything reads it.
IMAGE_BYTES = 512 * 1024 * 1024


class DataError(SurgeryError):
    """The data given to train, features or predict cannot be used."""


def check_class_names(names, file: str | None, where: str | None, error=DataError) -> list[str]:
    """Class names as a list of strings, each once: a name given twice would score its second class as its
    first wherever labels are matched by name (evaluate), so it is refused wherever names come in."""
    names = [str(n) for n in names]
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise error(
                f'class_names names "{name[:60]}" twice; each class needs a name of its own', file=file, where=where
            )
        seen.add(name)
    return names


@dataclass
class Source:
    """What a data path holds, found without TensorFlow."""

    path: Path
    kind: str  # "folder", "npz" (arrays from a file or from Python) or "dataset"
    class_names: list
    files: list = field(default_factory=list)  # folder: image paths, class by class
    x: np.ndarray | None = None
    y: np.ndarray | None = None
    dataset: Any = None  # a tf.data.Dataset given from Python: (image, label) elements, batched or not
    drawn: bool = False  # folder: ``files`` are a draw from it (samples_per_class), not all it holds

    def __len__(self) -> int:
        if self.kind == "dataset":
            return len(self.labels())
        return len(self.files) if self.kind == "folder" else len(self.arrays()[1])

    def labels(self) -> np.ndarray:
        """Every image's class index, in order (a dataset is read once for them)."""
        if self.kind == "folder":
            return np.array([self.class_names.index(f.relative_to(self.path).parts[0]) for f in self.files])
        if self.kind == "npz":
            return self.arrays()[1]
        if self.y is None:
            found = [np.asarray(label).reshape(-1) for _, label in self.dataset.as_numpy_iterator()]
            y = np.concatenate(found).astype("int64") if found else np.zeros(0, "int64")
            self.class_names = labelled_classes(y, list(self.class_names), self.path, "labels")
            self.y = y
        return self.y

    def counts(self) -> list[int]:
        """Images per class (what a balanced class weight divides by)."""
        return np.bincount(self.labels(), minlength=len(self.class_names)).tolist()

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """x and y of an .npz source."""
        if self.x is None or self.y is None:
            raise DataError("a folder of images holds no arrays", file=str(self.path))
        return self.x, self.y

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
    raise DataError(
        "expected a folder of class subfolders of images, or an .npz file with x and y", file=str(p), where=what
    )


def image_files(paths, what: str = "IMAGE") -> list[Path]:
    """Image files, a folder standing for every image under it (recursively, sorted)."""
    found: list[Path] = []
    for path in map(Path, paths):
        found += _images_under(path, what) if path.is_dir() else [path]
    if not found:
        raise DataError(f"holds no images ({' '.join(IMAGE_SUFFIXES)})", file=str(paths[0]), where=what)
    return found


def _images_under(folder: Path, what: str, top: Path | None = None) -> list[Path]:
    """Image files under ``folder``, sorted; one that is not a regular file (a FIFO would hang the decoder)
    or a link that leads out of the data folder ``top`` (a shared folder is data, and may not make surgery
    read files it does not hold) stops the run by name."""
    top = top or folder
    inside = os.path.realpath(top)
    found = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            if name.lower().endswith(IMAGE_SUFFIXES):
                path = Path(root) / name
                target = os.path.realpath(path)
                if os.path.commonpath([inside, target]) != inside:
                    raise DataError(
                        f"is a symbolic link to {target}, outside the data folder {top}: surgery reads only "
                        "the folder's own files; copy the image into it",
                        file=str(path),
                        where=what,
                    )
                check_image(path, what)
                found.append(path)
    return found


def check_image(path: Path, what: str | None = None) -> None:
    """A regular file of a bounded size whose header (a few bytes, read by Pillow without decoding) states a
    bounded pixel count: a decompression bomb, a sparse file or a device named .png is refused before
    TensorFlow decodes it. A file Pillow cannot read is left to the decoder, which names every bad file."""
    import warnings

    from PIL import Image

    st = check_regular(path, what, error=DataError)
    if st.st_size > IMAGE_BYTES:
        raise DataError(
            f"is {st.st_size / 2**20:,.0f} MiB; an image file may be at most {IMAGE_BYTES // 2**20} MiB",
            file=str(path),
            where=what,
        )
    limit = Image.MAX_IMAGE_PIXELS or 0
    size = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                width, height = img.size
        if limit and width * height > limit:
            size = f"{width:,} x {height:,} pixels"
    except Image.DecompressionBombError:  # Pillow refuses past twice its limit, before saying the size
        size = f"more than {2 * limit:,} pixels"
    except (OSError, SyntaxError, ValueError):
        return
    if size:
        raise DataError(
            f"its header says {size}; an image may have at most {limit:,} (Pillow's decompression-bomb limit)",
            file=str(path),
            where=what,
        )


def _inspect_folder(p: Path, what: str) -> Source:
    # Hidden folders (.ipynb_checkpoints, .git) are not classes; Keras skips them too.
    classes = sorted(d.name for d in p.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        loose = len([f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES])
        found = f"; it holds {loose} image files directly" if loose else ""
        raise DataError(
            f"has no class subfolders{found}: expected one folder per class, "
            f"{p}/<class name>/<images> ({' '.join(IMAGE_SUFFIXES)})",
            file=str(p),
            where=what,
        )
    files = []
    for name in classes:
        images = _images_under(p / name, what, top=p)
        if not images:
            raise DataError(
                f'class folder "{name}" holds no images ({" ".join(IMAGE_SUFFIXES)})', file=str(p), where=what
            )
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
        raise DataError(
            f"its arrays declare {declared / 1e9:.1f} GB, more than half of this machine's memory; "
            "split the data or use a folder of images",
            file=str(p),
            where=what,
        )
    _check_npy_headers(p, what)
    try:
        with np.load(p, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise DataError(f"not a readable .npz file ({e})", file=str(p), where=what) from None
    except ValueError as e:  # object arrays need pickle, which we never enable for data files
        raise DataError(
            f"cannot be read without pickle ({e}); save plain numeric arrays", file=str(p), where=what
        ) from None
    missing = [k for k in ("x", "y") if k not in arrays]
    if missing:
        has = ", ".join(sorted(arrays)) or "no arrays"
        raise DataError(
            f"an .npz for surgery needs arrays x (images, N x H x W x C) and y (integer labels, N); "
            f"missing {' and '.join(missing)}; it has: {has}",
            file=str(p),
            where=what,
        )
    return arrays_source(p, arrays["x"], arrays["y"], arrays.get("class_names"), arrays.get("files"), what)


_NPY_HEADERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


def _check_npy_headers(p: Path, what: str) -> None:
    """Refuse a member whose header promises more data than the member holds: numpy allocates what the
    header says before reading, so 500 bytes that claim (100000000, 32, 32, 3) float32 would ask for 1.2 TB."""
    try:
        with zipfile.ZipFile(p) as archive:
            for info in archive.infolist():
                if not info.filename.endswith(".npy"):
                    continue
                with archive.open(info) as member:
                    version = np.lib.format.read_magic(member)
                    if version not in _NPY_HEADERS:
                        raise DataError(
                            f"its array {info.filename[:-4]} is in .npy format {version}; save it with numpy.savez",
                            file=str(p),
                            where=what,
                        )
                    shape, _, dtype = _NPY_HEADERS[version](member, max_header_size=10_000)
                    header = member.tell()
                if dtype.hasobject:
                    continue  # refused below: object arrays need pickle
                promised = int(np.prod(shape, dtype=object)) * dtype.itemsize
                if promised > info.file_size - header:
                    raise DataError(
                        f"its array {info.filename[:-4]} claims shape {shape} ({promised / 1e9:,.1f} GB) but holds "
                        f"{info.file_size - header:,} bytes: a broken or hostile file",
                        file=str(p),
                        where=what,
                    )
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
        raise DataError(f"not a readable .npz file ({e})", file=str(p), where=what) from None


def labelled_classes(y: np.ndarray, names: list[str], p: Path, what: str) -> list[str]:
    """The class names for labels ``y`` (given ones, else "0", "1", ...), the labels checked first: bounded
    before a name list is built from them, so a label of 2**40 costs nothing."""
    if len(y) == 0:
        raise DataError("holds no images", file=str(p), where=what)
    if y.min() < 0:
        raise DataError(f"y has a negative label ({y.min()})", file=str(p), where=what)
    if int(y.max()) >= MAX_CLASSES:
        raise DataError(
            f"y has label {y.max()}: more than {MAX_CLASSES:,} classes is not a labelling surgery trains on "
            "(labels are class indices 0, 1, 2, ...)",
            file=str(p),
            where=what,
        )
    if names:
        if y.max() >= len(names):
            raise DataError(
                f"y has label {y.max()} but class_names names {len(names)} classes", file=str(p), where=what
            )
        return names
    return [str(i) for i in range(int(y.max()) + 1)]


def arrays_source(p: Path, x, y, names_array=None, files_array=None, what: str = "--data") -> Source:
    """Images and labels in memory (an .npz's arrays, or arrays given from Python), checked."""
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim != 4:
        raise DataError(
            f"x must hold images, N x height x width x channels; got shape {x.shape}", file=str(p), where=what
        )
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise DataError(
            f"y must be a 1-D array of integer class indices, got shape {y.shape} dtype {y.dtype}",
            file=str(p),
            where=what,
        )
    if len(x) != len(y):
        raise DataError(f"x has {len(x)} images but y has {len(y)} labels", file=str(p), where=what)
    if names_array is not None:
        names_array = np.asarray(names_array)
        if names_array.ndim != 1 or len(names_array) > MAX_CLASSES:
            raise DataError(
                f"class_names must be a list of at most {MAX_CLASSES:,} names, got shape {names_array.shape}",
                file=str(p),
                where=what,
            )
        names = check_class_names(names_array, str(p), what)
    else:
        names = []
    names = labelled_classes(y, names, p, what)
    if files_array is not None:
        files_array = np.asarray(files_array)
        if files_array.shape != y.shape:
            raise DataError(
                f"files has shape {files_array.shape} but y has {len(y)} labels; it needs one file name per image",
                file=str(p),
                where=what,
            )
    files = [str(f) for f in files_array] if files_array is not None else [f"{p.name}[{i}]" for i in range(len(y))]
    return Source(p, "npz", names, files=files, x=x, y=y.astype("int64"))


def matching_validation(train: Source, val: Source) -> None:
    if train.class_names != val.class_names:
        raise DataError(
            f"the validation data's classes ({_names(val.class_names)}) differ from the training "
            f"data's ({_names(train.class_names)})",
            file=str(val.path),
            where="validation data",
        )


def per_class(source: Source, n: int, seed: int, split: float) -> tuple[Source, Source | None]:
    """``n`` training images of each class and the validation images (``split`` of the whole, None for none).

    The validation images are drawn first, from the whole data, by the seed alone: every ``n`` is judged on
    the same images. The training images are then the first ``n`` of each class in the same seeded order, so a
    smaller ``n``'s images are among a larger one's.
    """
    where = "train.samples_per_class"
    if source.kind == "dataset":
        raise DataError(
            "samples_per_class draws from a folder or an .npz; a tf.data.Dataset given from Python is taken as it "
            "is (draw from it yourself)",
            where=where,
        )
    labels = source.labels()
    order = np.random.default_rng(seed).permutation(len(labels))
    n_val = int(len(labels) * split)
    pool, held = order[: len(order) - n_val], order[len(order) - n_val :]
    chosen = []
    for c, name in enumerate(source.class_names):
        mine = pool[labels[pool] == c][:n]
        if len(mine) < n:
            after = " after the validation split" if n_val else ""
            raise DataError(
                f'class "{name}" has {len(mine)} images to train on{after}; samples_per_class is {n}',
                file=str(source.path),
                where=where,
            )
        chosen.append(mine)
    drawn = _subset(source, np.sort(np.concatenate(chosen)))
    return drawn, (_subset(source, np.sort(held)) if n_val else None)


def _subset(source: Source, index: np.ndarray) -> Source:
    if source.kind == "folder":
        return dataclasses.replace(source, files=[source.files[i] for i in index], drawn=True)
    x, y = source.arrays()
    return dataclasses.replace(source, x=x[index], y=y[index])
