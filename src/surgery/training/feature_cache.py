"""Training the layers after a frozen prefix on that prefix's outputs, computed once per stage.

When every layer from the input to a cut point is frozen and computes the same in training as in
inference, the prefix gives the same output for an image in every epoch: under a small head, a frozen
VGG16 or ResNet50 is nearly all of an epoch's work, done again each time. So the prefix runs once over
the training and validation images, and the stage trains the suffix: a model over the same layer objects
from the cut onwards, so the full model's own weights are what train, and the full model is what the
checkpoints and the final file hold. The suffix gets the same batches as the full model would: its
order comes from the twin of the training pipeline's shuffle (``Datasets.train_order``).

The data pipeline has no random augmentation; random layers in the model (dropout, noise, Keras'
augmentation layers) end the prefix, as do BatchNormalization layers in training mode and anything else
whose call takes a ``training`` argument.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..keras_env import keras
from ..model.graph import cut_map, make_model, output_tensor_of, retrace

MIB = 2**20


def why_not_cached(layer) -> str | None:
    """Why ``layer``'s output may change from one epoch to the next, or None if it cannot."""
    k = keras()
    if layer.trainable_weights:
        return "trains"
    for sub in layer._flatten_layers(include_self=True, recursive=True):
        if isinstance(sub, k.layers.BatchNormalization):
            if sub.trainable:
                return "is a BatchNormalization layer in training mode (it updates its moving statistics)"
            continue  # frozen: Keras runs it in inference mode
        if any(isinstance(v, k.random.SeedGenerator) for v in vars(sub).values()):
            return "draws random numbers in training (dropout, noise or augmentation)"
        if getattr(sub, "activity_regularizer", None) is not None:
            return "adds an activity-regularization loss in training"
        leaf = not list(sub._flatten_layers(include_self=False, recursive=False))
        if leaf and "training" in inspect.signature(sub.call).parameters:
            return f"may act differently in training ({type(sub).__name__}.call takes a training argument)"
    return None


@dataclass
class Prefix:
    cut: int  # index in model.layers of the prefix's last layer
    layer: Any
    tensor: Any  # the layer's output in the model's graph

    def describe(self, model) -> str:
        return f"layers 0..{self.cut} ({model.layers[0].name} .. {self.layer.name})"


def find_prefix(model) -> tuple[Prefix | None, str]:
    """The longest prefix whose output cannot change between epochs and that ends at a cut point
    (its output is the only tensor later layers need), or None; and the layer that ends it, and why."""
    cuts = cut_map(model)
    last_cut = None
    for k, layer in enumerate(model.layers):
        why = why_not_cached(layer)
        if why is not None:
            break
        if k > 0 and cuts.is_cut(k):
            last_cut = k
    else:
        return None, "no layer trains"  # rehearse() refuses such a stage before this is asked
    stop = f"{layer.name} (index {k}) {why}"
    if last_cut is None:
        return None, stop + (" and is the first layer" if k <= 1 else ", and no layer before it is a cut point")
    if not any(layer.weights for layer in model.layers[1 : last_cut + 1]):
        return None, f"{stop}, and the layers before it have no weights: nothing to save"
    tensor = output_tensor_of(model, model.layers[last_cut])
    if tensor is None:
        return None, f"{model.layers[last_cut].name} has several outputs"
    return Prefix(last_cut, model.layers[last_cut], tensor), stop


def suffix_model(model, prefix: Prefix):
    """The layers after the cut, called again (not copied) on a new input of the prefix's output shape."""
    k = keras()
    features = k.Input(
        shape=tuple(prefix.tensor.shape[1:]), dtype=prefix.tensor.dtype, name=f"{prefix.layer.name}_features"
    )
    (out,) = retrace(model, {id(prefix.tensor): features}, model.outputs)
    return make_model(features, out, name=f"{model.name}_after_{prefix.layer.name}")


@dataclass
class Features:
    cut: int
    train: tuple  # (features, labels); features in memory or a memory-mapped .npy file
    validation: tuple | None
    dtype: str  # the prefix's output dtype, which the suffix's input expects
    where: str
    seconds: float


def _storage_dtype(dtype: str):
    # numpy has no bfloat16 file format: keep those in float32 and cast back when feeding.
    return np.dtype(dtype) if dtype in ("float16", "float32", "float64") else np.dtype("float32")


def _run_prefix(prefix_model, run, images, n: int, batch_size: int, dtype, path: Path | None) -> tuple:
    import tensorflow as tf

    shape = (n, *prefix_model.output.shape[1:])
    out = np.empty(shape, dtype) if path is None else np.lib.format.open_memmap(path, "w+", dtype, shape)
    label_spec = images.element_spec[1]  # a class index, or a one-hot row (label smoothing)
    labels = np.empty((n, *label_spec.shape), label_spec.dtype.as_numpy_dtype)
    i = 0
    for x, y in images.batch(batch_size).prefetch(tf.data.AUTOTUNE):
        batch = np.asarray(run(x)).astype(dtype)
        out[i : i + len(batch)], labels[i : i + len(batch)] = batch, y.numpy()
        i += len(batch)
    if isinstance(out, np.memmap):
        out.flush()
    return out, labels


def _lookup(order, arrays: tuple, batch_size: int, dtype: str):
    """Batches of ``order``'s indices -> (features, labels) rows: the same batches, from the cache."""
    import tensorflow as tf

    x, y = arrays
    types = (tf.as_dtype(x.dtype), tf.as_dtype(y.dtype))

    def rows(i):
        xs, ys = tf.numpy_function(lambda idx: (x[idx], y[idx]), [i], types, stateful=False)
        xs.set_shape((None, *x.shape[1:]))
        ys.set_shape((None, *y.shape[1:]))
        return tf.cast(xs, dtype), ys

    return order.batch(batch_size).map(rows).prefetch(tf.data.AUTOTUNE)


class FeatureCache:
    """Decides, stage by stage, whether to train on cached features; keeps them while stages share a prefix."""

    def __init__(self, enabled: bool, memory_mb: int, sets, echo):
        self.enabled, self.memory_mb, self.sets, self.echo = enabled, memory_mb, sets, echo
        self.seconds = 0.0  # spent computing features, over the run
        self._features: Features | None = None
        self._folder: tempfile.TemporaryDirectory | None = None

    def close(self) -> None:
        self._features = None
        if self._folder is not None:
            self._folder.cleanup()
            self._folder = None

    def for_stage(self, model):
        """(the model to fit, its datasets): the suffix on cached features, or the model itself."""
        if not self.enabled:
            self.echo("  feature cache: off")
            return model, self.sets
        prefix, why = find_prefix(model)
        if prefix is None:
            self.echo(f"  feature cache: not used: {why}")
            return model, self.sets
        features = self._features if self._features and self._features.cut == prefix.cut else None
        if features is not None:
            self.echo(f"  feature cache: reusing the outputs of {prefix.describe(model)} from the last stage")
        else:
            self.close()  # a different prefix: the old features are of no use
            features = self._compute(model, prefix)
            if features is None:
                return model, self.sets
        sets = self.sets
        validation = None
        if features.validation is not None:
            validation = _lookup(_range(sets.n_validation), features.validation, sets.batch_size, features.dtype)
        cached = dataclasses.replace(
            sets,
            train=_lookup(sets.train_order, features.train, sets.batch_size, features.dtype),
            validation=validation,
        )
        return suffix_model(model, prefix), cached

    def _compute(self, model, prefix: Prefix) -> Features | None:
        import tensorflow as tf

        sets = self.sets
        dtype = str(prefix.tensor.dtype)
        store = _storage_dtype(dtype)
        per_image = math.prod(prefix.tensor.shape[1:]) * store.itemsize
        n = sets.n_train + sets.n_validation
        size = n * per_image
        path = None
        if size > self.memory_mb * MIB:
            folder = tempfile.gettempdir()
            if size > shutil.disk_usage(folder).free // 2:
                self.echo(
                    f"  feature cache: not used: the outputs of {prefix.describe(model)} would take "
                    f"{size / MIB:,.0f} MiB, more than train.feature_cache_memory_mb "
                    f"({self.memory_mb}) in memory and half the free space in {folder}"
                )
                return None
            self._folder = tempfile.TemporaryDirectory(prefix="surgery-feature-cache-")
            path = Path(self._folder.name)
        started = time.perf_counter()
        prefix_model = make_model(model.inputs, prefix.tensor, name=f"{model.name}_prefix")
        # One function for both sets: traced once, not once per set.
        run = tf.function(lambda x: prefix_model(x, training=False), reduce_retracing=True)
        train = _run_prefix(
            prefix_model,
            run,
            sets.train_images,
            sets.n_train,
            sets.batch_size,
            store,
            path / "train.npy" if path else None,
        )
        validation = None
        if sets.validation_images is not None:
            validation = _run_prefix(
                prefix_model,
                run,
                sets.validation_images,
                sets.n_validation,
                sets.batch_size,
                store,
                path / "validation.npy" if path else None,
            )
        seconds = time.perf_counter() - started
        self.seconds += seconds
        where = f"in {path}" if path else "in memory"
        shape = "x".join(map(str, prefix.tensor.shape[1:]))
        self.echo(
            f"  feature cache: {prefix.describe(model)} are frozen: ran them once over {n:,} images "
            f"in {seconds:.1f} s ({shape} {dtype} each, {size / MIB:,.1f} MiB {where}); training the "
            f"layers after {prefix.layer.name} on their outputs"
        )
        self._features = Features(prefix.cut, train, validation, dtype, where, seconds)
        return self._features


def _range(n: int):
    import tensorflow as tf

    return tf.data.Dataset.range(n)
