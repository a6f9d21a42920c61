"""One stage of training: freeze/unfreeze, then compile with the stage's optimizer.

The selectors are those of the spec's ``freeze`` and ``unfreeze`` steps (the same
core functions, ``surgery.selectors``), and ``unfreeze`` keeps
BatchNormalization layers frozen (inference mode: moving statistics used, not
updated) unless the stage says ``"batchnorm": "train"``. Recompiling after the
change is what makes Keras see the new trainable weights.
"""

from __future__ import annotations

from ..errors import SpecError, SurgeryError
from ..keras_env import keras
from ..selectors import freeze_layers, unfreeze_layers
from ..summary import totals


def apply_selectors(model, stage, index: int, spec) -> list[str]:
    """Run the stage's freeze, then unfreeze, on the model in place; their one-line notes.

    They select layers exactly as the spec's freeze and unfreeze steps do (the same core functions).
    """
    notes = []
    for op, change in (("freeze", freeze_layers), ("unfreeze", unfreeze_layers)):
        params = getattr(stage, op)
        if params is None:
            continue
        try:
            notes.append(change(model, dict(params)))
        except SurgeryError as e:
            raise e.located(file=spec.file, where=f"train.stages[{index}].{op}") from None
    return notes


def rehearse(model, config, first: int, spec, resumed_mid_stage: bool) -> None:
    """Apply the selectors of stages ``first``.. in order and undo them: a selector that matches nothing,
    or a stage with nothing to train, is reported before anything is written or trained."""
    saved = [(layer, layer.trainable) for layer in model._flatten_layers(include_self=False, recursive=True)]
    try:
        for i in range(first, len(config.stages)):
            if not (i == first and resumed_mid_stage):
                apply_selectors(model, config.stages[i], i, spec)
            if not model.trainable_weights:
                raise SpecError(
                    f"stage {config.stages[i].name} has nothing to train: every layer is frozen; "
                    "add an unfreeze to the stage",
                    file=spec.file,
                    where=f"train.stages[{i}]",
                )
    finally:
        # Pre-order (parents before their sublayers), because setting a parent's flag sets its sublayers'.
        for layer, trainable in saved:
            layer.trainable = trainable


def output_activation(model) -> str:
    """The name of the activation that produces the model's output ("linear" for logits)."""
    k = keras()
    last = model.outputs[0]._keras_history.operation
    if isinstance(last, k.layers.Softmax):
        return "softmax"
    activation = getattr(last, "activation", None)
    return getattr(activation, "__name__", "linear") if activation is not None else "linear"


def loss_and_metrics(model, class_names: list, where: str):
    """The loss for the model's head and the data's classes; a head that does not fit is an error."""
    k = keras()
    n = len(class_names)
    if len(model.outputs) != 1:
        raise SpecError(f"the model has {len(model.outputs)} outputs; surgery trains a classifier with one", file=where)
    shape = tuple(model.outputs[0].shape)
    activation = output_activation(model)
    if len(shape) != 2:
        raise SpecError(
            f"the model's output has shape {shape}, not (batch, classes); append a head such as "
            "GlobalAveragePooling2D or Flatten, then Dense(units=<classes>)",
            file=where,
        )
    units = shape[1]
    if n < 2:
        raise SpecError(
            f"the data has {n} class ({', '.join(class_names)}); a classifier learns to tell classes "
            "apart, so give it at least 2 (one subfolder per class, or 2 distinct labels in y)",
            file=where,
        )
    if units == 1 and n == 2:
        logits = activation != "sigmoid"
        return (
            k.losses.BinaryCrossentropy(from_logits=logits),
            [k.metrics.BinaryAccuracy(name="accuracy", threshold=0.0 if logits else 0.5)],
        )
    if units != n:
        shown = ", ".join(class_names[:6]) + (", ..." if n > 6 else "")
        raise SpecError(
            f"the data has {n} class{'es' * (n != 1)} ({shown}) but the model's output has {units} "
            f"unit{'s' * (units != 1)}; make the last layer's units {n}"
            + (" (or 1 with a sigmoid for two classes)" if n == 2 else ""),
            file=where,
        )
    return (
        k.losses.SparseCategoricalCrossentropy(from_logits=activation != "softmax"),
        [k.metrics.SparseCategoricalAccuracy(name="accuracy")],
    )


def compile_stage(model, stage, loss, metrics) -> None:
    k = keras()
    optimizer = k.optimizers.get({"class_name": stage.optimizer, "config": {"learning_rate": stage.learning_rate}})
    model.compile(optimizer=optimizer, loss=loss, metrics=metrics)


def trainable_report(model) -> str:
    total, trainable, _ = totals(model)
    names = [layer.name for layer in model.layers if layer.trainable_weights]
    shown = ", ".join(names[:4]) + (f", ... ({len(names) - 4} more)" if len(names) > 4 else "")
    return f"trainable: {trainable:,} of {total:,} params in {len(names)} layers ({shown or 'none'})"
