"""What the tests share besides fixtures: paths, spec editing, running the CLI, small data and models.

conftest.py holds the fixtures; test modules import these functions from here, never from each other.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from surgery.errors import SurgeryError

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"
# Files the tests build once per machine (weights of full backbones): every xdist worker and every later
# run shares them. Ignored by git; delete it (or point SURGERY_TEST_CACHE elsewhere) to rebuild.
CACHE = Path(os.environ.get("SURGERY_TEST_CACHE") or ROOT / ".test-cache")


class CallersError(SurgeryError):
    """A caller's own error type (SpecError, DataError, ModelFileError, ...): a reader given ``error=`` must
    raise it, not its default, for every refusal."""


def machine_cached(name: str, key: dict, build) -> Path:
    """The file ``build(path)`` writes, built once per machine for this ``key`` and these library versions.

    The key is everything the file is made from, so a changed builder argument or Keras version builds a
    new file instead of reusing a stale one. A lock lets one xdist worker build while the others wait;
    the file is placed by a rename only once complete, and made read-only against a test writing to it.
    """
    import filelock
    import keras

    described = json.dumps({**key, "name": name, "keras": keras.__version__}, sort_keys=True)
    folder = CACHE / hashlib.sha256(described.encode()).hexdigest()[:16]
    path = folder / name
    folder.mkdir(parents=True, exist_ok=True)
    with filelock.FileLock(str(folder / ".lock")):
        if not path.exists():
            partial = folder / f".partial-{name}"  # keeps the name's suffixes, which Keras' savers check
            partial.unlink(missing_ok=True)
            build(partial)
            partial.chmod(0o444)
            (folder / "key.json").write_text(described)
            partial.rename(path)
    return path


def load_spec_json(name: str) -> dict:
    return json.loads((SPECS / name).read_text())


def with_weights(spec: dict, weights) -> dict:
    """The spec with its backbone's weights replaced (a path made here, or None)."""
    spec = json.loads(json.dumps(spec))
    spec["steps"][0]["weights"] = None if weights is None else str(weights)
    return spec


def write_spec(folder: Path, spec: dict, name: str = "spec.json") -> Path:
    path = folder / name
    path.write_text(json.dumps(spec))
    return path


def run_surgery(*args, env=None, cwd=None, timeout=300) -> subprocess.CompletedProcess:
    """Run the CLI as a user would, in a fresh process."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "surgery", *map(str, args)],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd,
        timeout=timeout,
    )


def assert_one_error_line(stderr: str, *fragments: str) -> str:
    """Bad input: exactly one line on stderr, starting "error:", naming what it must, no traceback."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one error line, got:\n{stderr}"
    line = lines[0]
    assert line.startswith("error: "), line
    assert "Traceback" not in stderr
    for fragment in fragments:
        assert fragment in line, f"{fragment!r} not in {line!r}"
    return line


CLASSES = {"red": (200, 40, 40), "green": (40, 200, 40), "blue": (40, 40, 200)}


def write_pngs(folder, n_per_class, classes=CLASSES, size=16, seed=0):
    """Real PNG files, one subfolder per class: the class's colour plus noise. ``n_per_class`` is a count,
    or a dict of counts by class name (unequal classes)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for name, colour in classes.items():
        (folder / name).mkdir(parents=True)
        for i in range(n_per_class[name] if isinstance(n_per_class, dict) else n_per_class):
            pixels = np.clip(np.array(colour) + rng.normal(0, 40, (size, size, 3)), 0, 255).astype("uint8")
            Image.fromarray(pixels).save(folder / name / f"{i}.png")
    return folder


def save_tiny_backbone(path, keras, size=16, seed=0):
    """conv-BN-relu twice and a pooling layer: small, with BatchNormalization to watch. Its weights come
    from ``seed``: drawn from whatever the process did before, they would depend on the order tests ran in
    (a head that learns in one order and not in another)."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((size, size, 3), name="image")
    x = keras.layers.Rescaling(1 / 255, name="scale")(inputs)
    for i, filters in ((1, 4), (2, 8)):
        x = keras.layers.Conv2D(filters, 3, name=f"conv{i}")(x)
        x = keras.layers.BatchNormalization(name=f"bn{i}")(x)
        x = keras.layers.ReLU(name=f"relu{i}")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    keras.Model(inputs, x, name="tiny").save(str(path))
    return path


def tiny_spec(backbone, stages, units=3, **train):
    return {
        "surgery": 1,
        "name": "tiny",
        "seed": 0,
        "steps": [
            {"op": "backbone", "name": "keras_file", "path": str(backbone)},
            {"op": "freeze", "layers": ":"},
            {"op": "append", "layer": "Dense", "config": {"units": units, "activation": "softmax"}, "name": "head"},
        ],
        "train": {"batch_size": 4, "stages": stages, **train},
    }


def wait_for_epochs(state_file, n, proc, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the run ended before it could be killed:\n{proc.stderr.read()}")
        try:
            if json.loads(state_file.read_text())["epochs_done"] >= n:
                return
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.02)
    pytest.fail("no checkpoint appeared")


# Loads models in a fresh Python where importing surgery fails: a saved model must not need it.
_BLOCKED_LOAD = """
import importlib, importlib.abc, sys

class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in ("surgery", "surgery_plugins"):
            raise ImportError("blocked: " + name)

sys.meta_path.insert(0, Blocker())
try:
    import surgery
    raise SystemExit("surgery is importable")
except ImportError:
    pass
import keras, numpy as np

for module in filter(None, sys.argv[1].split(",")):
    importlib.import_module(module)
x = np.load(sys.argv[2])
for path, out in zip(sys.argv[3::2], sys.argv[4::2]):
    model = keras.saving.load_model(path, safe_mode=True)
    np.save(out, np.asarray(model(x, training=False)))
assert not any(m.partition(".")[0] in ("surgery", "surgery_plugins") for m in sys.modules)
"""


def outputs_without_surgery(models, x, tmp_path: Path, modules=()) -> list:
    """Each ``.keras`` file's output on ``x``, loaded with ``safe_mode=True`` by a Python that cannot import
    surgery and imports only keras, numpy and ``modules`` (e.g. keras_hub)."""
    np.save(tmp_path / "x.npy", x)
    args = [str(tmp_path / "x.npy")]
    for k, model in enumerate(models):
        args += [str(model), str(tmp_path / f"y{k}.npy")]
    done = subprocess.run(
        [sys.executable, "-I", "-c", _BLOCKED_LOAD, ",".join(modules), *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
        env={"TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return [np.load(tmp_path / f"y{k}.npy") for k in range(len(models))]
