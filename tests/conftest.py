"""Fixtures: weights files made here (no downloads), the CLI in this process, small image folders and models.

Plain helper functions live in helpers.py; test modules never import from each other."""

from __future__ import annotations

import os

import pytest

from helpers import machine_cached, save_tiny_backbone, write_pngs

WEIGHTS_SEED = 987_654


def _share_the_cores() -> None:
    """Size TensorFlow's thread pools for this xdist worker's share of the machine, as ``surgery sweep --jobs``
    does for its workers (sweeps/pool.py).

    Each worker's TensorFlow (and every surgery process a test starts, which inherits the variables) would
    otherwise start pools as wide as the machine: on 2 cores two workers' small ops then wait on each
    other's threads (tests/test_train_options.py and test_graph_edit.py's quick tests: 61 s default, 58 s
    one thread each, alternating runs). Read by TensorFlow when it starts, so set before any test imports
    it; a value the caller set stands.
    """
    from surgery.sweeps.pool import threads_for  # imports neither TensorFlow nor Keras

    threads = str(threads_for(int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))))
    for name in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS"):
        os.environ.setdefault(name, threads)


_share_the_cores()


@pytest.fixture(scope="session")
def keras():
    from surgery.keras_env import keras as load

    return load()


def _weights_file(keras, application, **kwargs):
    """``keras.applications.<application>(weights=None, **kwargs)``'s weights, built once per machine."""

    def build(path):
        # A seed no spec uses, so these "pretrained" weights differ from any random init a spec makes.
        keras.utils.set_random_seed(WEIGHTS_SEED)
        getattr(keras.applications, application)(weights=None, **kwargs).save_weights(str(path))
        keras.backend.clear_session()

    name = f"{application.lower()}_{'top' if kwargs.get('include_top', True) else 'notop'}.weights.h5"
    return machine_cached(name, {"application": application, "seed": WEIGHTS_SEED, **kwargs}, build)


@pytest.fixture(scope="session")
def vgg16_notop_weights(keras):
    return _weights_file(keras, "VGG16", include_top=False, input_shape=[224, 224, 3])


@pytest.fixture(scope="session")
def vgg16_top_weights(keras):
    return _weights_file(keras, "VGG16", include_top=True)


@pytest.fixture(scope="session")
def resnet50_notop_weights(keras):
    return _weights_file(keras, "ResNet50", include_top=False, input_shape=[224, 224, 3])


@pytest.fixture(scope="session")
def mobilenetv2_notop_weights(keras):
    return _weights_file(keras, "MobileNetV2", include_top=False, input_shape=[224, 224, 3])


@pytest.fixture
def cli():
    """Run the CLI in this process (TensorFlow stays imported between calls)."""
    from click.testing import CliRunner

    from surgery.cli import main

    def invoke(*args):
        return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False, prog_name="surgery")

    return invoke


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    return {"train": write_pngs(root / "train", 6), "val": write_pngs(root / "val", 2, seed=1)}


@pytest.fixture(scope="module")
def backbone(tmp_path_factory, keras):
    return save_tiny_backbone(tmp_path_factory.mktemp("backbone") / "tiny.keras", keras)
