"""The JSON Schema of a spec's optional ``train`` section (pure data: no TensorFlow).

A stage's ``freeze`` and ``unfreeze`` take the same selectors as the ``freeze``
and ``unfreeze`` ops: both use ``selectors.FREEZE_SCHEMA`` and ``UNFREEZE_SCHEMA``.
"""

from __future__ import annotations

from typing import Any

from .selectors import FREEZE_SCHEMA, UNFREEZE_SCHEMA

OPTIMIZERS = ["adam", "adamw", "sgd", "rmsprop", "nadam", "adamax", "adagrad", "lion"]
# "lion" and "adamw" decay weights by default in Keras; the rest take weight_decay too.
PRECISIONS = ["float32", "mixed_float16", "mixed_bfloat16"]
STRATEGIES = ["default", "mirrored", "multiworker"]


def _closed(schema: dict) -> dict:
    return {**schema, "additionalProperties": False}


SCHEDULES = ["cosine", "exponential", "piecewise"]
# The keys each schedule type reads (warmup_epochs and type apply to all): any other is refused, not ignored.
SCHEDULE_KEYS = {
    "cosine": ("alpha",),
    "exponential": ("decay_rate", "decay_epochs"),
    "piecewise": ("boundaries", "values"),
}
# Rates, weights and factors become float32 in Keras: a larger number is inf there, and trains to NaN.
FLOAT32_MAX = 3.4028234663852886e38
METRICS = ["auc", "precision", "recall", "top_k_accuracy"]
_MONITOR = {
    "type": "string",
    "minLength": 1,
    "description": "a logged metric: loss, accuracy, an extra metric's name, or any of them with val_",
}


def _callback(description: str, **options: dict[str, Any]) -> dict[str, Any]:
    """A Keras callback's setting: true for its defaults, or an object of its options (a metric to monitor
    among them)."""
    return {
        "description": description,
        "anyOf": [
            {"type": "boolean", "description": "true: the defaults"},
            {
                "type": "object",
                "additionalProperties": False,
                "description": "an object of its options",
                "properties": {"monitor": _MONITOR, **options},
            },
        ],
    }


# What a stage may set, each mapped onto the Keras object that does it (training/options.py). The train
# section takes them too, as defaults for every stage.
STAGE_OPTIONS: dict[str, dict[str, Any]] = {
    "optimizer": {"enum": OPTIMIZERS, "default": "adam", "description": "keras.optimizers class, by name"},
    "learning_rate": {
        "type": "number",
        "exclusiveMinimum": 0,
        "maximum": FLOAT32_MAX,
        "default": 1e-3,
        "description": "the optimizer's learning rate (a schedule's starting value)",
    },
    "weight_decay": {
        "type": "number",
        "minimum": 0,
        "maximum": FLOAT32_MAX,
        "description": "the optimizer's decoupled weight decay (AdamW's 0.004 is Keras' default there)",
    },
    "gradient_clip": {
        "description": "clip gradients: a number clips their global norm; or one of norm, value, global_norm",
        "anyOf": [
            {"type": "number", "exclusiveMinimum": 0, "maximum": FLOAT32_MAX, "description": "a global norm"},
            {
                "type": "object",
                "minProperties": 1,
                "maxProperties": 1,
                "additionalProperties": False,
                "description": "an object with one of norm, value, global_norm",
                "properties": {
                    k: {"type": "number", "exclusiveMinimum": 0, "maximum": FLOAT32_MAX}
                    for k in ("norm", "value", "global_norm")
                },
            },
        ],
    },
    "schedule": {
        "type": "object",
        "description": "the learning rate over the stage's epochs (keras.optimizers.schedules, applied per epoch)",
        "properties": {
            "type": {
                "enum": SCHEDULES,
                "description": "cosine: CosineDecay; exponential: ExponentialDecay; piecewise: PiecewiseConstantDecay",
            },
            "warmup_epochs": {
                "type": "integer",
                "minimum": 0,
                "default": 0,
                "description": "epochs of linear warmup from 0 before the schedule starts",
            },
            "alpha": {
                "type": "number",
                "minimum": 0,
                "maximum": 1,
                "default": 0,
                "description": "cosine: the final rate as a fraction of the first",
            },
            "decay_rate": {
                "type": "number",
                "exclusiveMinimum": 0,
                "exclusiveMaximum": 1,
                "default": 0.5,
                "description": "exponential: the factor per decay_epochs",
            },
            "decay_epochs": {
                "type": "integer",
                "minimum": 1,
                "default": 1,
                "description": "exponential: epochs per factor of decay_rate",
            },
            "boundaries": {
                "type": "array",
                "items": {"type": "integer", "minimum": 1},
                "minItems": 1,
                "description": "piecewise: the stage's epochs where the rate changes",
            },
            "values": {
                "type": "array",
                "items": {"type": "number", "exclusiveMinimum": 0, "maximum": FLOAT32_MAX},
                "minItems": 2,
                "description": "piecewise: the rates, one more than boundaries",
            },
        },
        "required": ["type"],
        "additionalProperties": False,
    },
    "early_stopping": _callback(
        "keras.callbacks.EarlyStopping: end the stage when the monitored metric stops improving",
        patience={"type": "integer", "minimum": 0, "default": 3},
        min_delta={"type": "number", "minimum": 0, "maximum": FLOAT32_MAX, "default": 0},
        restore_best_weights={"type": "boolean", "default": True},
    ),
    "reduce_lr_on_plateau": _callback(
        "keras.callbacks.ReduceLROnPlateau: lower the rate when the monitored metric stalls",
        factor={"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1, "default": 0.1},
        patience={"type": "integer", "minimum": 0, "default": 2},
        min_delta={"type": "number", "minimum": 0, "maximum": FLOAT32_MAX, "default": 1e-4},
        min_lr={"type": "number", "minimum": 0, "maximum": FLOAT32_MAX, "default": 0},
        cooldown={"type": "integer", "minimum": 0, "default": 0},
    ),
    "label_smoothing": {
        "type": "number",
        "minimum": 0,
        "exclusiveMaximum": 1,
        "default": 0,
        "description": "the cross-entropy's label smoothing",
    },
    "class_weight": {
        "description": '"balanced" (each class weighs n / (classes x its count)), or weights by class name',
        "anyOf": [
            {"const": "balanced"},
            {
                "type": "object",
                "additionalProperties": {"type": "number", "minimum": 0, "maximum": FLOAT32_MAX},
                "description": "an object of class name -> weight (others weigh 1)",
            },
        ],
    },
}

STAGE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 1, "description": "shown in the log; default stage1, stage2, ..."},
        "epochs": {"type": "integer", "minimum": 1},
        **STAGE_OPTIONS,
        "freeze": {**_closed(FREEZE_SCHEMA), "description": "applied before the stage, before unfreeze"},
        "unfreeze": {
            **_closed(UNFREEZE_SCHEMA),
            "description": "applied before the stage; BatchNormalization stays frozen unless batchnorm=train",
        },
    },
    "required": ["epochs"],
    "additionalProperties": False,
}

TRAIN_SCHEMA = {
    "type": "object",
    "description": "how `surgery train` trains the built model; command-line options override it",
    "properties": {
        "data": {
            "type": "string",
            "minLength": 1,
            "description": "a folder of class subfolders of images, or an .npz with x and y (relative to the spec)",
        },
        "validation_data": {"type": "string", "minLength": 1, "description": "a separate validation folder or .npz"},
        "validation_split": {"type": "number", "minimum": 0, "exclusiveMaximum": 1, "default": 0.2},
        "batch_size": {"type": "integer", "minimum": 1, "default": 32},
        "image_size": {
            "type": "array",
            "items": {"type": "integer", "minimum": 1},
            "minItems": 2,
            "maxItems": 2,
            "description": "[height, width]; only for a model whose input size is not fixed",
        },
        "seed": {
            "type": "integer",
            "minimum": 0,
            "maximum": 2**31 - 1,
            "description": "data split, shuffling and new weights; default: the spec's seed",
        },
        "deterministic": {
            "type": "boolean",
            "default": False,
            "description": "deterministic TensorFlow ops (same seed, same result; slower on GPU)",
        },
        "precision": {"enum": PRECISIONS, "default": "float32"},
        "monitor": {
            **_MONITOR,
            "description": "the metric that picks best.keras and that early stopping and "
            "reduce_lr_on_plateau watch; default val_accuracy (accuracy "
            "without validation)",
        },
        "metrics": {
            "type": "array",
            "items": {
                "anyOf": [
                    {"enum": METRICS},
                    {
                        "type": "string",
                        "pattern": "^top_([2-9]|[1-9][0-9]+)_accuracy$",
                        "description": '"top_K_accuracy" (K of 2 or more)',
                    },
                    {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["top_k_accuracy"],
                        "description": '{"top_k_accuracy": k}',
                        "properties": {"top_k_accuracy": {"type": "integer", "minimum": 2}},
                    },
                ]
            },
            "description": "metrics logged besides loss and accuracy: auc, precision, recall, top_k_accuracy "
            '(k=5), top_K_accuracy (top_3_accuracy, ...) or {"top_k_accuracy": k}',
        },
        "preprocess_in_model": {
            "type": "boolean",
            "default": True,
            "description": "put the backbone's preprocessing into the trained model, so it takes raw 0-255 pixels",
        },
        "cache": {"type": "boolean", "default": True, "description": "cache decoded images in memory"},
        "strategy": {
            "enum": STRATEGIES,
            "default": "default",
            "description": "default: one device; mirrored: every local GPU; multiworker: the machines TF_CONFIG lists",
        },
        "feature_cache": {
            "type": "boolean",
            "default": True,
            "description": "train the layers after the frozen prefix on its outputs, computed once",
        },
        "feature_cache_memory_mb": {
            "type": "integer",
            "minimum": 0,
            "default": 1024,
            "description": "cached features larger than this go to a file in the temporary folder instead of memory",
        },
        "stages": {"type": "array", "minItems": 1, "items": STAGE_SCHEMA},
        **{
            k: {**v, "description": v.get("description", "") + " (the default of every stage)"}
            for k, v in STAGE_OPTIONS.items()
            if k not in ("optimizer", "learning_rate")
        },
    },
    "additionalProperties": False,
}
