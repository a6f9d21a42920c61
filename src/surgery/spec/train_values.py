"""The values training options take: the lists of names, and the larger schemas (pure data: no TensorFlow).

``train_options`` puts them into its table of options.
"""

from __future__ import annotations

import re
from typing import Any

from ..errors import SpecError

OPTIMIZERS = ["adam", "adamw", "sgd", "rmsprop", "nadam", "adamax", "adagrad", "lion"]
# "lion" and "adamw" decay weights by default in Keras; the rest take weight_decay too.
PRECISIONS = ["float32", "mixed_float16", "mixed_bfloat16"]
STRATEGIES = ["default", "mirrored", "multiworker"]
SCHEDULES = ["cosine", "exponential", "piecewise"]
# The keys each schedule type reads (warmup_epochs and type apply to all): any other is refused, not ignored.
SCHEDULE_KEYS = {
    "cosine": ("alpha",),
    "exponential": ("decay_rate", "decay_epochs"),
    "piecewise": ("boundaries", "values"),
}
# Rates, weights and factors become float32 in Keras: a larger number is inf there, and trains to NaN.
FLOAT32_MAX = 3.4028234663852886e38
NON_NEGATIVE = {"type": "number", "minimum": 0, "maximum": FLOAT32_MAX}
CLASS_WEIGHT = {
    "description": '"balanced" (each class weighs n / (classes x its count)), or weights by class name',
    "anyOf": [
        {"const": "balanced"},
        {
            "type": "object",
            "additionalProperties": NON_NEGATIVE,
            "description": "an object of class name -> weight (others weigh 1)",
        },
    ],
}
METRICS = ["auc", "precision", "recall", "top_k_accuracy"]

MONITOR = {
    "type": "string",
    "minLength": 1,
    "description": "a logged metric: loss, accuracy, an extra metric's name, or any of them with val_",
}


def closed(schema: dict) -> dict:
    return {**schema, "additionalProperties": False}


def callback_schema(description: str, **options: dict[str, Any]) -> dict[str, Any]:
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
                "properties": {"monitor": MONITOR, **options},
            },
        ],
    }


def parse_metrics(text: str) -> list[str | dict[str, int]]:
    """``--metrics auc,top_3_accuracy`` as the spec writes it: ``["auc", {"top_k_accuracy": 3}]``."""
    found: list[str | dict[str, int]] = []
    for name in (n.strip() for n in text.split(",") if n.strip()):
        top = re.fullmatch(r"top_(\d+)_accuracy", name)
        if top:
            found.append({"top_k_accuracy": int(top.group(1))})
        elif name in METRICS:
            found.append(name)
        else:
            raise SpecError(
                f'unknown metric "{name}"; valid: ' + ", ".join(METRICS) + ", top_K_accuracy", where="--metrics"
            )
    return found


SCHEDULE: dict[str, Any] = {
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
}
