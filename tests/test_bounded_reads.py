"""files.read_bounded, through which every untrusted file is read: it stops reading at its bound (a file that
grows while it is read costs at most the bound, not the whole file), and it checks the descriptor it reads,
not only the path it checked (a file swapped for a FIFO or a device after the check is refused)."""

from __future__ import annotations

import contextlib
import errno
import os
import signal

import pytest

from surgery.io import files

from helpers import CallersError

LIMIT = 1000


def _growing(monkeypatch, path, extra):
    """os.read that, on its first call, makes the file ``extra`` bytes longer (a writer racing the reader),
    and counts the bytes it returns."""
    real_read, seen = os.read, {"bytes": 0, "grown": False}

    def read(fd, n):
        if not seen["grown"]:
            seen["grown"] = True
            with open(path, "ab") as f:
                f.write(b"x" * extra)
        chunk = real_read(fd, n)
        seen["bytes"] += len(chunk)
        return chunk

    monkeypatch.setattr(files.os, "read", read)
    return seen


@pytest.mark.parametrize(
    ("size", "limit", "shown"),
    [
        (200, LIMIT, "1000 bytes"),  # read in one go
        (2 * files.MIB, 2 * files.MIB, "2 MiB"),  # read in 1 MiB pieces, exactly at its bound when checked
    ],
)
def test_a_file_that_grows_while_read_is_read_only_to_its_bound(tmp_path, monkeypatch, size, limit, shown):
    path = tmp_path / "spec.json"
    path.write_bytes(b" " * size)
    seen = _growing(monkeypatch, path, 5 * files.MIB)
    with pytest.raises(files.FileError) as refused:
        files.read_bounded(path, limit, "--data", what="data file")
    assert str(refused.value) == f"{path}: --data: data file is over the limit of {shown}"
    assert seen["grown"] and seen["bytes"] == limit + 1  # one byte past the bound tells it is over, no more


def test_a_file_within_its_bound_is_read_whole(tmp_path):
    path = tmp_path / "spec.json"
    data = bytes(range(256)) * 3 + b"end"  # 771 bytes, under the limit
    path.write_bytes(data)
    assert files.read_bounded(path, LIMIT) == data
    several = bytes(range(251)) * 9000  # 2.2 MB: read in three pieces, joined as they were
    path.write_bytes(several)
    assert files.read_bounded(path, len(several)) == several
    path.write_bytes(b"y" * (LIMIT + 1))
    with pytest.raises(files.FileError, match=r"limit"):
        files.read_bounded(path, LIMIT)


def _swap_after_check(monkeypatch, path, swap):
    real = files.check_regular

    def check_then_swap(p, *args, **kwargs):
        st = real(p, *args, **kwargs)  # the path is a regular file when it is checked ...
        path.unlink()
        swap(path)  # ... and something else when it is opened
        return st

    monkeypatch.setattr(files, "check_regular", check_then_swap)


@pytest.mark.parametrize(
    "swap, kind",
    [
        (lambda p: os.mkfifo(p), "is a FIFO (named pipe)"),
        (lambda p: os.symlink("/dev/zero", p), "is a character device"),
    ],
)
def test_a_file_swapped_after_its_check_is_refused_by_its_descriptor(tmp_path, monkeypatch, swap, kind):
    path = tmp_path / "classes.json"
    path.write_text('{"class_names": ["a", "b"]}')
    _swap_after_check(monkeypatch, path, swap)
    with pytest.raises(files.FileError) as caught, _within(10):
        files.read_bounded(path, LIMIT, "--classes")
    assert str(caught.value) == f"{path}: --classes: {kind}, not a regular file; surgery reads only regular files"


def test_a_weights_file_swapped_for_a_fifo_after_its_check_does_not_block_its_signature_read(tmp_path, monkeypatch):
    path = tmp_path / "w.weights.h5"
    path.write_bytes(files.HDF5_SIGNATURE)
    _swap_after_check(monkeypatch, path, os.mkfifo)
    with pytest.raises(files.FileError) as caught, _within(10):  # opened without waiting for a writer, read empty
        files.check_hdf5(path, "weights")
    assert (
        str(caught.value)
        == f'{path}: weights: is not an HDF5 weights file (as model.save_weights("x.weights.h5") writes)'
    )


@contextlib.contextmanager
def _within(seconds):
    """Fail, not hang, when an open of a FIFO waits for a writer."""

    def hung(signum, frame):
        raise AssertionError(f"still blocked after {seconds} s")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _socket(path):
    import socket

    os.chdir(path.parent)  # a socket's path is limited to ~100 bytes: bind by its short relative name
    server = socket.socket(socket.AF_UNIX)
    server.bind(path.name)
    return server


@pytest.mark.parametrize(
    "make, says",
    [
        (os.mkfifo, "is a FIFO (named pipe), not a regular file; surgery reads only regular files"),
        (lambda p: os.symlink("/dev/null", p), "is a character device, not a regular file; surgery reads only"),
        (_socket, "is a socket, not a regular file; surgery reads only regular files"),
        (os.mkdir, "is a folder, not a file"),
    ],
    ids=["fifo", "device", "socket", "folder"],
)
def test_each_kind_of_not_a_file_is_named(tmp_path, monkeypatch, make, says):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "model.keras"
    made = make(path)
    try:
        with pytest.raises(files.FileError) as caught:
            files.check_regular(path)
        assert caught.value.message.startswith(says), caught.value.message
    finally:
        if made is not None:
            made.close()


def test_a_block_device_is_named_by_its_mode():
    # Making a block device needs root, so its mode is given as os.stat would report it.
    import stat

    assert files._not_regular(stat.S_IFBLK | 0o600).startswith("is a block device, not a regular file")
    # A mode of no kind os.stat knows: named as unknown, and "not a regular file" said once.
    assert files._not_regular(0) == "is an unknown kind of file, not a regular file; surgery reads only regular files"


@pytest.mark.parametrize(
    "make, says",
    [
        (lambda t: t / "missing.json", "no such file"),
        (lambda t: t / "file.json" / "inside.json", "no such file (a part of the path is not a folder)"),
        (lambda t: t / ("x" * 300), "cannot be read: File name too long"),
        (lambda t: t, "is a folder, not a file"),
    ],
)
def test_a_path_that_is_not_a_readable_file_is_one_line_naming_the_file_and_the_step(tmp_path, make, says):
    (tmp_path / "file.json").write_text("{}")
    path = make(tmp_path)
    with pytest.raises(files.FileError) as refused:
        files.read_bounded(path, 100, "steps[0] (backbone)")
    assert str(refused.value) == f"{path}: steps[0] (backbone): {says}"


def test_a_file_over_its_bound_is_refused_by_its_size_before_it_is_read(tmp_path):
    path = tmp_path / "big.json"
    path.write_bytes(b" " * 1_500_000)
    with pytest.raises(files.FileError) as refused:
        files.read_bounded(path, 1000, "--data")
    assert str(refused.value) == f"{path}: --data: file is 1.5 MB; the limit is 1000 bytes"


@pytest.mark.parametrize(
    "limit, says",
    [
        (64 << 20, "64 MiB"),
        (4 << 30, "4 GiB"),
        (3 << 29, "1536 MiB"),
        (1 << 20, "1024 KiB"),
        (2048, "2 KiB"),
        (1536, "1536 bytes"),
    ],
)
def test_a_limit_is_written_as_it_was_chosen(limit, says):
    assert files._limit(limit) == says


def test_a_size_over_the_bound_is_shown_in_megabytes_of_a_million_bytes(tmp_path):
    path = tmp_path / "big.npz"
    with open(path, "wb") as f:
        f.truncate(1_250_001)  # 1.250001 MB: 1.3, where dividing by anything above 1e6 shows 1.2
    with pytest.raises(files.FileError) as refused:
        files.read_bounded(path, files.MIB, "--data")
    assert str(refused.value) == f"{path}: --data: file is 1.3 MB; the limit is 1024 KiB"


def _fail(code):
    def call(*args):
        raise OSError(code, os.strerror(code))

    return call


@pytest.mark.parametrize(
    ("fails", "says"),
    [
        ("open", "cannot be read: Permission denied"),
        ("read", "cannot be read: Input/output error"),
        (None, "no such file"),
    ],
)
def test_a_file_that_cannot_be_read_is_the_callers_error_naming_the_file_and_the_step(
    tmp_path, monkeypatch, fails, says
):
    path = tmp_path / "spec.json"
    if fails:
        path.write_text("{}")
        monkeypatch.setattr(files.os, fails, _fail(errno.EACCES if fails == "open" else errno.EIO))
    with pytest.raises(CallersError) as refused:
        files.read_bounded(path, LIMIT, "steps[1] (freeze)", error=CallersError)
    assert str(refused.value) == f"{path}: steps[1] (freeze): {says}"
