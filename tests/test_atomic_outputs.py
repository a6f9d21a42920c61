"""A run killed while it saves leaves the previous file intact (or none), never a truncated one."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import zipfile

import pytest
from fault_plugins import Hold

SMALL = {"op": "backbone", "name": "vgg16", "weights": None, "include_top": False, "input_shape": [32, 32, 3]}


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None


def _partials(folder):
    return sorted(p.name for p in folder.iterdir() if ".partial-" in p.name)


@pytest.mark.slow
def test_sigkill_during_save_never_truncates(tmp_path, monkeypatch):
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

    def run_here():
        """The same apply in this process (only the killed one needs a process of its own), with the hold
        exporter loaded here and reading /dev/null, so that its save does not wait."""
        import fault_plugins.fault_hold as hold_plugin

        import surgery
        from surgery.plugins.loading import Candidate, builtin_candidates, load_plugins

        monkeypatch.setenv("FAULT_HOLD_FIFO", os.devnull)
        plugin = Candidate("fault_hold", lambda: hold_plugin, "surgery-fault-hold", "0.1")
        surgery.apply(spec, force=True, plugins=load_plugins([*builtin_candidates(), plugin]))

    def run_killed():
        proc = hold.start("apply", spec, "--force", stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            hold.held(proc)
            proc.send_signal(signal.SIGKILL)
            assert proc.wait(timeout=60) == -signal.SIGKILL, proc.stderr.read()
        finally:
            hold.release()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stderr.close()
        return proc.pid

    run_here()  # the complete outputs a killed run must not damage
    before = [_digest(p) for p in outputs]
    assert outputs[1].read_bytes() == b"the first half and the second"
    with zipfile.ZipFile(outputs[0]) as archive:
        assert archive.testzip() is None
    killed = run_killed()
    assert [_digest(p) for p in outputs] == before, "a killed save changed the previous outputs"
    # A SIGKILL runs no cleanup: the killed run's partial files are still there, both of them.
    assert [name.split(".partial-")[0] for name in _partials(out)] == [".m", ".m"]
    assert all(f"-{killed}." in name for name in _partials(out))
    run_here()
    # The next run removed the partial files of the dead one before it wrote, and placed whole files.
    assert _partials(out) == []
    assert outputs[1].read_bytes() == b"the first half and the second"
    with zipfile.ZipFile(outputs[0]) as archive:
        assert archive.testzip() is None
