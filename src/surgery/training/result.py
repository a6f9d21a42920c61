"""What a run returns (``TrainResult``), what ``--resume`` compares (``fingerprint``), and the process-wide
settings a run changes and gives back."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import SurgeryError
from ..keras_env import keras
from . import precision
from .evaluate import Evaluation
from .run_folder import RunFolder, RunState


class Interrupted(SurgeryError):
    exit_code = 130


@dataclass
class TrainResult:
    """What a run did: its folder, state, the model, the logged history and the held-out figures."""

    folder: RunFolder
    state: RunState
    model: Any
    resumed_from: int | None = None
    epoch_seconds: list = field(default_factory=list)  # training and validation, checkpointing left out
    feature_cache_seconds: float = 0.0
    history: dict = field(default_factory=dict)  # log.csv's columns: "epoch" (from 1), "loss", "val_loss", ...
    validation: Evaluation | None = None

    @property
    def paths(self) -> dict[str, Path]:
        f = self.folder
        return {"final": f.final, "best": f.best, "classes": f.classes, "log": f.log, "tensorboard": f.tensorboard}

    @property
    def final_metrics(self) -> dict[str, float]:
        return {k: v[-1] for k, v in self.history.items() if v and k != "epoch"}


def fingerprint(spec, config) -> dict:
    return {"steps": spec.data["steps"], "train": config.fingerprint()}


@contextlib.contextmanager
def global_settings(config):
    """The precision policy and op determinism are process-wide: restore them, for callers that go on."""
    k = keras()  # first: TensorFlow's import logs at start-up, and keras() imports it quietly
    import tensorflow as tf
    from tensorflow.python.framework import config as tf_config  # the only way to read/undo determinism

    policy = k.mixed_precision.global_policy().name
    was_deterministic = tf_config.is_op_determinism_enabled()
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()
    precision.set_policy(config.precision)
    try:
        yield
    finally:
        k.mixed_precision.set_global_policy(policy)
        if config.deterministic and not was_deterministic:
            tf_config.disable_op_determinism()
