"""files' readers of archives, HDF5 and JSON files, called directly on files made to sit at each bound: the
archive's declared sizes (a member's limit, the decompression-bomb ratio), a member that is damaged or lies
about its size, HDF5 files that are empty, foreign or reach outside themselves, JSON that is not text, and
two names of one file. The commands' tests show the same lines end to end; these pin each figure and edge."""

from __future__ import annotations

import os
import struct
import zipfile

import pytest

from surgery.io import files

from helpers import CallersError

MEMBER = "config.json"


def _archive(path, data=b"x" * 100, *, file_size=None, compress_size=None, compression=zipfile.ZIP_STORED, more=()):
    """A zip of one member whose central directory declares the given sizes (what a hostile file can claim:
    zipfile lists members from that directory without reading them)."""
    with zipfile.ZipFile(path, "w", compression=compression) as archive:
        archive.writestr(MEMBER, data)
        for name, body in more:
            archive.writestr(name, body)
    raw = bytearray(path.read_bytes())
    at = raw.index(b"PK\x01\x02")  # the first member's central directory entry
    if compress_size is not None:
        struct.pack_into("<I", raw, at + 20, compress_size)
    if file_size is not None:
        struct.pack_into("<I", raw, at + 24, file_size)
    path.write_bytes(bytes(raw))
    return path


def _refused(call, *args, **kwargs) -> str:
    with pytest.raises(files.FileError) as refused:
        call(*args, **kwargs)
    return str(refused.value)  # file: step: message, as the command prints it


# the first declared size over the floor that is a whole multiple of the ratio: 268,435,500 bytes
BOMB = (files.BOMB_FLOOR // files.MAX_EXPANSION + 1) * files.MAX_EXPANSION


@pytest.mark.parametrize(
    ("stored", "refused"),
    [
        (BOMB // files.MAX_EXPANSION, None),  # exactly the largest ratio allowed
        (BOMB // files.MAX_EXPANSION - 1, "2.6 MiB"),  # one stored byte fewer: over the ratio
        (0, "0 bytes"),  # nothing stored at all
    ],
)
def test_a_member_over_the_bomb_floor_is_refused_by_its_expansion_ratio(tmp_path, stored, refused):
    path = _archive(tmp_path / "a.zip", file_size=BOMB, compress_size=stored)
    if refused:
        says = _refused(files.check_archive, path, "data", what="npz")
        assert (
            says
            == f"{path}: data: its member {MEMBER} declares 256.0 MiB from {refused} stored: a decompression bomb, refused"
        )
    else:
        assert [m.file_size for m in files.check_archive(path)] == [BOMB]


def test_a_member_at_the_bomb_floor_is_not_a_bomb_however_small_it_is_stored(tmp_path):
    path = _archive(tmp_path / "a.zip", file_size=files.BOMB_FLOOR, compress_size=1)
    assert [m.filename for m in files.check_archive(path)] == [MEMBER]


def test_a_member_over_its_own_limit_is_refused_and_one_at_it_is_kept(tmp_path):
    path = _archive(tmp_path / "a.zip", b"{}" * 50, more=[("other", b"y" * 300)])
    limits = {MEMBER: 100, "absent": 1}
    assert [m.filename for m in files.check_archive(path, limits=limits)] == [MEMBER, "other"]
    says = _refused(files.check_archive, path, "source", limits={MEMBER: 99})
    assert says == f"{path}: source: its member {MEMBER} declares 100 bytes; the limit is 99 bytes"


@pytest.mark.parametrize(
    ("body", "what", "says"),
    [
        (b"PK\x03\x04 not really", None, "is not a zip archive"),
        (b"", ".keras file", "is not a .keras file"),
    ],
)
def test_a_file_that_is_no_archive_is_named_as_what_was_expected(tmp_path, body, what, says):
    path = tmp_path / "m.keras"
    path.write_bytes(body)
    kwargs = {"what": what} if what else {}
    assert _refused(files.check_archive, path, "--data", **kwargs) == f"{path}: --data: {says}"


def test_a_member_is_read_to_its_limit_and_an_absent_one_is_none(tmp_path):
    path = _archive(tmp_path / "a.zip", b"0123456789", compression=zipfile.ZIP_DEFLATED)
    assert files.read_member(path, MEMBER, 10) == b"0123456789"
    assert files.read_member(path, "metadata.json", 10) is None
    says = _refused(files.read_member, path, MEMBER, 9, "model")
    assert says == f"{path}: model: its member {MEMBER} declares 10 bytes; the limit is 9 bytes"


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_a_member_that_lies_about_its_size_or_is_damaged_is_one_line(tmp_path, compression):
    liar = _archive(tmp_path / "liar.zip", b"x" * 100, file_size=10, compression=compression)
    says = _refused(files.read_member, liar, MEMBER, 50)
    assert says == f"{liar}: its member {MEMBER} cannot be read: Bad CRC-32 for file '{MEMBER}'"
    flipped = _archive(tmp_path / "flipped.zip", b"a" * 100)
    raw = bytearray(flipped.read_bytes())
    raw[raw.index(b"aaaa")] = ord("b")
    flipped.write_bytes(bytes(raw))
    assert "cannot be read: Bad CRC-32" in _refused(files.read_member, flipped, MEMBER, 1000)


@pytest.mark.parametrize(
    ("n", "shown"),
    [
        (1023, "1023 bytes"),
        (1024, "1 KiB"),
        (files.MIB - 1, "1024 KiB"),
        (files.MIB, "1.0 MiB"),
        (files.GIB - files.MIB, "1023.0 MiB"),
        (files.GIB, "1.0 GiB"),
        (3 * files.GIB // 2, "1.5 GiB"),
    ],
)
def test_a_declared_size_is_shown_in_its_unit(n, shown):
    assert files._size(n) == shown


H5 = files.HDF5_SIGNATURE


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"", "the weights file is empty"),
        (H5[:-1], 'is not an HDF5 weights file (as model.save_weights("x.weights.h5") writes)'),
        (b"x" + H5, 'is not an HDF5 weights file (as model.save_weights("x.weights.h5") writes)'),
    ],
)
def test_a_weights_file_must_start_with_the_hdf5_signature(tmp_path, body, says):
    path = tmp_path / "w.weights.h5"
    path.write_bytes(body)
    assert _refused(files.check_hdf5, path, "backbone") == f"{path}: backbone: {says}"
    path.write_bytes(H5 + b"\0")
    assert files.check_hdf5(path) is None


def test_read_head_reads_only_the_head(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"0123456789")
    assert files.read_head(path, 4) == b"0123"
    assert files.read_head(path, 40) == b"0123456789"


def _h5(path, make):
    import h5py  # a dependency of Keras: always installed, so never skipped

    with h5py.File(path, "w") as f:
        make(h5py, f)
    return path


def test_an_hdf5_file_that_reaches_outside_itself_is_refused_by_what_it_reaches(tmp_path):
    other = _h5(tmp_path / "other.h5", lambda h5py, f: f.create_dataset("secret", data=[1, 2, 3]))
    top = _h5(tmp_path / "top.h5", lambda h5py, f: f.__setitem__("leak", h5py.ExternalLink(str(other), "/secret")))
    says = _refused(files.check_hdf5_links, top, "weights")
    assert (
        says
        == f'{top}: weights: refused: the weights file reaches outside itself: "/leak" is an external link to {other}'
    )

    def deep(h5py, f):
        f.create_group("layers/dense")["vars"] = h5py.ExternalLink(str(other), "/secret")

    nested = _h5(tmp_path / "nested.h5", deep)
    assert _refused(files.check_hdf5_links, nested).endswith(f'"layers/dense/vars" is an external link to {other}')

    def stored_outside(h5py, f):
        f.create_dataset("layers/w", shape=(4,), dtype="u1", external=[(str(other), 0, 4)])

    external = _h5(tmp_path / "external.h5", stored_outside)
    says = _refused(files.check_hdf5_links, external)
    assert says.endswith('reaches outside itself: dataset "layers/w" stores its data in another file')


def test_an_hdf5_file_of_its_own_groups_and_data_passes_and_a_truncated_one_is_damaged(tmp_path):
    good = _h5(tmp_path / "good.h5", lambda h5py, f: f.create_group("a/b").create_dataset("w", data=[1.0] * 1000))
    assert files.check_hdf5_links(good) is None
    cut = tmp_path / "cut.h5"
    cut.write_bytes(good.read_bytes()[:600])
    says = _refused(files.check_hdf5_links, cut, "weights")
    assert says.startswith(f"{cut}: weights: the weights file is damaged or truncated (")


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b'{"a": "\xe9"}', "not UTF-8 text (byte 0xe9 at offset 7)"),
        (b'{"a": 1,\n "b": }', "not valid JSON: Expecting value at line 2 column 7"),
        (b'{"a": 1, "a": 2}', 'not valid here: duplicate key "a" in one object (the second would silently win)'),
        (b"[" * 100_000, "JSON nested too deeply"),
    ],
)
def test_a_json_file_that_is_not_usable_is_one_line_naming_why(tmp_path, body, says):
    path = tmp_path / "classes.json"
    path.write_bytes(body)
    assert _refused(files.read_json, path, 1 << 20, "--classes") == f"{path}: --classes: {says}"


def test_a_json_file_is_read_within_its_bound_and_named_as_what_it_is(tmp_path):
    path = tmp_path / "state.json"
    path.write_bytes(b'{"epoch": 3}')
    assert files.read_json(path, 12) == {"epoch": 3}
    assert (
        _refused(files.read_json, path, 11, what="run state") == f"{path}: run state is 0.0 MB; the limit is 11 bytes"
    )


def test_two_names_of_one_file_are_the_same_file(tmp_path):
    a = tmp_path / "a"
    a.write_text("x")
    os.link(a, tmp_path / "hard")
    os.symlink(a, tmp_path / "soft")
    (tmp_path / "b").write_text("x")
    assert files.same_file(a, tmp_path / "hard") and files.same_file(tmp_path / "soft", a)
    assert not files.same_file(a, tmp_path / "b")
    # a missing file is the same only as the same path, however it is written
    assert files.same_file(tmp_path / "new", tmp_path / "x" / ".." / "new")
    assert not files.same_file(tmp_path / "new", tmp_path / "other")


@pytest.mark.parametrize(
    "check",
    [
        lambda p, w: files.check_archive(p, w, error=CallersError),
        lambda p, w: files.check_hdf5(p, w, error=CallersError),
        lambda p, w: files.read_json(p, 100, w, error=CallersError),
    ],
    ids=["archive", "hdf5", "json"],
)
def test_a_missing_file_is_the_callers_error_naming_the_file_and_the_step(tmp_path, check):
    with pytest.raises(CallersError) as refused:
        check(tmp_path / "gone", "steps[0] (backbone)")
    assert str(refused.value) == f"{tmp_path / 'gone'}: steps[0] (backbone): no such file"


def test_a_json_file_over_its_bound_is_called_a_file_unless_named(tmp_path):
    path = tmp_path / "spec.json"
    path.write_bytes(b"[" + b"0," * 999 + b"0]")
    with pytest.raises(CallersError) as refused:
        files.read_json(path, 1000, "spec", error=CallersError)
    assert str(refused.value) == f"{path}: spec: file is 0.0 MB; the limit is 1000 bytes"


def test_a_member_that_cannot_be_read_names_the_step_and_cuts_a_long_reason(tmp_path):
    long_name = "layers/" + "n" * 250 + ".json"
    path = tmp_path / "m.keras"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(long_name, b"a" * 100)
    raw = bytearray(path.read_bytes())
    raw[raw.index(b"aaaa")] = ord("b")
    path.write_bytes(bytes(raw))
    with pytest.raises(CallersError) as refused:
        files.read_member(path, long_name, 1000, "backbone", error=CallersError)
    reason = f"Bad CRC-32 for file '{long_name}'"
    assert str(refused.value) == f"{path}: backbone: its member {long_name} cannot be read: {reason[:197]}..."


def test_a_damaged_hdf5_file_is_one_line_with_the_readers_reason_cut_short(tmp_path, monkeypatch):
    import h5py  # a dependency of Keras: always installed, so never skipped

    path = tmp_path / "w.h5"
    path.write_bytes(H5 + b"\0" * 100)

    def damaged(*args, **kwargs):
        raise OSError("Unable to synchronously open file\n  (truncated file: " + "eof " * 100 + ")")

    monkeypatch.setattr(h5py, "File", damaged)
    with pytest.raises(CallersError) as refused:
        files.check_hdf5_links(path, "weights", error=CallersError)
    reason = "Unable to synchronously open file (truncated file: " + "eof " * 100
    assert str(refused.value) == f"{path}: weights: the weights file is damaged or truncated ({reason[:197]}...)"
