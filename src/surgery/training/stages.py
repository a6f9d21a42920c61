"""One stage of training: freeze/unfreeze, then compile with the stage's optimizer.

The selectors are those of the spec's ``freeze`` and ``unfreeze`` steps (the same
core functions, ``surgery.spec.selectors``), and ``unfreeze`` keeps
BatchNormalization layers frozen (inference mode: moving statistics used, not
updated) unless the stage says ``"batchnorm": "train"``. Recompiling after the
change is what makes Keras see the new trainable weights.
"""

from __future__ import annotations

from ..errors import SpecError, SurgeryError, counted
from ..keras_env import keras
from ..report.summary import totals
from ..spec.selectors import freeze_layers, unfreeze_layers
from . import options
from .options import Head


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


def classifier_units(model, where: str, doing: str = "trains") -> int:
    """The units of a classifier's one (batch, classes) output; any other model is an error."""
    if len(model.outputs) != 1:
        raise SpecError(
            f"the model has {len(model.outputs)} outputs; surgery {doing} a classifier with one", file=where
        )
    shape = tuple(model.outputs[0].shape)
    if len(shape) != 2:
        raise SpecError(
            f"the model's output has shape {shape}, not (batch, classes); append a head such as "
            "GlobalAveragePooling2D or Flatten, then Dense(units=<classes>)",
            file=where,
        )
    return int(shape[1])


def head(model, class_names: list, where: str, one_hot: bool = False) -> Head:
    """What the model's output is, checked against the data's classes; a head that does not fit is an error."""
    n = len(class_names)
    units = classifier_units(model, where)
    if n < 2:
        raise SpecError(
            f"the data has {n} class ({', '.join(class_names)}); a classifier learns to tell classes "
            "apart, so give it at least 2 (one subfolder per class, or 2 distinct labels in y)",
            file=where,
        )
    if not (units == n or (units == 1 and n == 2)):
        shown = ", ".join(class_names[:6]) + (", ..." if n > 6 else "")
        raise SpecError(
            f"the data has {n} class{'es' * (n != 1)} ({shown}) but the model's output has {units} "
            f"unit{'s' * (units != 1)}; make the last layer's units {n}"
            + (" (or 1 with a sigmoid for two classes)" if n == 2 else ""),
            file=where,
        )
    return Head(n, units, output_activation(model), one_hot=one_hot and units > 1)


def loss_and_metrics(
    model, class_names: list, where: str, *, one_hot: bool = False, label_smoothing: float = 0.0, extra: tuple = ()
):
    """The loss and metrics for the model's head and the data's classes (``options`` maps them to Keras)."""
    found = head(model, class_names, where, one_hot)
    return options.loss(found, label_smoothing), options.metrics(found, extra, where)


def compile_stage(model, stage, loss, metrics) -> None:
    """Compile with the stage's optimizer. Its step counter continues the previous stage's, so that
    TensorBoard's per-step curves (evaluation_*_vs_iterations) go on across stages instead of restarting."""
    previous = getattr(model, "optimizer", None)
    steps = int(previous.iterations.numpy()) if previous is not None and previous.built else 0
    optimizer = options.optimizer(stage)
    model.compile(optimizer=optimizer, loss=loss, metrics=metrics)
    if steps:
        model.optimizer.build(model.trainable_variables)  # the compiled one: a LossScaleOptimizer under float16
        model.optimizer.iterations.assign(steps)


def trainable_report(model) -> str:
    total, trainable, _ = totals(model)
    names = [layer.name for layer in model.layers if layer.trainable_weights]
    shown = ", ".join(names[:4]) + (f", ... ({len(names) - 4} more)" if len(names) > 4 else "")
    return f"trainable: {trainable:,} of {total:,} params in {counted(len(names), 'layer')} ({shown or 'none'})"


def compile_suffix(model, suffix, class_names, where, one_hot, stage, config):
    """Compile the suffix with the full model's optimizer, built on the full model's variables in their
    order, so that a checkpoint holds its state as the full model's own and --resume reads it back."""
    if not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    loss, metrics = loss_and_metrics(
        suffix, class_names, where, one_hot=one_hot, label_smoothing=stage.label_smoothing, extra=config.metrics
    )
    suffix.compile(optimizer=model.optimizer, loss=loss, metrics=metrics)
    return loss, metrics


def random_backbone_warning(model, spec, registry, classes: int, stage: int) -> str | None:
    """One line before the first stage when a frozen backbone has random weights: its features are nearly
    constant (about 1e-11 apart on VGG16), so the loss stays near ln(classes) whatever the head does."""
    import math

    from ..spec.loading import StepContext, op_params

    if stage != 0:
        return None
    first = spec.steps[0]
    info = StepContext(spec, 0, first["op"], registry).source_backbone()
    if info is None or "weights" not in info.options:
        return None
    if op_params(first).get("weights", info.options["weights"].get("default", "imagenet")) is not None:
        return None
    total = model.count_params()
    frozen = total - sum(math.prod(w.shape) for w in model.trainable_weights)
    if frozen <= total / 2:
        return None
    return (
        f"warning: the backbone has random weights (weights: null) and stage 1 keeps {frozen:,} of {total:,} "
        f"params frozen: frozen random features are nearly constant, so the loss will stay near "
        f"ln({classes}) = {math.log(classes):.2f}; give pretrained weights or unfreeze the backbone"
    )
