"""A spec's ``train`` section merged with command-line overrides (no TensorFlow).

Paths in the spec are relative to the spec file; paths given on the command line
are relative to the working directory, as a user typing them expects.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import OpError, SpecError
from ..selectors import parse_slice

DEFAULT_EPOCHS = 10
# How a run is carried out, not what it computes: --resume may change them.
EXECUTION_ONLY = ("strategy", "feature_cache", "feature_cache_memory_mb")


@dataclass(frozen=True)
class Stage:
    name: str
    epochs: int
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    freeze: dict | None = None
    unfreeze: dict | None = None

    def describe(self) -> str:
        return f"{self.epochs} epoch{'s' * (self.epochs != 1)}, {self.optimizer} lr {self.learning_rate:g}"


@dataclass(frozen=True)
class TrainConfig:
    data: Path
    stages: tuple
    validation_data: Path | None = None
    validation_split: float = 0.2
    batch_size: int = 32
    image_size: tuple | None = None
    seed: int = 0
    deterministic: bool = False
    precision: str = "float32"
    monitor: str | None = None
    cache: bool = True
    strategy: str = "default"
    feature_cache: bool = True
    feature_cache_memory_mb: int = 1024

    @property
    def has_validation(self) -> bool:
        return self.validation_data is not None or self.validation_split > 0

    @property
    def monitor_metric(self) -> str:
        return self.monitor or ("val_accuracy" if self.has_validation else "accuracy")

    def stage_bounds(self) -> list[tuple[int, int]]:
        """(first epoch, end epoch) of each stage; epochs are numbered across the whole run."""
        bounds, start = [], 0
        for stage in self.stages:
            bounds.append((start, start + stage.epochs))
            start += stage.epochs
        return bounds

    def fingerprint(self) -> dict:
        """What must not change between a run and its --resume (paths included: other data is another run)."""
        fields = {k: v for k, v in asdict(self).items() if k not in EXECUTION_ONLY}
        return json.loads(json.dumps(fields, default=str))


def resolve(spec, overrides: dict) -> TrainConfig:
    """The training config: the spec's ``train`` section, then every override that is not None."""
    section = dict(spec.data.get("train", {}))
    for key in ("data", "validation_data"):
        if key in section:
            section[key] = spec.resolve(section[key])
    given = {k: v for k, v in overrides.items() if v is not None}
    for key in ("data", "validation_data"):
        if key in given:
            given[key] = Path(given[key]).resolve()
    epochs = given.pop("epochs", None)
    if "validation_split" in given and "validation_data" not in given:
        section.pop("validation_data", None)  # a split asked for on the command line beats the spec's folder
    section.update(given)
    if "data" not in section:
        raise SpecError("no training data: pass --data PATH, or set train.data in the spec", file=spec.file)
    if section.get("validation_data") is not None:
        section["validation_split"] = 0.0
    section.setdefault("seed", spec.seed)
    if "image_size" in section:
        section["image_size"] = tuple(section["image_size"])
    stages = section.pop("stages", None) or [{"epochs": DEFAULT_EPOCHS}]
    section["stages"] = tuple(_stage(spec, i, s, epochs) for i, s in enumerate(stages))
    return TrainConfig(**section)


def _stage(spec, i: int, raw: dict, epochs: int | None) -> Stage:
    raw = dict(raw)
    raw.setdefault("name", f"stage{i + 1}")
    if epochs is not None:
        raw["epochs"] = epochs
    for op in ("freeze", "unfreeze"):
        if "layers" in raw.get(op, {}):
            try:
                parse_slice(raw[op]["layers"])
            except OpError as e:
                raise e.located(file=spec.file, where=f"train.stages[{i}].{op}") from None
    return Stage(**raw)
