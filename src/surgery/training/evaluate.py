"""``surgery evaluate``: a trained classifier on a test set: Keras' own evaluate, per-class figures, confusion.

The loss and every compiled metric are what ``model.evaluate`` returns (nothing recomputed); precision,
recall, F1 and the confusion matrix are counted from the model's predictions over the same images, with
the class names of the run. A model that ``surgery train`` wrote keeps its compile config, so it is
evaluated with the loss and metrics it was trained with.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..keras_env import keras
from . import pipeline, stages
from .data import DataError, Source


@dataclass
class Evaluation:
    """The figures of one evaluation; ``confusion[i][j]`` counts images of class i predicted as class j."""

    n: int
    class_names: list[str]
    metrics: dict[str, float]
    confusion: list[list[int]] = field(default_factory=list)

    def per_class(self) -> list[dict[str, Any]]:
        matrix = np.asarray(self.confusion, dtype="float64")
        found = []
        for i, name in enumerate(self.class_names):
            tp, predicted, support = matrix[i, i], matrix[:, i].sum(), matrix[i, :].sum()
            precision = tp / predicted if predicted else 0.0
            recall = tp / support if support else 0.0
            f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
            found.append({"name": name, "precision": precision, "recall": recall, "f1": f1, "support": int(support)})
        return found

    def summary(self) -> str:
        """One line: the metrics and the class recalled worst."""
        figures = ", ".join(f"{k} {v:.4f}" for k, v in self.metrics.items())
        worst = min(self.per_class(), key=lambda c: (c["recall"], c["name"])) if self.class_names else None
        tail = f"; lowest recall: {worst['name']} {worst['recall']:.3f}" if worst else ""
        return f"{self.n:,} images: {figures}{tail}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "images": self.n,
            "metrics": self.metrics,
            "classes": self.class_names,
            "per_class": self.per_class(),
            "confusion": self.confusion,
        }

    def lines(self) -> list[str]:
        """The text report: metrics, the per-class table, the confusion matrix."""
        width = max([5, *map(len, self.class_names)])
        out = [
            "  ".join(f"{k} {v:.4f}" for k, v in self.metrics.items()),
            "",
            f"{'class':<{width}}  precision  recall     f1  support",
        ]
        for c in self.per_class():
            out.append(
                f"{c['name']:<{width}}  {c['precision']:9.4f}  {c['recall']:6.4f}  {c['f1']:5.4f}  {c['support']:7,}"
            )
        cells = max([4, *(len(str(v)) for row in self.confusion for v in row), *map(len, self.class_names)])
        out += [
            "",
            "confusion (rows: true class, columns: predicted)",
            " " * width + "".join(f"  {name[:cells]:>{cells}}" for name in self.class_names),
        ]
        for name, row in zip(self.class_names, self.confusion):
            out.append(f"{name:<{width}}" + "".join(f"  {v:>{cells}}" for v in row))
        return out


# Losses that compare one-hot rows, by their class name and by the name Keras' string form and function have.
_ONE_HOT_LOSSES = {
    "CategoricalCrossentropy",
    "CategoricalFocalCrossentropy",
    "CategoricalHinge",
    "KLDivergence",
    "categorical_crossentropy",
    "categorical_focal_crossentropy",
    "categorical_hinge",
    "kl_divergence",
    "kld",
    "kullback_leibler_divergence",
}


def _one_hot_loss(model) -> bool:
    """Whether the model was compiled for one-hot labels (label smoothing, probability metrics, or a plain-Keras
    model compiled with ``loss="categorical_crossentropy"``, which loads with the loss as that string)."""
    loss = getattr(model, "loss", None)
    if isinstance(loss, str):
        name = loss
    elif callable(loss) and not hasattr(loss, "get_config"):
        name = getattr(loss, "__name__", "")
    else:
        name = type(loss).__name__
    return name in _ONE_HOT_LOSSES


def _predicted(scores: np.ndarray, head) -> np.ndarray:
    if head.binary:
        return (scores[:, 0] > (0.5 if head.activation == "sigmoid" else 0.0)).astype("int64")
    return scores.argmax(axis=1)


def evaluate_batches(model, batches, class_names: list, where: str = "evaluate") -> Evaluation:
    """Evaluate ``model`` on batches of (images, labels); labels sparse or one-hot as the model was compiled."""
    if not getattr(model, "compiled", False) or getattr(model, "loss", None) is None:
        loss, metrics = stages.loss_and_metrics(model, class_names, where)
        model.compile(loss=loss, metrics=metrics)
    head = stages.head(model, class_names, where)
    figures = model.evaluate(batches, verbose=0, return_dict=True)
    labels, predicted = [], []
    for x, y in batches:
        y = np.asarray(y)
        labels.append(y.argmax(axis=1) if y.ndim > 1 and y.shape[1] > 1 else y.reshape(-1))
        predicted.append(_predicted(np.asarray(model.predict_on_batch(x), dtype="float64"), head))
    truth, guess = np.concatenate(labels).astype("int64"), np.concatenate(predicted)
    n = len(class_names)
    confusion = np.zeros((n, n), dtype="int64")
    np.add.at(confusion, (truth, guess), 1)
    return Evaluation(len(truth), list(class_names), {k: float(v) for k, v in figures.items()}, confusion.tolist())


def matched_labels(source: Source, model_classes: list | None, units: int) -> tuple[list, np.ndarray]:
    """The model's class names and the data's labels in the model's numbering (matched by class name)."""
    labels = source.labels()
    if model_classes is None:
        n = max(units, 2)
        if len(source.class_names) > n:
            raise DataError(
                f"the data has {len(source.class_names)} classes but the model outputs {units}; "
                "give the model's classes.json",
                file=str(source.path),
                where="--data",
            )
        return [*source.class_names, *[str(i) for i in range(len(source.class_names), n)]], labels
    unknown = [c for c in source.class_names if c not in model_classes]
    if unknown:
        raise DataError(
            f'the data has class "{unknown[0]}", which the model does not know; its classes: '
            + ", ".join(model_classes[:12]),
            file=str(source.path),
            where="--data",
        )
    index = np.array([model_classes.index(c) for c in source.class_names], dtype="int64")
    return list(model_classes), index[labels] if len(labels) else labels


def evaluate(loaded, source: Source, *, batch_size: int = 32) -> Evaluation:
    """Evaluate ``loaded.model`` (``models.load``'s) on every image of ``source`` (a folder, an .npz, arrays or
    a dataset)."""
    import tensorflow as tf

    model = loaded.model
    units = stages.classifier_units(model, loaded.source, doing="evaluates")
    class_names, labels = matched_labels(source, loaded.class_names, units)
    image = loaded.image()
    if source.kind == "folder":
        pipeline.check_readable(source.files, image)
    images, _ = pipeline.ordered(source, image, loaded.prep, batch_size)
    y = tf.data.Dataset.from_tensor_slices(labels)
    if _one_hot_loss(model):
        y = y.map(lambda label: tf.one_hot(label, len(class_names)))
    batches = tf.data.Dataset.zip((images.unbatch(), y)).batch(batch_size)
    keras()  # quiet start-up before Keras evaluates
    return evaluate_batches(model, batches, class_names, str(source.path))
