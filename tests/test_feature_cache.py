"""Frozen-feature caching: the same weights as training through the frozen layers, the full model saved,
the prefix found only where its output cannot change between epochs, and the log saying why not."""

from __future__ import annotations

import tempfile

import numpy as np
import pytest

from helpers import tiny_spec, write_spec

# The prefix runs in other batch sizes than training's (a different summation order in oneDNN), so the
# features, and the weights after training on them, agree to float32 rounding.
ATOL = 1e-6


def weights(keras, path) -> dict:
    return {w.path: w.numpy() for w in keras.saving.load_model(str(path)).weights}


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_allclose(a[name], b[name], rtol=0, atol=ATOL, err_msg=name)


def train(cli, spec, images, out, *extra):
    result = cli("train", spec, "--data", images["train"], "--validation-data", images["val"], "-o", out, *extra)
    assert result.exit_code == 0, result.output + result.stderr
    return result.output


@pytest.mark.parametrize("where", ["memory", "disk"])
@pytest.mark.slow  # trains four runs: the full suite runs it
def test_cached_and_uncached_runs_give_the_same_weights(cli, tmp_path, monkeypatch, keras, images, backbone, where):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    train_section = {"feature_cache_memory_mb": 0} if where == "disk" else {}
    spec = write_spec(tmp_path, tiny_spec(backbone, [{"epochs": 1, "learning_rate": 0.05}], **train_section))
    uncached = train(cli, spec, images, tmp_path / "uncached", "--no-cache")
    cached = train(cli, spec, images, tmp_path / "cached")

    assert "feature cache: off" in uncached
    used = next(line for line in cached.splitlines() if "feature cache:" in line)
    assert "layers 0..8 (image .. pool) are frozen: ran them once over 24 images" in used
    assert ("in memory" in used) == (where == "memory")
    assert (str(tmp_path / "tmp") in used) == (where == "disk")
    assert not list((tmp_path / "tmp").glob("surgery-feature-cache-*"))  # removed when the run ends
    assert_same_weights(
        weights(keras, tmp_path / "uncached" / "tiny.keras"), weights(keras, tmp_path / "cached" / "tiny.keras")
    )
    # What was saved is the whole model, images in, not the head that trained on the features.
    final = keras.saving.load_model(str(tmp_path / "cached" / "tiny.keras"))
    assert tuple(final.input.shape) == (None, 16, 16, 3) and final.layers[-1].name == "head"


@pytest.mark.slow
def test_stages_reuse_recompute_or_skip_the_cache(cli, tmp_path, keras, images, backbone):
    stages = [
        {"name": "head", "epochs": 1, "learning_rate": 0.05},
        {"name": "head_again", "epochs": 1, "learning_rate": 0.01},
        {"name": "top", "epochs": 1, "learning_rate": 0.01, "unfreeze": {"names": ["conv2"]}},
        {"name": "all", "epochs": 1, "learning_rate": 0.001, "unfreeze": {"layers": ":"}},
    ]
    spec = write_spec(tmp_path, tiny_spec(backbone, stages))
    out = train(cli, spec, images, tmp_path / "cached")
    lines = [line.strip() for line in out.splitlines() if "feature cache:" in line]
    assert len(lines) == 4
    assert lines[0].startswith("feature cache: layers 0..8 (image .. pool) are frozen")
    assert lines[1] == "feature cache: reusing the outputs of layers 0..8 (image .. pool) from the last stage"
    assert lines[2].startswith("feature cache: layers 0..4 (image .. relu1) are frozen")  # conv2 trains now
    assert lines[3] == (
        "feature cache: not used: conv1 (index 2) trains, and the layers before it have no weights: nothing to save"
    )

    # Every stage but the last cached, in both runs alike, so they saw the same batches up to there.
    train(cli, spec, images, tmp_path / "uncached", "--no-cache")
    epoch3 = "checkpoints/epoch-0003.keras"
    assert_same_weights(weights(keras, tmp_path / "uncached" / epoch3), weights(keras, tmp_path / "cached" / epoch3))


# --- where the prefix ends: built in memory, no training --------------------------------------


def _frozen(layer):
    layer.trainable = False
    return layer


def _model(keras, early=None, residual=False):
    L = keras.layers
    inputs = keras.Input((8, 8, 3), name="image")
    x = early(inputs) if early is not None else inputs
    x = _frozen(L.Conv2D(4, 3, padding="same", name="conv1"))(x)
    x = _frozen(L.BatchNormalization(name="bn1"))(x)
    if residual:
        y = _frozen(L.Conv2D(4, 3, padding="same", name="branch"))(x)
        x = L.Add(name="add")([x, y])
    x = L.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs, L.Dense(2, name="head")(x))


def test_prefix_ends_at_the_last_cut_point_before_what_changes(keras):
    from surgery.training.feature_cache import find_prefix, suffix_model

    model = _model(keras, residual=True)
    prefix, why = find_prefix(model)
    # Inside the residual block two tensors are live; after the add and the pooling, one.
    assert prefix.layer.name == "pool" and why == "head (index 6) trains"
    suffix = suffix_model(model, prefix)
    assert [layer.name for layer in suffix.layers] == ["pool_features", "head"]
    x = np.random.default_rng(0).standard_normal((2, 8, 8, 3)).astype("float32")
    features = keras.Model(model.input, prefix.tensor)(x)
    np.testing.assert_allclose(suffix(features), model(x), atol=1e-6)


@pytest.mark.parametrize(
    "case, fragment",
    [
        ("dropout", "dropout (index 1) draws random numbers in training"),
        ("augmentation", "flip (index 1) draws random numbers in training"),
        # Without gamma and beta it has nothing to train, but in training mode it updates its statistics.
        ("bn_training", "bn (index 1) is a BatchNormalization layer in training mode"),
    ],
)
def test_no_prefix_where_the_output_may_change(keras, case, fragment):
    from surgery.training.feature_cache import find_prefix

    L = keras.layers
    early = {
        "dropout": L.Dropout(0.5, name="dropout"),
        "augmentation": L.RandomFlip(name="flip"),
        "bn_training": L.BatchNormalization(center=False, scale=False, name="bn"),
    }[case]
    model = _model(keras, early=early)
    prefix, why = find_prefix(model)
    assert prefix is None and fragment in why
