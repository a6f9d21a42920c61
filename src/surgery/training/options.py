"""A stage's options as the Keras objects that do them: surgery writes none of these itself.

- optimizer, learning rate, ``weight_decay``, ``gradient_clip`` -> ``keras.optimizers.get`` with the
  optimizer's own ``weight_decay``, ``clipnorm``, ``clipvalue``, ``global_clipnorm``;
- ``schedule`` -> ``keras.callbacks.LearningRateScheduler`` over ``keras.optimizers.schedules``
  (CosineDecay, ExponentialDecay, PiecewiseConstantDecay) evaluated per epoch, after a linear warmup.
  A callback rather than a schedule object in the optimizer: the rate stays a plain number, so a saved
  model loads in plain Keras, ``--resume`` lands on the right rate, and the schedule can follow the
  stage's own epochs;
- ``early_stopping``, ``reduce_lr_on_plateau`` -> ``keras.callbacks.EarlyStopping``, ``ReduceLROnPlateau``;
- ``label_smoothing`` -> the cross-entropy's own ``label_smoothing`` (categorical, so labels are one-hot);
- ``class_weight`` -> ``fit(class_weight=...)``;
- ``metrics`` -> ``keras.metrics.AUC``, ``Precision``, ``Recall``, ``(Sparse)TopKCategoricalAccuracy``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import SpecError
from ..keras_env import keras
from .callbacks import mode

PROBABILITY_METRICS = ("auc", "precision", "recall")


@dataclass(frozen=True)
class Head:
    """What the model's output is, and how labels are fed to it."""

    classes: int
    units: int
    activation: str  # "softmax", "sigmoid", "linear" (logits), ...
    one_hot: bool = False  # labels as one-hot rows (categorical losses and metrics)

    @property
    def binary(self) -> bool:
        return self.units == 1

    @property
    def logits(self) -> bool:
        return self.activation not in ("softmax", "sigmoid")


def needs_one_hot(config) -> bool:
    """Whether the run feeds one-hot labels: label smoothing and the probability metrics need them (Keras'
    sparse cross-entropy has no label smoothing; AUC, precision and recall compare same-shaped tensors)."""
    return any(stage.label_smoothing for stage in config.stages) or any(
        m in PROBABILITY_METRICS for m in config.metrics
    )


def loss(head: Head, label_smoothing: float = 0.0):
    losses = keras().losses
    if head.binary:
        return losses.BinaryCrossentropy(from_logits=head.activation != "sigmoid", label_smoothing=label_smoothing)
    if head.one_hot:
        return losses.CategoricalCrossentropy(from_logits=head.logits, label_smoothing=label_smoothing)
    return losses.SparseCategoricalCrossentropy(from_logits=head.logits)


def metrics(head: Head, extra: tuple = (), where: str | None = None) -> list:
    """Accuracy first (the multi-worker loop reads it), then the extra metrics by name."""
    m = keras().metrics
    if head.binary:
        found = [m.BinaryAccuracy(name="accuracy", threshold=0.0 if head.activation != "sigmoid" else 0.5)]
    else:
        found = [
            m.CategoricalAccuracy(name="accuracy") if head.one_hot else m.SparseCategoricalAccuracy(name="accuracy")
        ]
    for name in extra:
        if name == "auc":
            found.append(m.AUC(name="auc", from_logits=head.logits))
        elif name in ("precision", "recall"):
            if head.logits:
                raise SpecError(
                    f"{name} needs a probability output (softmax or sigmoid); the model's head outputs logits",
                    file=where,
                    where="train.metrics",
                )
            found.append((m.Precision if name == "precision" else m.Recall)(name=name))
        else:  # top_k_accuracy
            k = int(name.split("_")[1])
            if head.binary or k >= head.units:
                raise SpecError(
                    f"{name} needs more than {k} classes; the model has {head.units} outputs",
                    file=where,
                    where="train.metrics",
                )
            cls = m.TopKCategoricalAccuracy if head.one_hot else m.SparseTopKCategoricalAccuracy
            found.append(cls(k=k, name=name))
    return found


def optimizer(stage):
    """The stage's optimizer, configured with its rate, weight decay and gradient clipping."""
    # Named, or Keras numbers it after the optimizers this process made before ("sgd_2"), and the saved
    # model would depend on what ran earlier in a notebook.
    config: dict[str, Any] = {"learning_rate": stage.learning_rate, "name": stage.optimizer}
    if stage.weight_decay is not None:
        config["weight_decay"] = stage.weight_decay
    clip = stage.gradient_clip
    if clip is not None:
        kind, value = ("global_norm", clip) if not isinstance(clip, dict) else next(iter(clip.items()))
        config[{"norm": "clipnorm", "value": "clipvalue", "global_norm": "global_clipnorm"}[kind]] = value
    return keras().optimizers.get({"class_name": stage.optimizer, "config": config})


def _options(value, defaults: dict) -> dict:
    return {**defaults, **(value if isinstance(value, dict) else {})}


def callbacks(stage, start: int, monitor: str, epochs: int | None = None) -> list:
    """Keras callbacks that do the stage's early stopping, plateau reduction and schedule.

    ``epochs`` is the stage's length as run, which ``--resume --epochs N`` makes longer than planned.
    """
    cb = keras().callbacks
    found = []
    if stage.early_stopping:
        o = _options(
            stage.early_stopping, {"monitor": monitor, "patience": 3, "min_delta": 0.0, "restore_best_weights": True}
        )
        found.append(cb.EarlyStopping(**o, mode=mode(o["monitor"])))
    if stage.reduce_lr_on_plateau:
        o = _options(
            stage.reduce_lr_on_plateau,
            {"monitor": monitor, "factor": 0.1, "patience": 2, "min_delta": 1e-4, "min_lr": 0.0, "cooldown": 0},
        )
        found.append(cb.ReduceLROnPlateau(**o, mode=mode(o["monitor"])))
    if stage.schedule:
        found.append(cb.LearningRateScheduler(rate_schedule(stage, start, epochs)))
    return found


def rate_schedule(stage, start: int, epochs: int | None = None):
    """epoch -> learning rate for the stage's schedule: a linear warmup, then the Keras schedule over the rest.

    ``epochs`` is the stage's length (default: its planned length; a resume with ``--epochs`` lengthens it).
    """
    s = stage.schedule
    lr0, warmup = stage.learning_rate, s.get("warmup_epochs", 0)
    length = (epochs or stage.epochs) - warmup
    schedules = keras().optimizers.schedules
    if s["type"] == "cosine":
        decay = schedules.CosineDecay(lr0, decay_steps=max(length, 1), alpha=s.get("alpha", 0.0))
    elif s["type"] == "exponential":
        decay = schedules.ExponentialDecay(
            lr0, decay_steps=s.get("decay_epochs", 1), decay_rate=s.get("decay_rate", 0.5)
        )
    else:
        decay = schedules.PiecewiseConstantDecay([float(b) for b in s["boundaries"]], [float(v) for v in s["values"]])

    def rate(epoch: int, lr: float) -> float:
        e = epoch - start
        if e < warmup:
            return lr0 * (e + 1) / (warmup + 1)
        return float(keras().ops.convert_to_numpy(decay(float(e - warmup))))

    return rate


def class_weights(stage, class_names: list, counts: list[int], where: str | None = None) -> dict | None:
    """``fit``'s class_weight for the stage: "balanced" or weights by class name (others weigh 1)."""
    spec = stage.class_weight
    if spec is None:
        return None
    if spec == "balanced":
        total, n = sum(counts), len(counts)
        return {i: total / (n * c) if c else 0.0 for i, c in enumerate(counts)}
    unknown = sorted(set(spec) - set(class_names))
    if unknown:
        raise SpecError(
            f'class_weight names "{unknown[0]}", which is not one of the data\'s classes: '
            + ", ".join(class_names[:12]),
            file=where,
            where=f"train.stages ({stage.name}).class_weight",
        )
    return {i: float(spec.get(name, 1.0)) for i, name in enumerate(class_names)}


def logged_metrics(config) -> list[str]:
    """Every metric a run logs (what monitor, early stopping and plateau reduction may watch)."""
    names = ["loss", "accuracy", *config.metrics]
    return names + ([f"val_{n}" for n in names] if config.has_validation else [])


def check_monitors(config, file) -> None:
    """Refuse a monitored metric the run does not log: a typo would otherwise watch nothing for a whole run."""
    logged = logged_metrics(config)
    watched = [("train.monitor", config.monitor_metric)] + [
        (f"train.stages[{i}].{name}", getattr(stage, name).get("monitor"))
        for i, stage in enumerate(config.stages)
        for name in ("early_stopping", "reduce_lr_on_plateau")
        if isinstance(getattr(stage, name), dict)
    ]
    for where, metric in watched:
        if metric is not None and metric not in logged:
            raise SpecError(
                f'"{metric}" is not logged by this run; use one of ' + ", ".join(logged), file=file, where=where
            )
