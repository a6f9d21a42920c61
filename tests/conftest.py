"""Shared fixtures: weights files made here (no downloads), and ways to run the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"


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


@pytest.fixture(scope="session")
def keras():
    from surgery.keras_env import keras as load

    return load()


def _weights_file(factory, keras, name, build):
    folder = factory.mktemp("weights")
    # A seed no spec uses, so these "pretrained" weights differ from any random init a spec makes.
    keras.utils.set_random_seed(987_654)
    model = build(keras)
    path = folder / f"{name}.weights.h5"
    model.save_weights(str(path))
    return path


@pytest.fixture(scope="session")
def vgg16_notop_weights(tmp_path_factory, keras):
    return _weights_file(tmp_path_factory, keras, "vgg16_notop",
                         lambda k: k.applications.VGG16(weights=None, include_top=False, input_shape=(224, 224, 3)))


@pytest.fixture(scope="session")
def vgg16_top_weights(tmp_path_factory, keras):
    return _weights_file(tmp_path_factory, keras, "vgg16_top",
                         lambda k: k.applications.VGG16(weights=None, include_top=True))


@pytest.fixture(scope="session")
def resnet50_notop_weights(tmp_path_factory, keras):
    return _weights_file(tmp_path_factory, keras, "resnet50_notop",
                         lambda k: k.applications.ResNet50(weights=None, include_top=False, input_shape=(224, 224, 3)))


@pytest.fixture(scope="session")
def mobilenetv2_notop_weights(tmp_path_factory, keras):
    return _weights_file(tmp_path_factory, keras, "mobilenetv2_notop",
                         lambda k: k.applications.MobileNetV2(weights=None, include_top=False,
                                                              input_shape=(224, 224, 3)))


@pytest.fixture
def cli():
    """Run the CLI in this process (TensorFlow stays imported between calls)."""
    from click.testing import CliRunner

    from surgery.cli import main

    def invoke(*args):
        return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)

    return invoke


def run_surgery(*args, env=None, cwd=None, timeout=300) -> subprocess.CompletedProcess:
    """Run the CLI as a user would, in a fresh process."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "surgery", *map(str, args)], capture_output=True, text=True,
                          env=full_env, cwd=cwd, timeout=timeout)


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
