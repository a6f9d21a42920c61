"""A spec's ``train`` section merged with command-line overrides (no TensorFlow).

Paths in the spec are relative to the spec file; paths given on the command line
are relative to the working directory, as a user typing them expects. Stage
options given at the section's top level are every stage's defaults; a stage's
own value wins, and a command-line override beats both.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from ..errors import OpError, SpecError, counted, did_you_mean
from ..json_values import plain
from ..spec.loading import schema_error
from ..spec.selectors import parse_slice
from ..spec.train_options import (
    BY_NAME,
    DEFAULT_EPOCHS,
    EXECUTION_ONLY,
    OVERRIDABLE,
    STAGE_OPTIONS,
    STAGE_SCHEMA,
    TRAIN_SCHEMA,
)
from ..spec.train_values import SCHEDULE_KEYS


def _default(name: str) -> Any:
    """The table's default (train_options.OPTIONS): the schema that editors show and the dataclass agree."""
    return BY_NAME[name].default


@dataclass(frozen=True)
class Stage:
    name: str
    epochs: int
    optimizer: str = _default("optimizer")
    learning_rate: float = _default("learning_rate")
    weight_decay: float | None = None
    gradient_clip: Any = None
    schedule: dict | None = None
    early_stopping: Any = None
    reduce_lr_on_plateau: Any = None
    label_smoothing: float = _default("label_smoothing")
    class_weight: Any = None
    freeze: dict | None = None
    unfreeze: dict | None = None

    def describe(self) -> str:
        text = f"{counted(self.epochs, 'epoch')}, {self.optimizer} lr {self.learning_rate:g}"
        if self.schedule:
            text += f" ({self.schedule['type']} schedule"
            warmup = self.schedule.get("warmup_epochs", 0)
            text += f", after {counted(warmup, 'warmup epoch')})" if warmup else ")"
        extras = [
            name.replace("_", " ")
            for name in ("early_stopping", "reduce_lr_on_plateau", "weight_decay", "gradient_clip", "class_weight")
            if getattr(self, name) not in (None, False)
        ]
        if self.label_smoothing:
            extras.append(f"label smoothing {self.label_smoothing:g}")
        return text + (f"; {', '.join(extras)}" if extras else "")


@dataclass(frozen=True)
class TrainConfig:
    data: Any  # a path, or in-memory data given from Python (training.sources)
    stages: tuple
    validation_data: Any = None
    validation_split: float = _default("validation_split")
    samples_per_class: int | None = None
    batch_size: int = _default("batch_size")
    image_size: tuple | None = None
    seed: int = 0
    deterministic: bool = _default("deterministic")
    precision: str = _default("precision")
    monitor: str | None = None
    metrics: tuple = ()
    preprocess_in_model: bool = _default("preprocess_in_model")
    cache: bool = _default("cache")
    strategy: str = _default("strategy")
    feature_cache: bool = _default("feature_cache")
    feature_cache_memory_mb: int = _default("feature_cache_memory_mb")
    class_names: tuple | None = field(default=None)  # in-memory data: the names of its classes

    @property
    def has_validation(self) -> bool:
        return self.validation_data is not None or self.validation_split > 0

    @property
    def monitor_metric(self) -> str:
        return self.monitor or ("val_accuracy" if self.has_validation else "accuracy")

    def with_epochs(self, epochs: list[int]) -> TrainConfig:
        return replace(self, stages=tuple(replace(stage, epochs=n) for stage, n in zip(self.stages, epochs)))

    def fingerprint(self) -> dict:
        """What must not change between a run and its --resume (paths included: other data is another run)."""
        # Not asdict(self): it would deep-copy the data, and a tf.data.Dataset cannot be copied.
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in EXECUTION_ONLY}
        values["stages"] = [asdict(stage) for stage in self.stages]
        for key in ("data", "validation_data"):
            if values[key] is not None and not isinstance(values[key], (str, Path)):
                values[key] = "<data given from Python>"
        return json.loads(json.dumps(values, default=str))


TRAIN_PROPERTIES: dict[str, Any] = TRAIN_SCHEMA["properties"]


def resolve(spec, overrides: dict, need_data: bool = True) -> TrainConfig:
    """The training config: the spec's ``train`` section, then every override that is not None.

    Overrides named like a stage option (``learning_rate``, ``early_stopping``, ...) apply to every stage;
    ``epochs`` too. ``need_data=False`` checks a section whose data ``--data`` gives later (``validate``).
    """
    section = dict(spec.data.get("train", {}))
    for key in ("data", "validation_data"):
        if key in section:
            section[key] = spec.input_file(section[key])
    given = {k: v for k, v in overrides.items() if v is not None}
    for key, value in list(given.items()):
        if key not in OVERRIDABLE:
            raise SpecError(
                f'unknown training option "{key}"' + did_you_mean(key, OVERRIDABLE), where="surgery.train()"
            )
        if key not in ("data", "validation_data"):  # data may be arrays or a tf.data.Dataset (sources)
            given[key] = plain(value, f"--{key.replace('_', '-')}")
        if key in TRAIN_PROPERTIES and key not in STAGE_OPTIONS and key not in ("data", "validation_data"):
            msg = schema_error(TRAIN_PROPERTIES[key], given[key])
            if msg:
                raise SpecError(msg, where=f"--{key.replace('_', '-')}")
    for key in ("data", "validation_data"):
        if isinstance(given.get(key), (str, Path)):
            given[key] = Path(given[key]).resolve()
    stage_overrides = {k: given.pop(k) for k in list(given) if k in STAGE_OPTIONS or k == "epochs"}
    for key, value in stage_overrides.items():
        # Options from the command line or Python meet the schema the spec's own values meet.
        msg = schema_error(STAGE_SCHEMA["properties"][key], value)
        if msg:
            raise SpecError(msg, where=f"--{key.replace('_', '-')}")
    if "validation_split" in given and "validation_data" not in given:
        section.pop("validation_data", None)  # a split asked for on the command line beats the spec's folder
    section.update(given)
    if not need_data:
        section.setdefault("data", None)
    if "data" not in section:
        raise SpecError("no training data: pass --data PATH, or set train.data in the spec", file=spec.file)
    if section.get("validation_data") is not None:
        section["validation_split"] = 0.0
    section.setdefault("seed", spec.seed)
    for key in ("image_size", "class_names"):
        if section.get(key) is not None:
            section[key] = tuple(section[key])
    section["metrics"] = tuple(_metric_name(m) for m in section.get("metrics", ()))
    twice = next((n for i, n in enumerate(section["metrics"]) if n in section["metrics"][:i]), None)
    if twice is not None:  # Keras would log the second under the same name, and one column would hide the other
        raise SpecError(
            f'names the metric "{twice}" twice; give each metric once',
            file=None if "metrics" in given else spec.file,
            where="--metrics" if "metrics" in given else "train.metrics",
        )
    defaults = {k: section.pop(k) for k in list(section) if k in STAGE_OPTIONS}
    stages = section.pop("stages", None) or [{"epochs": DEFAULT_EPOCHS}]
    section["stages"] = tuple(_stage(spec, i, {**defaults, **s, **stage_overrides}) for i, s in enumerate(stages))
    return TrainConfig(**section)


def _metric_name(entry) -> str:
    """A metric as the spec names it, as its logged name: "auc", "top_5_accuracy"."""
    if isinstance(entry, dict):
        return f"top_{entry['top_k_accuracy']}_accuracy"
    return "top_5_accuracy" if entry == "top_k_accuracy" else entry


def _stage(spec, i: int, raw: dict) -> Stage:
    raw = dict(raw)
    raw.setdefault("name", f"stage{i + 1}")
    where = f"train.stages[{i}]"
    for op in ("freeze", "unfreeze"):
        if "layers" in raw.get(op, {}):
            try:
                parse_slice(raw[op]["layers"])
            except OpError as e:
                raise e.located(file=spec.file, where=f"{where}.{op}") from None
    schedule = raw.get("schedule")
    if schedule and raw.get("reduce_lr_on_plateau"):
        raise SpecError(
            "schedule and reduce_lr_on_plateau both set the learning rate; give one", file=spec.file, where=where
        )
    if schedule:
        _check_schedule(schedule, raw["epochs"], spec, f"{where}.schedule")
    return Stage(**raw)


def _check_schedule(schedule: dict, epochs: int, spec, where: str) -> None:
    warmup = schedule.get("warmup_epochs", 0)
    if warmup >= epochs:
        raise SpecError(
            f"warmup_epochs {warmup} leaves none of the stage's {epochs} epochs to the schedule",
            file=spec.file,
            where=where,
        )
    kind = schedule["type"]
    for key in sorted(schedule):
        owner = next((t for t, keys in SCHEDULE_KEYS.items() if key in keys), kind)
        if owner != kind:
            takes = ", ".join(("warmup_epochs", *SCHEDULE_KEYS[kind]))
            raise SpecError(
                f'"{key}" is for the {owner} schedule; a {kind} schedule takes {takes}', file=spec.file, where=where
            )
    if kind != "piecewise":
        return
    boundaries, values = schedule.get("boundaries"), schedule.get("values")
    if boundaries is None or values is None:
        raise SpecError(
            "a piecewise schedule needs boundaries (epochs) and values (rates)", file=spec.file, where=where
        )
    if len(values) != len(boundaries) + 1:
        raise SpecError(
            f"{len(boundaries)} boundaries need {len(boundaries) + 1} values, got {len(values)}",
            file=spec.file,
            where=where,
        )
    if boundaries != sorted(set(boundaries)):
        raise SpecError("boundaries must increase", file=spec.file, where=where)
