"""A run killed while it saves leaves the previous file intact (or none), never a truncated one."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import zipfile

import pytest
from fault_plugins import Hold

from surgery.io.writing import remove_stale_partials, temporary_sibling

SMALL = {"op": "backbone", "name": "vgg16", "weights": None, "include_top": False, "input_shape": [32, 32, 3]}


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None


def _partials(folder):
    return sorted(p.name for p in folder.iterdir() if ".partial-" in p.name)


@pytest.mark.slow
def test_sigkill_during_save_never_truncates(tmp_path):
    """Killed inside the save (the .keras written, the second output half written): the old files stay whole."""
    hold = Hold(tmp_path / "hold")
    out = tmp_path / "out"
    out.mkdir()
    spec = out / "spec.json"
    spec.write_text(
        json.dumps(
            {
                "surgery": 1,
                "name": "m",
                "steps": [SMALL, {"op": "slice", "layers": ":4"}],
                "outputs": {"keras": "m.keras", "hold": "m.hold"},
            }
        )
    )
    outputs = [out / "m.keras", out / "m.hold"]

    def run(kill: bool):
        proc = hold.start("apply", spec, "--force", stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            hold.held(proc)
            if kill:
                proc.send_signal(signal.SIGKILL)
                proc.wait(timeout=60)
            hold.release()
            assert proc.wait(timeout=120) == (-signal.SIGKILL if kill else 0), proc.stderr.read()
        finally:
            hold.release()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stderr.close()
        return proc.pid

    run(kill=False)  # the complete outputs a killed run must not damage
    before = [_digest(p) for p in outputs]
    with zipfile.ZipFile(outputs[0]) as archive:
        assert archive.testzip() is None
    killed = run(kill=True)
    assert [_digest(p) for p in outputs] == before, "a killed save changed the previous outputs"
    # A SIGKILL runs no cleanup: the killed run's partial files are still there, both of them.
    assert [name.split(".partial-")[0] for name in _partials(out)] == [".m", ".m"]
    assert all(f"-{killed}." in name for name in _partials(out))
    run(kill=False)
    # The next run removed the partial files of the dead one before it wrote, and placed whole files.
    assert _partials(out) == []
    assert outputs[1].read_bytes() == b"the first half and the second"
    with zipfile.ZipFile(outputs[0]) as archive:
        assert archive.testzip() is None


def test_only_partials_of_dead_processes_are_removed(tmp_path):
    out = tmp_path / "m.keras"
    mine = temporary_sibling(out)
    mine.write_text("in progress")
    parent = temporary_sibling(out, pid=os.getppid())
    parent.write_text("another live writer")
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    stale = temporary_sibling(out, pid=gone.pid)
    stale.write_text("killed mid-save")
    remove_stale_partials(out)
    assert mine.exists() and parent.exists()
    assert not stale.exists()
