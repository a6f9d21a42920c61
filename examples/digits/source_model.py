"""Develop-a-model approach, step 1: train a small source CNN on digits 0-4 and save it.

scikit-learn ships the digits dataset (1,797 real 8x8 images), so this runs offline.
The saved model is the start of specs/digits_transfer.json and examples/digits/*.json (their
keras_file backbone names out/digits/source.keras, the default here and what run_demo.py writes):

    python examples/digits/source_model.py              # writes out/digits/source.keras
    python examples/digits/source_model.py other.keras  # or another path
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

DEFAULT_PATH = "out/digits/source.keras"  # what specs/digits_transfer.json names, relative to the repository


def digits(classes):
    from sklearn.datasets import load_digits

    data = load_digits()
    keep = np.isin(data.target, classes)
    x = data.images[keep].astype("float32")[..., None]
    y = np.searchsorted(np.asarray(classes), data.target[keep])
    return x, y


def build_source(keras, n_classes=5):
    inputs = keras.Input(shape=(8, 8, 1), name="image")
    x = keras.layers.Rescaling(1 / 16, name="scale")(inputs)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv1")(x)
    x = keras.layers.Conv2D(32, 3, activation="relu", name="conv2")(x)
    x = keras.layers.MaxPooling2D(name="pool")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(64, activation="relu", name="features")(x)
    outputs = keras.layers.Dense(n_classes, activation="softmax", name="digits")(x)
    return keras.Model(inputs, outputs, name="digits_source")


def ten_digit_classifier(keras, epochs=8, seed=0):
    """A CNN fit on 1,200 of the 1,797 digits (all ten), and the split: (model, (x, y) fit on, (x, y) held out).

    What quantized exports are judged on (tests/test_quantize.py, bench/deploy.py): a model worth more than
    chance, and 597 digits it has not seen.
    """
    keras.utils.set_random_seed(seed)
    x, y = digits(list(range(10)))
    order = np.random.default_rng(seed).permutation(len(x))
    fit, held = order[:1200], order[1200:]
    model = build_source(keras, n_classes=10)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(x[fit], y[fit], epochs=epochs, batch_size=32, verbose=0)
    return model, (x[fit], y[fit]), (x[held], y[held])


def train_source(path, epochs=15, seed=0):
    from surgery import keras

    k = keras()
    k.utils.set_random_seed(seed)
    x, y = digits([0, 1, 2, 3, 4])
    model = build_source(k)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=epochs, batch_size=32, verbose=0)
    model.save(str(path))
    return model


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else DEFAULT_PATH)
    out.parent.mkdir(parents=True, exist_ok=True)
    model = train_source(out)
    print(f"wrote {out}")
