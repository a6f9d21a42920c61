"""Fixtures: weights files made here (no downloads), the CLI in this process, small image folders and models.

Plain helper functions live in helpers.py; test modules never import from each other."""

from __future__ import annotations

import pytest

from helpers import save_tiny_backbone, write_pngs


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
    return _weights_file(
        tmp_path_factory,
        keras,
        "vgg16_notop",
        lambda k: k.applications.VGG16(weights=None, include_top=False, input_shape=(224, 224, 3)),
    )


@pytest.fixture(scope="session")
def vgg16_top_weights(tmp_path_factory, keras):
    return _weights_file(
        tmp_path_factory, keras, "vgg16_top", lambda k: k.applications.VGG16(weights=None, include_top=True)
    )


@pytest.fixture(scope="session")
def resnet50_notop_weights(tmp_path_factory, keras):
    return _weights_file(
        tmp_path_factory,
        keras,
        "resnet50_notop",
        lambda k: k.applications.ResNet50(weights=None, include_top=False, input_shape=(224, 224, 3)),
    )


@pytest.fixture(scope="session")
def mobilenetv2_notop_weights(tmp_path_factory, keras):
    return _weights_file(
        tmp_path_factory,
        keras,
        "mobilenetv2_notop",
        lambda k: k.applications.MobileNetV2(weights=None, include_top=False, input_shape=(224, 224, 3)),
    )


@pytest.fixture
def cli():
    """Run the CLI in this process (TensorFlow stays imported between calls)."""
    from click.testing import CliRunner

    from surgery.cli import main

    def invoke(*args):
        return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)

    return invoke


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    return {"train": write_pngs(root / "train", 6), "val": write_pngs(root / "val", 2, seed=1)}


@pytest.fixture(scope="module")
def backbone(tmp_path_factory, keras):
    return save_tiny_backbone(tmp_path_factory.mktemp("backbone") / "tiny.keras", keras)
