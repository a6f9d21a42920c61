"""Small plugins that break in the four ways a real one can, and a way to install them.

Each ``fault_*.py`` is installed by ``install()`` as a real distribution: a
``*.dist-info`` folder (METADATA, entry_points.txt) beside the module in a
folder that a subprocess gets on PYTHONPATH, so importlib.metadata finds it
exactly as it finds a pip-installed plugin.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent

# plugin name -> a fragment of the reason its one-line report must give
FAULTS = {
    "fault_import": "failed to import: ModuleNotFoundError: No module named 'surgery_missing_dependency'",
    "fault_raises": "surgery_register_ops raised RuntimeError: the license server is unreachable",
    "fault_schema": "invalid JSON Schema at properties/size/type",
    "fault_clash": "op 'append' is already registered by plugin 'append'",
}


@pytest.fixture(autouse=True)
def no_plugin_selection_from_the_shell(monkeypatch):
    """Autouse in the modules that import it: a developer's own plugin selection must not change tests."""
    for var in ("SURGERY_LOAD_PLUGINS", "SURGERY_BLOCK_PLUGINS"):
        monkeypatch.delenv(var, raising=False)


def dist_name(module: str) -> str:
    return "surgery-" + module.replace("_", "-")


def install(site: Path, *modules: str, version: str = "0.1") -> Path:
    """Install ``modules`` (from this folder, or a path) into ``site`` as distributions; return ``site``."""
    site.mkdir(parents=True, exist_ok=True)
    for module in modules:
        source = Path(module) if module.endswith(".py") else HERE / f"{module}.py"
        name = source.stem
        shutil.copy(source, site / source.name)
        info = site / f"{dist_name(name).replace('-', '_')}-{version}.dist-info"
        info.mkdir(exist_ok=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist_name(name)}\nVersion: {version}\n")
        (info / "entry_points.txt").write_text(f"[surgery]\n{name} = {name}\n")
    return site


class Hold:
    """The FIFO ``fault_hold``'s exporter waits on, and ``surgery`` started in a process that holds it.

    ``held()`` returns once the exporter is inside its save (its half file written, waiting to read):
    opening a FIFO's write end without blocking succeeds only while a reader has it open. A signal
    sent then lands in the save every time, not with a probability that depends on the machine's load.
    The exporter waits in short polls, not one blocking read, so that its handler runs whichever of the
    process's threads the kernel gives the signal to (fault_hold.py says why).
    """

    def __init__(self, folder: Path):
        folder.mkdir(parents=True, exist_ok=True)
        self.site = install(folder / "site", "fault_hold")
        self.fifo = folder / "hold.fifo"
        os.mkfifo(self.fifo)
        self._end: int | None = None

    def start(self, *args, **popen) -> subprocess.Popen:
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(self.site), os.environ.get("PYTHONPATH", "")]),
            "FAULT_HOLD_FIFO": str(self.fifo),
        }
        return subprocess.Popen([sys.executable, "-m", "surgery", *map(str, args)], env=env, **popen)

    def held(self, proc: subprocess.Popen, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"surgery ended (exit {proc.returncode}) before its save was held")
            try:
                self._end = os.open(self.fifo, os.O_WRONLY | os.O_NONBLOCK)
                return
            except OSError:  # ENXIO: no reader yet
                time.sleep(0.01)
        pytest.fail("the hold exporter never started")

    def release(self) -> None:
        """Let the held save go on (closing the write end ends the exporter's read)."""
        if self._end is not None:
            os.close(self._end)
            self._end = None
