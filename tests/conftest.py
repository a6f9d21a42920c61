"""Fixtures: weights files made here (no downloads), the CLI in this process, small image folders and models.

Plain helper functions live in helpers.py; test modules never import from each other."""

from __future__ import annotations

import pytest

from helpers import machine_cached, save_tiny_backbone, write_pngs

WEIGHTS_SEED = 987_654


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
