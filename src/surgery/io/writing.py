"""Writing outputs: checked before the work, written under a temporary name, placed without clobbering.

Each output is written under a hidden temporary name in its target folder
(same file system, same suffix, since Keras and ONNX pick the format by
suffix) and moved into place in one step. Without ``--force`` that step
refuses to replace anything (``renameat2(RENAME_NOREPLACE)``, else a hard link
then an unlink), so two runs that write the same output cannot both succeed:
the existence check before the build is only an early warning. With
``--force`` only a regular file, or a folder that surgery wrote (it holds the
``.surgery`` marker), is replaced; never a device, a FIFO, a symbolic link or
someone else's folder.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import glob
import json
import os
import re
import shutil
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

from ..errors import SurgeryError, environment_reason, raise_if_stopped
from .files import same_file

NAME_MAX = 255
MARKER = ".surgery"  # in every folder surgery writes (a SavedModel, a run folder): what --force may replace


class OutputError(SurgeryError):
    """An output cannot be written where it was asked to go."""


def output_path(target: str | None, default_name: str, suffix: str) -> tuple[Path, bool]:
    """``-o`` semantics: a path ending in the suffix is the file; anything else is a folder.

    Returns the file's path and whether its folder was named as such (and so may be created).
    """
    if target is None:
        return Path(default_name + suffix), False
    p = Path(target)
    if p.suffix == suffix:
        return p, False
    # `-o model.txt` is a typo for a file, not a folder to create: a word suffix names another format.
    if re.fullmatch(r"\.[A-Za-z][A-Za-z0-9]{0,9}", p.suffix) and not p.is_dir():
        raise OutputError(
            f"ends in {p.suffix}, but this output ends in {suffix}: give a path ending in {suffix}, "
            "or a folder to write it in",
            file=str(target),
            where="-o",
        )
    return p / (default_name + suffix), True


def is_surgery_folder(path: Path, kind: str | None = None) -> bool:
    """Whether ``path`` is a folder that surgery wrote (of ``kind``, if given)."""
    marker = path / MARKER
    try:
        if not stat.S_ISREG(os.lstat(marker).st_mode) or marker.stat().st_size > 4096:
            return False
        found = json.loads(marker.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(found, dict) and (kind is None or found.get("kind") == kind)


def mark_folder(path: Path, kind: str, **extra: Any) -> None:
    from ..version import __version__

    (path / MARKER).write_text(json.dumps({"surgery": __version__, "kind": kind, **extra}) + "\n")


def _replaceable(path: Path, st: os.stat_result) -> str | None:
    """Why ``--force`` may not replace what is at ``path``, or None if it may."""
    if stat.S_ISLNK(st.st_mode):
        return "is a symbolic link; surgery replaces only regular files and folders it wrote"
    if stat.S_ISREG(st.st_mode):
        return None
    if stat.S_ISDIR(st.st_mode):
        if is_surgery_folder(path):
            return None
        return (
            f"is a folder that surgery did not write (no {MARKER} marker in it); surgery replaces only "
            "regular files and folders it wrote: remove it yourself or choose another path"
        )
    from .files import file_kind

    return f"is {file_kind(st.st_mode)}; surgery replaces only regular files and folders it wrote"


def check_output(
    path: Path, force: bool, where: str, may_create_folder: bool = False, inputs: Iterable[str | os.PathLike[str]] = ()
) -> None:
    """Fail before any work is done if ``path`` cannot be written, or must not be.

    A folder given as ``-o out/`` is created when written to, if its parent exists;
    any other missing folder is an error (a typo should not scatter new folders).
    ``inputs`` are the files the command reads: an output may not be one of them.
    """
    name = str(path)
    if len(os.fsencode(path.name)) > NAME_MAX:
        raise OutputError(
            f"the file name is {len(os.fsencode(path.name))} bytes; file systems allow "
            f'{NAME_MAX} (give the spec a shorter "name", or -o a shorter path)',
            file=name,
            where=where,
        )
    for source in inputs:
        if same_file(path, source):
            raise OutputError(
                f"is also an input of this command ({source}); writing it would destroy the input, "
                "so choose another output path",
                file=name,
                where=where,
            )
    folder = path.parent  # Path("m.keras").parent is Path(".")
    if may_create_folder and not folder.exists() and folder.parent.is_dir():
        if not os.access(folder.parent, os.W_OK):
            raise OutputError(
                f"cannot create the folder {folder}: {folder.parent} is not writable", file=name, where=where
            )
        return
    if not folder.exists():
        raise OutputError(
            f"the folder {folder} does not exist; create it or choose another output path", file=name, where=where
        )
    if not folder.is_dir():
        raise OutputError(f"{folder} is not a folder", file=name, where=where)
    if not os.access(folder, os.W_OK):
        raise OutputError(f"the folder {folder} is not writable", file=name, where=where)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    why = _replaceable(path, st)
    if why:
        raise OutputError(why, file=name, where=where)
    if not force:
        raise OutputError("already exists; pass --force to overwrite it", file=name, where=where)


PID_DIGITS = 10  # a pid is at most 2**22 on Linux; the prefix must not depend on how many digits one has


def _partial_prefix(path: Path) -> str:
    # Room for ".", ".partial-", a pid, a writer's token and the suffix in one file name, however long the stem,
    # and the same for every writer: a run cleans up the partials of a killed one by this prefix.
    room = NAME_MAX - len(os.fsencode(f"..partial-{'9' * PID_DIGITS}.{'x' * 8}{path.suffix}"))
    stem = os.fsencode(path.stem)[:room].decode("utf-8", "ignore")
    return f".{stem}.partial-"


def temporary_sibling(path: Path, pid: int | None = None) -> Path:
    """``.NAME.partial-PID.TOKEN.SUFFIX``: the pid says whether its writer still runs, the token tells two
    writers of one process apart."""
    pid = os.getpid() if pid is None else pid
    return path.with_name(f"{_partial_prefix(path)}{pid}.{os.urandom(4).hex()}{path.suffix}")


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
    prefix = _partial_prefix(path)
    for candidate in path.parent.glob(f"{glob.escape(prefix)}*{glob.escape(path.suffix)}"):
        pid = candidate.name[len(prefix) :].split(".")[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            remove(candidate)


def remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


_AT_FDCWD = -100
_RENAME_NOREPLACE = 1


def _renameat2() -> Any:
    try:
        return ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return None


def _taken(dst: Path) -> FileExistsError:
    return FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(dst))


def rename_noreplace(src: Path, dst: Path) -> None:
    """Move ``src`` to ``dst`` in one step; FileExistsError naming ``dst`` if it exists (never replaced)."""
    fn = _renameat2()
    if fn is not None:
        if fn(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), _RENAME_NOREPLACE) == 0:
            return
        err = ctypes.get_errno()
        if err == errno.EEXIST:
            raise _taken(dst)
        if err not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
            raise OSError(err, os.strerror(err), str(dst))
    if not src.is_dir():
        try:
            os.link(src, dst)  # the link is the no-clobber step
        except FileExistsError:
            raise _taken(dst) from None
        os.unlink(src)
        return
    # A folder on a file system without renameat2: check, then rename (a narrow race, said in the docs).
    if os.path.lexists(dst):
        raise _taken(dst)
    os.rename(src, dst)


def place(tmp: Path, path: Path, force: bool) -> None:
    """Put the finished ``tmp`` at ``path``: no-clobber, or with ``force`` replacing only what may be replaced."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    if st is None or not force:
        try:
            rename_noreplace(tmp, path)
        except FileExistsError:
            raise OutputError(
                "already exists (written by another run meanwhile); nothing was overwritten; "
                "pass --force to overwrite it",
                file=str(path),
            ) from None
        return
    why = _replaceable(path, st)
    if why:
        raise OutputError(why, file=str(path))
    if stat.S_ISREG(st.st_mode) and not tmp.is_dir():
        os.replace(tmp, path)
        return
    # A folder cannot replace anything in one rename: move the old one aside first.
    old = path.with_name(f".{path.name[:200]}.old-{os.getpid()}")
    os.replace(path, old)
    try:
        rename_noreplace(tmp, path)
    except OSError:
        os.replace(old, path)
        raise
    remove(old)


def _written_error(path: Path, e: OSError) -> OutputError:
    return OutputError(f"cannot be written: {environment_reason(e)}; nothing was written", file=str(path))


class Outputs:
    """Several outputs written all or none: each to a temporary file, then all placed at once.

    ``stage(path)`` gives the temporary path to write; ``commit()`` places them
    all; if one cannot be placed, those already placed by this commit are taken
    back. Leaving the ``with`` block without ``commit()`` removes every
    temporary file, so an error, Ctrl-C or SIGTERM leaves nothing behind.
    """

    def __init__(self, force: bool = False):
        self.force = force
        self.staged: list[tuple[Path, Path]] = []
        # Folders stage() made for an output: removed again, if still empty, when nothing is committed.
        self.created: list[Path] = []

    def __enter__(self) -> Outputs:
        return self

    def stage(self, path: Path, kind: str | None = None) -> Path:
        try:
            if not path.parent.exists():
                path.parent.mkdir()
                self.created.append(path.parent)
            remove_stale_partials(path)
            tmp = temporary_sibling(path)
            remove(tmp)
        except OSError as e:
            raise _written_error(path, e) from None
        self.staged.append((tmp, path))
        return tmp

    def commit(self, record_of_stop: bool = False) -> None:
        """Place every staged output. ``record_of_stop``: these outputs say what a stop left behind (a sweep's
        table marking its interrupted variants), so they are placed although a stop was asked for."""
        if not record_of_stop:
            raise_if_stopped()  # a SIGTERM whose exception was lost must not let the outputs be placed
        placed = []
        try:
            for tmp, path in self.staged:
                if tmp.is_dir():
                    mark_folder(tmp, "output")
                ino = os.stat(tmp).st_ino
                place(tmp, path, self.force)
                placed.append((path, ino))
            self.created = []
        except OSError as e:
            self._take_back(placed)
            raise _written_error(path, e) from None
        except OutputError:
            self._take_back(placed)
            raise
        self.staged = []

    @staticmethod
    def _take_back(placed: list[tuple[Path, int]]) -> None:
        for path, ino in placed:
            with contextlib.suppress(OSError):
                if os.stat(path).st_ino == ino:  # still the file this commit placed
                    remove(path)

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        paths = self.staged_paths
        for tmp, _ in self.staged:
            remove(tmp)
        self.staged = []
        for folder in reversed(self.created):
            with contextlib.suppress(OSError):
                folder.rmdir()  # only an empty folder goes: never anything this run did not make
        if isinstance(error, OSError) and paths:
            # Writing failed (disk full, read-only, file too large): the output being written is the last staged.
            raise _written_error(paths[-1], error) from None

    @property
    def staged_paths(self) -> list[Path]:
        return [p for _, p in self.staged]


@contextlib.contextmanager
def atomic_output(path: Path, force: bool = False) -> Iterator[Path]:
    """Yield a temporary path to write; on success it is placed at ``path`` (see ``place``)."""
    with Outputs(force) as outputs:
        yield outputs.stage(path)
        outputs.commit()


def strict_json(data: object, indent: int | None = 2) -> str:
    """JSON that every parser reads: a NaN or an infinity (a diverged model's figures) becomes null, since
    Python's json would write NaN and Infinity, which JSON does not have."""
    import json
    import math

    def finite(value: object) -> object:
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {k: finite(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [finite(v) for v in value]
        return value

    return json.dumps(finite(data), indent=indent, allow_nan=False)
