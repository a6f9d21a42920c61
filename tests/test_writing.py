"""writing's pieces called directly, each on the input where a plausible wrong version differs: what ``-o``
means, which folders are surgery's, what ``--force`` may replace, the no-clobber move with and without
renameat2, and Outputs placing all or none. The commands' tests (test_data_loss, test_atomic_outputs) show the
same behaviour end to end with real kills; these run without TensorFlow, in well under a second."""

from __future__ import annotations

import ctypes
import errno
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from surgery import errors
from surgery.io import writing
from surgery.io.writing import OutputError, Outputs


def _says(call, *args, **kwargs) -> str:
    with pytest.raises(OutputError) as refused:
        call(*args, **kwargs)
    return str(refused.value)


def test_dash_o_is_a_file_by_its_suffix_a_folder_otherwise_and_a_typo_is_refused(tmp_path):
    assert writing.output_path(None, "m", ".keras") == (Path("m.keras"), False)
    assert writing.output_path(str(tmp_path / "x.keras"), "m", ".keras") == (tmp_path / "x.keras", False)
    assert writing.output_path(str(tmp_path / "out"), "m", ".keras") == (tmp_path / "out" / "m.keras", True)
    (tmp_path / "v1.2").mkdir()  # an existing folder whose name has a dot is a folder, not a typo
    (tmp_path / "runs.old").mkdir()
    assert writing.output_path(str(tmp_path / "runs.old"), "m", ".onnx") == (tmp_path / "runs.old" / "m.onnx", True)
    assert writing.output_path(str(tmp_path / "v1.2"), "m", ".onnx")[0] == tmp_path / "v1.2" / "m.onnx"
    assert writing.output_path(str(tmp_path / "new.v2_1"), "m", ".onnx")[0] == tmp_path / "new.v2_1" / "m.onnx"
    says = _says(writing.output_path, "model.txt", "m", ".keras")
    assert (
        says
        == "model.txt: -o: ends in .txt, but this output ends in .keras: give a path ending in .keras, or a folder to write it in"
    )
    assert "ends in .abcdefghij" in _says(writing.output_path, "m.abcdefghij", "m", ".keras")  # 10 characters
    assert "ends in .H5, but" in _says(writing.output_path, "m.H5", "m", ".keras")
    assert writing.output_path("m.abcdefghijk", "m", ".keras")[1]  # 11: not a format's suffix


def _marker(folder: Path, text: str) -> Path:
    folder.mkdir()
    (folder / writing.MARKER).write_text(text)
    return folder


def test_a_folder_is_surgerys_only_with_a_small_regular_marker_holding_an_object(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    writing.mark_folder(mine, "run", spec="s.json")
    marker = json.loads((mine / writing.MARKER).read_text())
    assert marker["kind"] == "run" and marker["spec"] == "s.json" and marker["surgery"]
    assert writing.is_surgery_folder(mine) and writing.is_surgery_folder(mine, "run")
    assert not writing.is_surgery_folder(mine, "output")
    assert not writing.is_surgery_folder(_marker(tmp_path / "list", "[1]"))
    assert not writing.is_surgery_folder(_marker(tmp_path / "text", "not json"))
    assert writing.is_surgery_folder(_marker(tmp_path / "big", json.dumps({"pad": "x" * 4085})))  # 4,096 bytes
    assert not writing.is_surgery_folder(_marker(tmp_path / "huge", json.dumps({"pad": "x" * 4086})))
    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / writing.MARKER).symlink_to(mine / writing.MARKER)  # someone else's folder borrowing a marker
    assert not writing.is_surgery_folder(linked)
    assert not writing.is_surgery_folder(tmp_path)


FORCE_ONLY = "surgery replaces only regular files and folders it wrote"


def _kinds(tmp_path):
    (tmp_path / "file").write_text("x")
    (tmp_path / "link").symlink_to(tmp_path / "file")
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "foreign").mkdir()
    writing.mark_folder(_marker(tmp_path / "ours", "{}"), "output")
    return tmp_path


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("file", None),
        ("ours", None),
        ("link", f"is a symbolic link; {FORCE_ONLY}"),
        ("fifo", f"is a FIFO (named pipe); {FORCE_ONLY}"),
        (
            "foreign",
            f"is a folder that surgery did not write (no .surgery marker in it); {FORCE_ONLY}: remove it "
            "yourself or choose another path",
        ),
    ],
)
def test_force_may_replace_a_regular_file_and_a_folder_surgery_wrote_only(tmp_path, name, why):
    path = _kinds(tmp_path) / name
    assert writing._replaceable(path, os.lstat(path)) == why
    if why:
        assert _says(writing.check_output, path, True, "-o") == f"{path}: -o: {why}"
    else:
        assert writing.check_output(path, True, "-o") is None
        assert (
            _says(writing.check_output, path, False, "-o")
            == f"{path}: -o: already exists; pass --force to overwrite it"
        )


def test_a_socket_is_named_as_what_force_will_not_replace(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a socket's path is limited to about 100 bytes
    server = socket.socket(socket.AF_UNIX)
    server.bind("s")
    try:
        assert writing._replaceable(Path("s"), os.lstat("s")) == f"is a socket; {FORCE_ONLY}"
    finally:
        server.close()


def test_an_output_is_checked_before_the_work_naming_the_step(tmp_path, monkeypatch):
    (tmp_path / "in.keras").write_text("model")
    (tmp_path / "file").write_text("x")
    long = tmp_path / ("n" * 250 + ".keras")  # 256 bytes
    assert _says(writing.check_output, long, False, "outputs.keras") == (
        f'{long}: outputs.keras: the file name is 256 bytes; file systems allow 255 (give the spec a shorter "name", '
        "or -o a shorter path)"
    )
    assert writing.check_output(tmp_path / ("n" * 249 + ".keras"), False, "-o") is None  # 255 bytes
    source = tmp_path / "in.keras"
    (tmp_path / "alias.keras").symlink_to(source)
    assert _says(writing.check_output, tmp_path / "alias.keras", True, "-o", inputs=["other", source]) == (
        f"{tmp_path / 'alias.keras'}: -o: is also an input of this command ({source}); writing it would destroy "
        "the input, so choose another output path"
    )
    missing = tmp_path / "a" / "b" / "m.keras"
    assert _says(writing.check_output, missing, False, "-o", may_create_folder=True) == (
        f"{missing}: -o: the folder {missing.parent} does not exist; create it or choose another output path"
    )
    assert writing.check_output(tmp_path / "a" / "m.keras", False, "-o", may_create_folder=True) is None
    assert not (tmp_path / "a").exists()  # created when written to, not when checked
    assert _says(writing.check_output, tmp_path / "a" / "m.keras", False, "-o") == (
        f"{tmp_path / 'a' / 'm.keras'}: -o: the folder {tmp_path / 'a'} does not exist; create it or choose another "
        "output path"
    )
    inside_a_file = tmp_path / "file" / "m.keras"
    assert (
        _says(writing.check_output, inside_a_file, False, "-o")
        == f"{inside_a_file}: -o: {tmp_path / 'file'} is not a folder"
    )
    read_only = {str(tmp_path)}  # the tests run as root, for whom every folder is writable: the check is asked
    monkeypatch.setattr(writing.os, "access", lambda p, mode: str(p) not in read_only)
    assert _says(writing.check_output, tmp_path / "m.keras", False, "-o") == (
        f"{tmp_path / 'm.keras'}: -o: the folder {tmp_path} is not writable"
    )
    assert _says(writing.check_output, tmp_path / "new" / "m.keras", False, "-o", may_create_folder=True) == (
        f"{tmp_path / 'new' / 'm.keras'}: -o: cannot create the folder {tmp_path / 'new'}: {tmp_path} is not writable"
    )


def test_a_partial_files_name_fits_the_file_system_and_says_its_writer(tmp_path):
    short = writing.temporary_sibling(tmp_path / "m.keras", pid=4321)
    assert short.parent == tmp_path and short.name.startswith(".m.partial-4321.") and short.suffix == ".keras"
    assert len(short.name) == len(".m.partial-4321.") + 8 + len(".keras")
    assert writing.temporary_sibling(tmp_path / "m.keras", pid=4321) != short  # two writers of one process
    longest = writing.temporary_sibling(tmp_path / ("a" + "é" * 120 + ".keras"), pid=9_999_999_999)  # cut inside an é
    assert len(os.fsencode(longest.name)) <= writing.NAME_MAX and longest.suffix == ".keras"
    assert len(os.fsencode(longest.name)) >= writing.NAME_MAX - 1  # the stem is cut, not dropped
    assert writing.temporary_sibling(tmp_path / "m.keras").name.startswith(f".m.partial-{os.getpid()}.")


def test_remove_takes_a_file_a_folder_or_a_link_and_never_what_a_link_points_to(tmp_path):
    folder = tmp_path / "f"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "x").write_text("x")
    (tmp_path / "to_folder").symlink_to(folder)
    writing.remove(tmp_path / "to_folder")
    assert (folder / "sub" / "x").exists() and not os.path.lexists(tmp_path / "to_folder")
    writing.remove(folder)
    writing.remove(tmp_path / "never_there")
    assert list(tmp_path.iterdir()) == []


def _exists(call, *args) -> None:
    with pytest.raises(FileExistsError) as refused:
        call(*args)
    assert (refused.value.errno, refused.value.strerror, refused.value.filename) == (
        errno.EEXIST,
        "File exists",
        str(args[-1]),
    )


@pytest.mark.parametrize("renameat2", [True, False], ids=["renameat2", "link-then-unlink"])
def test_the_no_clobber_move_never_replaces(tmp_path, monkeypatch, renameat2):
    monkeypatch.chdir(tmp_path)  # relative paths: renameat2 resolves them against the folder it is given
    tmp_path = Path(".")
    if renameat2:  # this machine's file system has renameat2: no fallback may be taken
        monkeypatch.setattr(writing.os, "link", None)
        monkeypatch.setattr(writing.os, "rename", None)
        ctypes.set_errno(0)  # ctypes' saved errno, which a call made without use_errno would read
    else:
        monkeypatch.setattr(writing, "_renameat2", lambda: None)
    (tmp_path / "src").write_text("new")
    (tmp_path / "dst").write_text("old")
    _exists(writing.rename_noreplace, tmp_path / "src", tmp_path / "dst")
    assert (tmp_path / "dst").read_text() == "old" and (tmp_path / "src").exists()
    writing.rename_noreplace(tmp_path / "src", tmp_path / "placed")
    assert (tmp_path / "placed").read_text() == "new" and not (tmp_path / "src").exists()
    (tmp_path / "folder").mkdir()
    (tmp_path / "taken").mkdir()
    _exists(writing.rename_noreplace, tmp_path / "folder", tmp_path / "taken")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    _exists(writing.rename_noreplace, tmp_path / "folder", tmp_path / "dangling")
    writing.rename_noreplace(tmp_path / "folder", tmp_path / "moved")
    assert (tmp_path / "moved").is_dir() and not (tmp_path / "folder").exists()


def test_a_failing_renameat2_is_the_error_it_reports(tmp_path, monkeypatch):
    def refusing(code):
        def call(*args):
            import ctypes

            ctypes.set_errno(code)
            return -1

        return lambda: call

    (tmp_path / "src").write_text("x")
    monkeypatch.setattr(writing, "_renameat2", refusing(errno.EACCES))
    with pytest.raises(OSError) as failed:
        writing.rename_noreplace(tmp_path / "src", tmp_path / "dst")
    assert not isinstance(failed.value, FileExistsError)
    assert (failed.value.errno, failed.value.strerror, failed.value.filename) == (
        errno.EACCES,
        "Permission denied",
        str(tmp_path / "dst"),
    )
    monkeypatch.setattr(writing, "_renameat2", refusing(errno.EINVAL))  # a file system without it: the fallback
    writing.rename_noreplace(tmp_path / "src", tmp_path / "dst")
    assert (tmp_path / "dst").read_text() == "x"


def test_place_replaces_with_force_only_what_it_may(tmp_path):
    _kinds(tmp_path)
    (tmp_path / "tmp").write_text("new")
    assert _says(writing.place, tmp_path / "tmp", tmp_path / "file", False) == (
        f"{tmp_path / 'file'}: already exists (written by another run meanwhile); nothing was overwritten; pass "
        "--force to overwrite it"
    )
    writing.place(tmp_path / "tmp", tmp_path / "file", True)
    assert (tmp_path / "file").read_text() == "new"
    (tmp_path / "tmp").write_text("new")
    assert (
        _says(writing.place, tmp_path / "tmp", tmp_path / "link", True)
        == f"{tmp_path / 'link'}: is a symbolic link; {FORCE_ONLY}"
    )
    (tmp_path / "tmp_folder").mkdir()
    (tmp_path / "tmp_folder" / "saved_model.pb").write_text("pb")
    writing.place(tmp_path / "tmp_folder", tmp_path / "ours", True)  # a folder replaces surgery's folder
    assert sorted(p.name for p in (tmp_path / "ours").iterdir()) == ["saved_model.pb"]
    assert not [p for p in tmp_path.iterdir() if ".old-" in p.name]
    (tmp_path / "tmp_folder").mkdir()
    writing.place(tmp_path / "tmp_folder", tmp_path / "file", True)  # and a regular file
    assert (tmp_path / "file").is_dir()


def test_a_folder_that_cannot_be_placed_puts_the_old_one_back(tmp_path, monkeypatch):
    writing.mark_folder(_marker(tmp_path / "ours", "{}"), "output")
    (tmp_path / "ours" / "keep").write_text("old")
    (tmp_path / "new").mkdir()

    def fails(src, dst):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(writing, "rename_noreplace", fails)
    with pytest.raises(OSError):
        writing.place(tmp_path / "new", tmp_path / "ours", True)
    assert (tmp_path / "ours" / "keep").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new", "ours"]


def test_outputs_are_placed_all_or_none(tmp_path):
    (tmp_path / "b.onnx").write_text("someone's")
    with pytest.raises(OutputError) as refused:
        with Outputs() as outputs:
            for name in ("a.keras", "b.onnx"):
                outputs.stage(tmp_path / name).write_text(name)
            outputs.commit()
    assert str(refused.value).startswith(f"{tmp_path / 'b.onnx'}: already exists (written by another run")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.onnx"]  # a.keras taken back, no partial left
    assert (tmp_path / "b.onnx").read_text() == "someone's"
    with Outputs(force=True) as outputs:
        staged = [outputs.stage(tmp_path / n) for n in ("a.keras", "b.onnx", "sub/c.json")]
        for path in staged:
            path.write_text(path.suffix)
        assert outputs.staged_paths == [tmp_path / "a.keras", tmp_path / "b.onnx", tmp_path / "sub" / "c.json"]
        outputs.commit()
    assert [(tmp_path / n).read_text() for n in ("a.keras", "b.onnx", "sub/c.json")] == [".keras", ".onnx", ".json"]


def test_leaving_without_commit_removes_the_partials_and_the_folders_it_made(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with Outputs() as outputs:
            outputs.stage(tmp_path / "new" / "m.keras").write_text("half")
            outputs.stage(tmp_path / "m.onnx").mkdir()
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []
    with Outputs() as outputs:
        outputs.stage(tmp_path / "shared" / "m.keras")
        (tmp_path / "shared" / "theirs.txt").write_text("written meanwhile by someone else")
    assert [p.name for p in (tmp_path / "shared").iterdir()] == ["theirs.txt"]


def test_an_output_that_cannot_be_placed_takes_back_the_ones_placed_before_it(tmp_path, monkeypatch):
    real_place = writing.place

    def place(tmp, path, force):
        if path.name == "c.json":
            (tmp_path / "b.onnx").unlink()  # someone removed an output this commit placed: nothing to take back
            raise OSError(errno.EROFS, "Read-only file system")
        real_place(tmp, path, force)

    monkeypatch.setattr(writing, "place", place)
    with pytest.raises(OutputError) as refused, Outputs() as outputs:
        for name in ("a.keras", "b.onnx", "c.json"):
            outputs.stage(tmp_path / name).write_text(name)
        outputs.commit()
    assert (
        str(refused.value)
        == f"{tmp_path / 'c.json'}: cannot be written: the file system is read-only; nothing was written"
    )
    assert list(tmp_path.iterdir()) == []


def test_a_write_that_fails_is_one_line_naming_the_output_and_the_reason(tmp_path):
    with pytest.raises(OutputError) as refused:
        with Outputs() as outputs:
            for name in ("m.keras", "m.onnx", "m.tflite"):  # the one being written when it failed is the last
                outputs.stage(tmp_path / name)
            raise OSError(errno.ENOSPC, "No space left on device")
    assert (
        str(refused.value)
        == f"{tmp_path / 'm.tflite'}: cannot be written: no space left on the device; nothing was written"
    )
    assert outputs.staged_paths == [] and list(tmp_path.iterdir()) == []
    with pytest.raises(OutputError) as refused, Outputs() as outputs:
        outputs.stage(tmp_path / "missing" / "deeper" / "m.keras")
    assert str(refused.value) == (
        f"{tmp_path / 'missing' / 'deeper' / 'm.keras'}: cannot be written: No such file or directory; nothing was written"
    )
    with pytest.raises(OSError):  # nothing staged: the error is not about an output
        with Outputs():
            raise OSError(errno.EIO, "Input/output error")


def test_a_stop_asked_for_before_commit_places_nothing_unless_it_is_the_record_of_the_stop(tmp_path, monkeypatch):
    monkeypatch.setattr(errors, "_stop_signal", 15)
    with pytest.raises(errors.Terminated), Outputs() as outputs:
        outputs.stage(tmp_path / "m.keras").write_text("x")
        outputs.commit()
    assert list(tmp_path.iterdir()) == []
    with Outputs() as outputs:
        outputs.stage(tmp_path / "results.csv").write_text("variant,status\na,interrupted\n")
        outputs.commit(record_of_stop=True)
    assert (tmp_path / "results.csv").read_text().endswith("a,interrupted\n")


def test_a_staged_folder_is_marked_as_surgerys_when_placed(tmp_path):
    with Outputs() as outputs:
        outputs.stage(tmp_path / "m.savedmodel").mkdir()
        outputs.commit()
    assert writing.is_surgery_folder(tmp_path / "m.savedmodel", "output")


def test_strict_json_writes_null_for_nan_and_infinities_at_any_depth():
    data = {"loss": float("nan"), "history": [1.5, float("inf"), {"x": (float("-inf"), 2)}], "n": 3}
    assert json.loads(writing.strict_json(data)) == {"loss": None, "history": [1.5, None, {"x": [None, 2]}], "n": 3}
    assert writing.strict_json([1.0], indent=None) == "[1.0]"
    assert writing.strict_json({"a": 1}) == '{\n  "a": 1\n}'


def test_only_partials_of_dead_processes_are_removed(tmp_path):
    out = tmp_path / "m.keras"
    mine = writing.temporary_sibling(out)
    running = subprocess.Popen(["sleep", "60"])  # another writer that still runs
    parent = writing.temporary_sibling(out, pid=running.pid)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    stale = writing.temporary_sibling(out, pid=gone.pid)  # a writer killed mid-save
    others = [
        tmp_path / f".m.partial-{gone.pid}.0badc0de.onnx",  # another output's partial
        tmp_path / f".n.partial-{gone.pid}.0badc0de.keras",
        tmp_path / ".m.partial-x1.0badc0de.keras",  # not written by surgery
        tmp_path / f".m.partial-{os.getpid()}.12345678.keras",  # this process's, a digit-only token
    ]
    for path in (mine, parent, stale, *others):
        path.write_text("x")
    stale_folder = tmp_path / f".m.partial-{gone.pid}.12345678.keras"  # a SavedModel's partial is a folder
    (stale_folder / "variables").mkdir(parents=True)
    try:
        writing.remove_stale_partials(out)
        assert running.poll() is None  # asked whether it runs (signal 0), not signalled
    finally:
        running.kill()
        running.wait()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in (mine, parent, *others))


def test_a_killed_writers_partial_of_a_long_name_is_removed_whatever_its_pid(tmp_path):
    """The stem is cut to make room for the pid: a writer whose pid has fewer or more digits than this
    process's must leave a partial this process still recognises."""
    out = tmp_path / ("n" * 240 + ".keras")
    never = int(Path("/proc/sys/kernel/pid_max").read_text())  # pids stay below it: no process has it
    stale = [writing.temporary_sibling(out, pid=pid) for pid in (never, never * 100)]  # 7 and 9 digits here
    for path in stale:
        path.write_text("x")
    writing.remove_stale_partials(out)
    assert list(tmp_path.iterdir()) == []


def test_a_process_of_another_user_counts_as_running(monkeypatch):
    def not_permitted(pid, sig):
        raise PermissionError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(writing.os, "kill", not_permitted)
    assert writing._alive(1)
