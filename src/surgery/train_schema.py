"""The JSON Schema of a spec's optional ``train`` section (pure data: no TensorFlow).

A stage's ``freeze`` and ``unfreeze`` take the same selectors as the ``freeze``
and ``unfreeze`` ops: both use ``selectors.FREEZE_SCHEMA`` and ``UNFREEZE_SCHEMA``.
"""

from __future__ import annotations

from .selectors import FREEZE_SCHEMA, UNFREEZE_SCHEMA

OPTIMIZERS = ["adam", "adamw", "sgd", "rmsprop", "nadam", "adamax", "adagrad", "lion"]
PRECISIONS = ["float32", "mixed_float16", "mixed_bfloat16"]
STRATEGIES = ["default", "mirrored", "multiworker"]


def _closed(schema: dict) -> dict:
    return {**schema, "additionalProperties": False}


STAGE_SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 1, "description": "shown in the log; default stage1, stage2, ..."},
        "epochs": {"type": "integer", "minimum": 1},
        "optimizer": {"enum": OPTIMIZERS, "default": "adam"},
        "learning_rate": {"type": "number", "exclusiveMinimum": 0, "default": 1e-3},
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
            "type": "string",
            "minLength": 1,
            "description": "the metric that picks the best checkpoint; default val_accuracy",
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
    },
    "additionalProperties": False,
}
