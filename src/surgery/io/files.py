"""Reading files that may come from someone else: regular files only, every read bounded.

A spec, a weights file, a ``.keras`` model, a ``classes.json`` sidecar, a run
folder's state and a dataset are data that surgery did not write. Opening a
FIFO blocks forever and ``/dev/zero`` never ends, so each input is checked to
be a regular file (again on the open descriptor, so that a swap after the
check is caught too) and read up to a limit. Archives are checked member by
member before anything is decompressed.
"""

from __future__ import annotations

import json
import math
import os
import stat
import zipfile
import zlib
from pathlib import Path
from typing import Any, NoReturn

from ..errors import ErrorFactory, SurgeryError, one_line

KIB = 1 << 10
MIB = 1 << 20
GIB = 1 << 30
INT64_MAX = (1 << 63) - 1
# A member of an archive that both exceeds this and expands to more than MAX_EXPANSION times its stored
# size is a decompression bomb (DEFLATE cannot exceed about 1032:1, and Keras stores members uncompressed).
BOMB_FLOOR = 256 * MIB
MAX_EXPANSION = 100
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


class FileError(SurgeryError):
    """An input file cannot be used: missing, not a regular file, too large, damaged."""


def file_kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "an unknown kind of file"


def _not_regular(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "is a folder, not a file"
    return f"is {file_kind(mode)}, not a regular file; surgery reads only regular files"


def check_regular(
    path: str | os.PathLike[str], where: str | None = None, *, error: ErrorFactory = FileError
) -> os.stat_result:
    """The file's stat if ``path`` is a regular file (symbolic links followed); else one error line."""
    name = str(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise error("no such file", file=name, where=where) from None
    except NotADirectoryError:
        raise error("no such file (a part of the path is not a folder)", file=name, where=where) from None
    except OSError as e:
        raise error(f"cannot be read: {e.strerror}", file=name, where=where) from None
    if not stat.S_ISREG(st.st_mode):
        raise error(_not_regular(st.st_mode), file=name, where=where)
    return st


def _limit(n: int) -> str:
    """A limit as it was chosen: 1024 KiB, 64 MiB, 4 GiB."""
    for unit, name in ((GIB, "GiB"), (MIB, "MiB")):
        if n > unit and n % unit == 0:
            return f"{n // unit} {name}"
    return f"{n // KIB} KiB" if n % KIB == 0 else f"{n} bytes"


def _size(n: int) -> str:
    if n >= GIB:
        return f"{n / GIB:.1f} GiB"
    if n >= MIB:
        return f"{n / MIB:.1f} MiB"
    return f"{n / KIB:.0f} KiB" if n >= KIB else f"{n} bytes"


def read_bounded(
    path: str | os.PathLike[str],
    limit: int,
    where: str | None = None,
    *,
    what: str = "file",
    error: ErrorFactory = FileError,
) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes, read from one descriptor."""
    check_regular(path, where, error=error)
    name = str(path)
    try:
        # O_NONBLOCK: if a FIFO was swapped in after the check, open returns instead of waiting for a writer.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except OSError as e:
        raise error(f"cannot be read: {e.strerror}", file=name, where=where) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise error(_not_regular(st.st_mode), file=name, where=where)
        if st.st_size > limit:
            raise error(f"{what} is {st.st_size / 1e6:.1f} MB; the limit is {_limit(limit)}", file=name, where=where)
        chunks, total = [], 0
        while total <= limit:
            chunk = os.read(fd, min(MIB, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
    except OSError as e:
        raise error(f"cannot be read: {e.strerror}", file=name, where=where) from None
    finally:
        os.close(fd)
    if total > limit:
        raise error(f"{what} is over the limit of {_limit(limit)}", file=name, where=where)
    return b"".join(chunks)


class StrictJSONError(ValueError):
    """A JSON document that json.loads accepts but a spec or sidecar must not hold."""


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen = {}
    for key, value in pairs:
        if key in seen:
            raise StrictJSONError(f'duplicate key "{key}" in one object (the second would silently win)')
        seen[key] = value
    return seen


def _no_constant(name: str) -> NoReturn:
    raise StrictJSONError(f"{name} is not a number JSON allows; give a finite number")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise StrictJSONError(f"{text} is too large to be a finite number")
    return value


def _int64(text: str) -> int:
    value = int(text)
    if not -INT64_MAX - 1 <= value <= INT64_MAX:  # two's complement: one more below zero than above
        raise StrictJSONError(f"{text[:24]}{'...' if len(text) > 24 else ''} is beyond the 64-bit integer range")
    return value


def strict_json(text: str) -> Any:
    """``json.loads`` that refuses duplicate keys, NaN, infinities and integers beyond 64 bits.

    Raises ``json.JSONDecodeError`` for syntax, ``StrictJSONError`` for the rest.
    """
    return json.loads(
        text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant, parse_float=_finite, parse_int=_int64
    )


def read_json(
    path: str | os.PathLike[str],
    limit: int,
    where: str | None = None,
    *,
    what: str = "file",
    error: ErrorFactory = FileError,
) -> Any:
    """A bounded, strictly parsed JSON file; every problem is one error line naming the file."""
    raw = read_bounded(path, limit, where, what=what, error=error)
    try:
        return strict_json(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise error(
            f"not UTF-8 text (byte 0x{raw[e.start]:02x} at offset {e.start})", file=str(path), where=where
        ) from None
    except json.JSONDecodeError as e:
        raise error(
            f"not valid JSON: {e.msg} at line {e.lineno} column {e.colno}", file=str(path), where=where
        ) from None
    except StrictJSONError as e:
        raise error(f"not valid here: {e}", file=str(path), where=where) from None
    except RecursionError:
        raise error("JSON nested too deeply", file=str(path), where=where) from None


def check_archive(
    path: str | os.PathLike[str],
    where: str | None = None,
    *,
    limits: dict | None = None,
    what: str = "zip archive",
    error: ErrorFactory = FileError,
) -> list[zipfile.ZipInfo]:
    """The members of a zip archive whose declared sizes are sane, checked before anything is decompressed.

    ``limits`` maps a member name to its largest allowed uncompressed size.
    """
    check_regular(path, where, error=error)
    name = str(path)
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError):
        raise error(f"is not a {what}", file=name, where=where) from None
    for info in members:
        limit = (limits or {}).get(info.filename)
        if limit is not None and info.file_size > limit:
            raise error(
                f"its member {info.filename} declares {_size(info.file_size)}; the limit is {_limit(limit)}",
                file=name,
                where=where,
            )
        if info.file_size > BOMB_FLOOR and info.file_size > MAX_EXPANSION * max(info.compress_size, 1):
            raise error(
                f"its member {info.filename} declares {_size(info.file_size)} from "
                f"{_size(info.compress_size)} stored: a decompression bomb, refused",
                file=name,
                where=where,
            )
    return members


def read_member(
    path: str | os.PathLike[str], member: str, limit: int, where: str | None = None, *, error: ErrorFactory = FileError
) -> bytes | None:
    """One member of a checked archive (None if absent), read up to ``limit`` bytes."""
    try:
        with zipfile.ZipFile(path) as archive:
            try:
                info = archive.getinfo(member)
            except KeyError:
                return None
            if info.file_size > limit:
                raise error(
                    f"its member {member} declares {_size(info.file_size)}; the limit is {_limit(limit)}",
                    file=str(path),
                    where=where,
                )
            # zipfile returns no more than the member's declared size (checked above): a member longer than it
            # declares fails its CRC-32 check, so one that lies about its size is refused as damaged.
            with archive.open(info) as f:
                return f.read(limit)
    # zipfile cannot read an encrypted member (RuntimeError) or an unknown compression method
    # (NotImplementedError) either: a damaged or foreign archive, not a bug of surgery.
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error, RuntimeError, NotImplementedError) as e:
        raise error(f"its member {member} cannot be read: {one_line(e, 200)}", file=str(path), where=where) from None


def check_hdf5(path: str | os.PathLike[str], where: str | None = None, *, error: ErrorFactory = FileError) -> None:
    """A regular, non-empty file that starts like HDF5 (no h5py needed; the deep check is ``check_hdf5_links``)."""
    st = check_regular(path, where, error=error)
    if st.st_size == 0:
        raise error("the weights file is empty", file=str(path), where=where)
    head = read_head(path, len(HDF5_SIGNATURE))
    if head != HDF5_SIGNATURE:
        raise error(
            'is not an HDF5 weights file (as model.save_weights("x.weights.h5") writes)', file=str(path), where=where
        )


def read_head(path: str | os.PathLike[str], n: int) -> bytes:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        return os.read(fd, n)
    finally:
        os.close(fd)


def check_hdf5_links(
    path: str | os.PathLike[str], where: str | None = None, *, error: ErrorFactory = FileError
) -> None:
    """Refuse an HDF5 file that is damaged or points outside itself (external links, external storage).

    h5py follows an external link when it is read, so a weights file could make
    surgery read another HDF5 file of the machine; external dataset storage
    reads raw bytes of any file.
    """
    import h5py

    problems: list[str] = []

    def check_group(prefix: str, group: Any) -> None:
        for key in group:
            link = group.get(key, getlink=True)
            if isinstance(link, h5py.ExternalLink):
                problems.append(f'"{prefix}{key}" is an external link to {link.filename}')

    def visit(name: str, obj: Any) -> None:
        # visititems follows hard links only (each object once), never an external link.
        if isinstance(obj, h5py.Group):
            check_group(f"{name}/", obj)
        elif isinstance(obj, h5py.Dataset) and obj.external:
            problems.append(f'dataset "{name}" stores its data in another file')

    try:
        with h5py.File(path, "r") as f:
            check_group("/", f)
            f.visititems(visit)
    except OSError as e:
        reason = one_line(e, 200)
        raise error(f"the weights file is damaged or truncated ({reason})", file=str(path), where=where) from None
    if problems:
        raise error(f"refused: the weights file reaches outside itself: {problems[0]}", file=str(path), where=where)


def same_file(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """Whether two paths name one file (hard links and symbolic links included); False if either is missing."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return Path(os.path.abspath(a)) == Path(os.path.abspath(b))
