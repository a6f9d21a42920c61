"""A run killed while it saves leaves the previous file intact (or none), never a truncated one."""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import time
import zipfile

import pytest

from surgery.writing import remove_stale_partials, temporary_sibling

from helpers import SPECS

KILLS = 8


def _start(out):
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "surgery",
            "apply",
            str(SPECS / "vgg16_cut_extend.json"),
            "--weights",
            "none",
            "-o",
            str(out),
            "--force",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _partial(folder, pid):
    return any(folder.glob(f".m.partial-{pid}.*.keras"))


def _wait_for_partial(proc, folder, timeout=120):
    """Poll until the run's temporary output appears (the save has begun) or the run ends."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if _partial(folder, proc.pid):
            return True
        time.sleep(0.001)
    return False


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None


@pytest.mark.slow
def test_sigkill_during_save_never_truncates(tmp_path):
    out = tmp_path / "m.keras"
    # A first, complete run: the file a killed run must not damage; it also times the save.
    proc = _start(out)
    assert _wait_for_partial(proc, tmp_path)
    began = time.monotonic()
    while _partial(tmp_path, proc.pid):  # renamed into place: the save is over
        time.sleep(0.001)
    save_seconds = max(time.monotonic() - began, 0.01)
    assert proc.wait(timeout=120) == 0
    rng = random.Random(0)
    outcomes = {"previous kept": 0, "new written": 0, "finished": 0}
    for _ in range(KILLS):
        before = _digest(out)
        proc = _start(out)
        try:
            if _wait_for_partial(proc, tmp_path):
                # Early in the save, mostly: its length varies with the machine's load.
                time.sleep(rng.uniform(0, save_seconds * 0.5))
                proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert out.exists(), "the previous output vanished"
        with zipfile.ZipFile(out) as archive:  # a truncated zip fails here
            assert archive.testzip() is None
        if proc.returncode == 0:
            outcomes["finished"] += 1
        elif _digest(out) == before:
            outcomes["previous kept"] += 1
        else:
            outcomes["new written"] += 1  # killed after the rename: a complete new file
    print(f"save took {save_seconds:.3f} s; outcomes of {KILLS} kills: {outcomes}")
    # Kills that landed inside the save found the old file intact; enough of them did for the test to mean something.
    assert outcomes["previous kept"] >= KILLS // 4, outcomes
    # Each run clears the partial files of killed runs before it writes: at most the last one is left.
    assert len([p for p in tmp_path.iterdir() if p.name.startswith(".m.partial-")]) <= 1


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
