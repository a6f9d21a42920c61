"""Writing outputs so that an interrupted run never leaves a truncated file.

Each output is written under a hidden temporary name in the target folder
(same filesystem, same suffix, since Keras and ONNX pick the format by
suffix) and moved into place with one rename.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
from pathlib import Path

from .errors import SpecError


def output_path(target: str | None, default_name: str, suffix: str) -> tuple[Path, bool]:
    """``-o`` semantics: a path ending in the suffix is the file; anything else is a folder.

    Returns the file's path and whether its folder was named as such (and so may be created).
    """
    if target is None:
        return Path(default_name + suffix), False
    p = Path(target)
    if p.suffix == suffix:
        return p, False
    return p / (default_name + suffix), True


def check_writable(path: Path, force: bool, what: str, may_create_folder: bool = False) -> None:
    """Fail before any work is done if ``path`` cannot be written.

    A folder given as ``-o out/`` is created when written to, if its parent exists;
    any other missing folder is an error (a typo should not scatter new folders).
    """
    folder = path.parent if str(path.parent) else Path(".")
    if may_create_folder and not folder.exists() and folder.parent.is_dir():
        if not os.access(folder.parent, os.W_OK):
            raise SpecError(f"cannot create the folder {folder}: {folder.parent} is not writable",
                            file=str(path), where=what)
        return
    if not folder.exists():
        raise SpecError(f"the folder {folder} does not exist; create it or choose another output path",
                        file=str(path), where=what)
    if not folder.is_dir():
        raise SpecError(f"{folder} is not a folder", file=str(path), where=what)
    if not os.access(folder, os.W_OK):
        raise SpecError(f"the folder {folder} is not writable", file=str(path), where=what)
    if path.exists() and not force:
        raise SpecError("already exists; pass --force to overwrite it", file=str(path), where=what)
    if path.is_dir() and path.suffix != "":
        raise SpecError("is a directory", file=str(path), where=what)


def temporary_sibling(path: Path, pid: int | None = None) -> Path:
    return path.with_name(f".{path.stem}.partial-{os.getpid() if pid is None else pid}{path.suffix}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_partials(path: Path) -> None:
    """Temporary files left by runs that were killed (their process is gone) are removed."""
    prefix = f".{path.stem}.partial-"
    for candidate in path.parent.glob(f"{glob.escape(prefix)}*{glob.escape(path.suffix)}"):
        pid = candidate.name[len(prefix):len(candidate.name) - len(path.suffix)]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            remove(candidate)


def remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


@contextlib.contextmanager
def atomic_output(path: Path):
    """Yield a temporary path to write; on success it replaces ``path`` in one rename."""
    path.parent.mkdir(exist_ok=True)
    remove_stale_partials(path)
    tmp = temporary_sibling(path)
    remove(tmp)
    try:
        yield tmp
        if tmp.is_dir() and path.exists():
            # A folder (SavedModel) cannot replace another in one rename: move the old aside first.
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, old)
            os.replace(tmp, path)
            remove(old)
        else:
            os.replace(tmp, path)
    finally:
        remove(tmp)
