"""Training data: a folder of class subfolders of images, or an ``.npz`` with ``x`` and ``y``.

``inspect`` reads only the file system (and the npz), so bad data is reported
before TensorFlow starts or a model is built; ``pipeline`` makes the tf.data
pipelines from what it found.
"""

from __future__ import annotations

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
        return len(self.files) if self.kind == "folder" else len(self.arrays()[1])

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
        raise DataError(
            f"has no class subfolders{found}: expected one folder per class, "
            f"{p}/<class name>/<images> ({' '.join(IMAGE_SUFFIXES)})",
            file=str(p),
            where=what,
        )
    files = []
    for name in classes:
        images = _images_under(p / name, what)
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
    x, y = arrays["x"], arrays["y"]
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise DataError(
            f"y must be a 1-D array of integer class indices, got shape {y.shape} dtype {y.dtype}",
            file=str(p),
            where=what,
        )
    if len(x) != len(y):
        raise DataError(f"x has {len(x)} images but y has {len(y)} labels", file=str(p), where=what)
    if len(y) == 0:
        raise DataError("holds no images", file=str(p), where=what)
    if y.min() < 0:
        raise DataError(f"y has a negative label ({y.min()})", file=str(p), where=what)
    if "class_names" in arrays:
        names = [str(n) for n in arrays["class_names"]]
        if y.max() >= len(names):
            raise DataError(
                f"y has label {y.max()} but class_names names {len(names)} classes", file=str(p), where=what
            )
    else:
        names = [str(i) for i in range(int(y.max()) + 1)]
    files = [str(f) for f in arrays["files"]] if "files" in arrays else [f"{p.name}[{i}]" for i in range(len(y))]
    return Source(p, "npz", names, files=files, x=x, y=y.astype("int64"))


def matching_validation(train: Source, val: Source) -> None:
    if train.class_names != val.class_names:
        raise DataError(
            f"the validation data's classes ({_names(val.class_names)}) differ from the training "
            f"data's ({_names(train.class_names)})",
            file=str(val.path),
            where="validation data",
        )
