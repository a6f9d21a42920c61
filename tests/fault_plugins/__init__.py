"""Small plugins that break in the four ways a real one can, and a way to install them.

Each ``fault_*.py`` is installed by ``install()`` as a real distribution: a
``*.dist-info`` folder (METADATA, entry_points.txt) beside the module in a
folder that a subprocess gets on PYTHONPATH, so importlib.metadata finds it
exactly as it finds a pip-installed plugin.
"""

from __future__ import annotations

import shutil
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
