"""Every option of training, in one table (pure data: no TensorFlow).

One ``TrainOption`` per key gives what the spec's ``train`` section accepts (the JSON Schema below, which
``surgery validate`` and editors read), what ``surgery.train(**options)`` and the command line may override
(``training.config``), the dataclass fields that hold them (a test holds ``Stage`` and ``TrainConfig`` to
the table), and the command-line options of ``surgery train`` (``cli.train`` builds them from the
``flag`` of each). A stage's ``freeze`` and ``unfreeze`` take the same selectors as the ``freeze`` and
``unfreeze`` ops: both use ``selectors.FREEZE_SCHEMA`` and ``UNFREEZE_SCHEMA``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from .selectors import FREEZE_SCHEMA, UNFREEZE_SCHEMA
from .train_values import (
    CLASS_WEIGHT,
    FLOAT32_MAX,
    METRICS,
    MONITOR,
    NON_NEGATIVE,
    OPTIMIZERS,
    PRECISIONS,
    SCHEDULE,
    STRATEGIES,
    callback_schema,
    closed,
    parse_metrics,
)

DEFAULT_EPOCHS = 10

Scope = Literal["section", "stage", "stage_only", "python"]


@dataclass(frozen=True)
class Flag:
    """How ``surgery train`` spells an option: ``--name`` taking the schema's value, unless told otherwise.

    ``switch``: a flag without a value, which gives the option ``value``. ``schema``: what the flag takes
    when the command line takes less than the spec (``--class-weight balanced``). ``to_spec``: the
    flag's value as the spec's (``--early-stopping 3`` -> ``{"patience": 3}``).
    """

    name: str | None = None
    help: str | None = None
    metavar: str | None = None
    switch: bool = False
    value: Any = True
    schema: dict[str, Any] | None = None
    to_spec: Callable[[Any], Any] | None = None


@dataclass(frozen=True)
class TrainOption:
    """A key of the ``train`` section.

    ``scope``: ``section`` (the run's), ``stage`` (a stage's, and at the section's top the default of every
    stage), ``stage_only`` (in a stage only), ``python`` (``surgery.train`` only: not a spec key).
    ``execution``: how a run is carried out, not what it computes (``--resume`` may change it).
    ``flag``: its ``surgery train`` option; None: the command line does not set it.
    """

    name: str
    schema: dict[str, Any]
    scope: Scope = "section"
    execution: bool = False
    flag: Flag | None = None

    @property
    def default(self) -> Any:
        return self.schema.get("default")

    @property
    def flag_name(self) -> str:
        return (self.flag and self.flag.name) or "--" + self.name.replace("_", "-")

    @property
    def overridable(self) -> bool:
        """Whether ``surgery.train(**options)`` and the command line may set it for the whole run."""
        return self.scope != "stage_only" or self.name == "epochs"


_POSITIVE = {"type": "number", "exclusiveMinimum": 0, "maximum": FLOAT32_MAX}

OPTIONS: tuple[TrainOption, ...] = (
    TrainOption(
        "data",
        {
            "type": "string",
            "minLength": 1,
            "description": "a folder of class subfolders of images, or an .npz with x and y (relative to the spec)",
        },
        flag=Flag(
            help="A folder of class subfolders of images, or an .npz with x and y (default: the spec's train.data)."
        ),
    ),
    TrainOption(
        "validation_data",
        {"type": "string", "minLength": 1, "description": "a separate validation folder or .npz"},
        flag=Flag(help="A separate validation folder or .npz (instead of a split)."),
    ),
    TrainOption(
        "validation_split",
        {"type": "number", "minimum": 0, "exclusiveMaximum": 1, "default": 0.2},
        flag=Flag(help="Fraction of --data held out for validation (default 0.2)."),
    ),
    TrainOption(
        "samples_per_class",
        {"type": "integer", "minimum": 1, "description": "train on N images of each class, drawn with the seed"},
        flag=Flag(help="Train on N images of each class, drawn with the seed (the validation images stay)."),
    ),
    TrainOption(
        "batch_size", {"type": "integer", "minimum": 1, "default": 32}, flag=Flag(help="Images per batch (default 32).")
    ),
    TrainOption(
        "image_size",
        {
            "type": "array",
            "items": {"type": "integer", "minimum": 1},
            "minItems": 2,
            "maxItems": 2,
            "description": "[height, width]; only for a model whose input size is not fixed",
        },
    ),
    TrainOption(
        "seed",
        {
            "type": "integer",
            "minimum": 0,
            "maximum": 2**31 - 1,
            "description": "data split, shuffling and new weights; default: the spec's seed",
        },
        flag=Flag(help="Data split, shuffling, new weights."),
    ),
    TrainOption(
        "deterministic",
        {
            "type": "boolean",
            "default": False,
            "description": "deterministic TensorFlow ops (same seed, same result; slower on GPU)",
        },
        flag=Flag(switch=True, help="Deterministic TensorFlow ops (slower on GPU)."),
    ),
    TrainOption(
        "precision",
        {"enum": PRECISIONS, "default": "float32"},
        flag=Flag(help="Mixed precision policy (default float32)."),
    ),
    TrainOption(
        "monitor",
        {
            **MONITOR,
            "description": "the metric that picks best.keras and that early stopping and "
            "reduce_lr_on_plateau watch; default val_accuracy (accuracy "
            "without validation)",
        },
        flag=Flag(help="The metric that picks best.keras and that early stopping watches (val_loss, ...)."),
    ),
    TrainOption(
        "metrics",
        {
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
        flag=Flag(
            schema={"type": "string"},
            to_spec=parse_metrics,
            help="Extra metrics, comma-separated: auc, precision, recall, top_k_accuracy (top 5) or top_K_accuracy.",
        ),
    ),
    TrainOption(
        "preprocess_in_model",
        {
            "type": "boolean",
            "default": True,
            "description": "put the backbone's preprocessing into the trained model, so it takes raw 0-255 pixels",
        },
        flag=Flag(
            "--no-preprocess-in-model",
            switch=True,
            value=False,
            help="Keep the backbone's preprocessing outside the trained model (classes.json names it) "
            "instead of in it.",
        ),
    ),
    TrainOption("cache", {"type": "boolean", "default": True, "description": "cache decoded images in memory"}),
    TrainOption(
        "strategy",
        {
            "enum": STRATEGIES,
            "default": "default",
            "description": "default: one device; mirrored: every local GPU; multiworker: the machines TF_CONFIG lists",
        },
        execution=True,
        flag=Flag(
            help="default: one device; mirrored: every local GPU; multiworker: the machines TF_CONFIG lists "
            "(see docs/training.md)."
        ),
    ),
    TrainOption(
        "feature_cache",
        {
            "type": "boolean",
            "default": True,
            "description": "train the layers after the frozen prefix on its outputs, computed once",
        },
        execution=True,
        flag=Flag(
            "--no-cache",
            switch=True,
            value=False,
            help="Run the frozen layers every epoch instead of training the layers after them on their outputs, "
            "computed once.",
        ),
    ),
    TrainOption(
        "feature_cache_memory_mb",
        {
            "type": "integer",
            "minimum": 0,
            "default": 1024,
            "description": "cached features larger than this go to a file in the temporary folder instead of memory",
        },
        execution=True,
    ),
    # What a stage may set, each mapped onto the Keras object that does it (training/options.py).
    TrainOption(
        "optimizer",
        {"enum": OPTIMIZERS, "default": "adam", "description": "keras.optimizers class, by name"},
        scope="stage",
        flag=Flag(help="Every stage's optimizer (default adam)."),
    ),
    TrainOption(
        "learning_rate",
        {
            **_POSITIVE,
            "default": 1e-3,
            "description": "the optimizer's learning rate (a schedule's starting value)",
        },
        scope="stage",
        flag=Flag(help="Every stage's learning rate (default 0.001)."),
    ),
    TrainOption(
        "weight_decay",
        {
            **NON_NEGATIVE,
            "description": "the optimizer's decoupled weight decay (AdamW's 0.004 is Keras' default there)",
        },
        scope="stage",
        flag=Flag(help="Every stage's optimizer weight decay."),
    ),
    TrainOption(
        "gradient_clip",
        {
            "description": "clip gradients: a number clips their global norm; or one of norm, value, global_norm",
            "anyOf": [
                {**_POSITIVE, "description": "a global norm"},
                {
                    "type": "object",
                    "minProperties": 1,
                    "maxProperties": 1,
                    "additionalProperties": False,
                    "description": "an object with one of norm, value, global_norm",
                    "properties": {k: _POSITIVE for k in ("norm", "value", "global_norm")},
                },
            ],
        },
        scope="stage",
    ),
    TrainOption("schedule", SCHEDULE, scope="stage"),
    TrainOption(
        "early_stopping",
        callback_schema(
            "keras.callbacks.EarlyStopping: end the stage when the monitored metric stops improving",
            patience={"type": "integer", "minimum": 0, "default": 3},
            min_delta={**NON_NEGATIVE, "default": 0},
            restore_best_weights={"type": "boolean", "default": True},
        ),
        scope="stage",
        flag=Flag(
            metavar="PATIENCE",
            schema={"type": "integer", "minimum": 0},
            to_spec=lambda patience: {"patience": patience},
            help="End a stage when the monitored metric has not improved for PATIENCE epochs (best weights restored).",
        ),
    ),
    TrainOption(
        "reduce_lr_on_plateau",
        callback_schema(
            "keras.callbacks.ReduceLROnPlateau: lower the rate when the monitored metric stalls",
            factor={"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1, "default": 0.1},
            patience={"type": "integer", "minimum": 0, "default": 2},
            min_delta={**NON_NEGATIVE, "default": 1e-4},
            min_lr={**NON_NEGATIVE, "default": 0},
            cooldown={"type": "integer", "minimum": 0, "default": 0},
        ),
        scope="stage",
    ),
    TrainOption(
        "label_smoothing",
        {
            "type": "number",
            "minimum": 0,
            "exclusiveMaximum": 1,
            "default": 0,
            "description": "the cross-entropy's label smoothing",
        },
        scope="stage",
        flag=Flag(help="Label smoothing of the loss."),
    ),
    TrainOption(
        "class_weight",
        CLASS_WEIGHT,
        scope="stage",
        flag=Flag(schema={"enum": ["balanced"]}, help="Weigh classes by their inverse frequency."),
    ),
    TrainOption(
        "name",
        {"type": "string", "minLength": 1, "description": "shown in the log; default stage1, stage2, ..."},
        scope="stage_only",
    ),
    TrainOption(
        "epochs",
        {"type": "integer", "minimum": 1},
        scope="stage_only",
        flag=Flag(help="Epochs of every stage (overrides the spec); with --resume, the total to train the run on to."),
    ),
    TrainOption(
        "freeze",
        {**closed(FREEZE_SCHEMA), "description": "applied before the stage, before unfreeze"},
        scope="stage_only",
    ),
    TrainOption(
        "unfreeze",
        {
            **closed(UNFREEZE_SCHEMA),
            "description": "applied before the stage; BatchNormalization stays frozen unless batchnorm=train",
        },
        scope="stage_only",
    ),
    TrainOption(
        "class_names",
        {"type": "array", "items": {"type": "string"}, "description": "the names of in-memory data's classes"},
        scope="python",
    ),
)

BY_NAME = {o.name: o for o in OPTIONS}
STAGE_OPTIONS = {o.name: o.schema for o in OPTIONS if o.scope == "stage"}
OVERRIDABLE = sorted(o.name for o in OPTIONS if o.overridable)
EXECUTION_ONLY = tuple(o.name for o in OPTIONS if o.execution)
FLAGGED = tuple(o for o in OPTIONS if o.flag is not None)

STAGE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {o.name: o.schema for o in OPTIONS if o.scope in ("stage", "stage_only")},
    "required": ["epochs"],
    "additionalProperties": False,
}

TRAIN_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "how `surgery train` trains the built model; command-line options override it",
    "properties": {
        **{o.name: o.schema for o in OPTIONS if o.scope == "section"},
        "stages": {"type": "array", "minItems": 1, "items": STAGE_SCHEMA},
        **{
            name: {**schema, "description": schema.get("description", "") + " (the default of every stage)"}
            for name, schema in STAGE_OPTIONS.items()
        },
    },
    "additionalProperties": False,
}
