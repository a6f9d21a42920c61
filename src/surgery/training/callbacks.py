"""The Keras callbacks a run adds to ``fit``: checkpoints for ``--resume`` and ``best.keras``, and epoch timing."""

from __future__ import annotations

import math
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from ..errors import raise_if_stopped
from ..io.keras_state import save_model
from ..io.writing import temporary_sibling
from ..keras_env import keras


def mode(monitor: str) -> str:
    """Whether a metric improves downwards (losses) or upwards (accuracy, AUC, ...)."""
    return "min" if monitor.endswith("loss") else "max"


def checkpointer(folder, state, monitor: str, stage_ends, model):
    """Saves every epoch for --resume, copies an improved epoch to best.keras, then records the state; keeps
    the latest checkpoint and those of the ends of stages (``stage_ends()``: they move when a stage stops early).

    It saves ``model``, the full model, also when fit trains only its suffix on cached features."""
    k: Any = keras()
    better = (lambda a, b: a < b) if mode(monitor) == "min" else (lambda a, b: a > b)

    class Checkpointer(k.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            done = epoch + 1
            path = folder.checkpoint_path(done)
            tmp = temporary_sibling(path)
            save_model(model, tmp)
            tmp.replace(path)
            value = (logs or {}).get(monitor)
            # A NaN or inf (a diverged epoch) is never the best, not even as the first value seen.
            if value is not None and math.isfinite(value) and (state.best is None or better(float(value), state.best)):
                state.best, state.best_epoch = float(value), done
                best_tmp = temporary_sibling(folder.best)
                shutil.copyfile(path, best_tmp)
                best_tmp.replace(folder.best)
            state.epochs_done, state.checkpoint = done, path.name
            folder.write_state(state)
            folder.prune({path.name} | {folder.checkpoint_path(e).name for e in stage_ends()})

    return Checkpointer()


def save_discarded(model) -> None:
    """A worker other than the chief saves too, to a file it deletes: under MultiWorkerMirroredStrategy,
    saving can run collective ops (Keras creates reference variables, which the strategy broadcasts), and
    every worker must take part in those (TensorFlow's advice for multi-worker checkpoints)."""
    with tempfile.TemporaryDirectory(prefix="surgery-worker-") as folder:
        save_model(model, Path(folder) / "discarded.keras")


def shadow_checkpointer(model):
    k: Any = keras()

    class ShadowCheckpointer(k.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            save_discarded(model)

    return ShadowCheckpointer()


def stop_watch():
    """Ends training at the next batch if a SIGTERM or SIGHUP arrived but its exception was lost (it fired
    inside a finaliser, where Python drops exceptions)."""
    k: Any = keras()

    class StopWatch(k.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            raise_if_stopped()

        def on_epoch_end(self, epoch, logs=None):
            raise_if_stopped()

    return StopWatch()


def epoch_timer(seconds: list):
    k: Any = keras()

    class EpochTimer(k.callbacks.Callback):
        """First in the list, so an epoch's time leaves out the other callbacks' work (checkpoints)."""

        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            seconds.append(time.perf_counter() - self.started)

    return EpochTimer()


def tensorboard_available() -> bool:
    """Keras' TensorBoard callback needs the tensorboard package for tf.summary.scalar; TF no longer pulls it in."""
    import importlib.util

    return importlib.util.find_spec("tensorboard") is not None


def epoch_log(path: Path):
    """Keras' CSVLogger, numbering epochs from 1 as the console does (Keras passes 0-based indices)."""
    k: Any = keras()

    class EpochLog(k.callbacks.CSVLogger):
        """Also logs the epoch's learning rate, which schedules and plateau reduction change."""

        def on_epoch_begin(self, epoch, logs=None):
            rate = getattr(self.model.optimizer, "learning_rate", None)
            self.rate = float(k.ops.convert_to_numpy(rate)) if rate is not None else None

        def on_epoch_end(self, epoch, logs=None):
            logs = dict(logs or {})
            if self.rate is not None:
                logs.setdefault("learning_rate", self.rate)
            super().on_epoch_end(epoch + 1, logs)

    return EpochLog(str(path), append=True)


def tensorboard(path: Path, write_graph: bool):
    """Keras' TensorBoard, its epoch steps numbered from 1 like the console and log.csv. One per stage (each
    fit starts its writers); the graph is written by the first stage's only, not once per stage."""
    k: Any = keras()

    class TensorBoard(k.callbacks.TensorBoard):
        def on_epoch_end(self, epoch, logs=None):
            super().on_epoch_end(epoch + 1, logs)

    return TensorBoard(str(path), write_graph=write_graph)


def read_log(path: Path) -> dict[str, list]:
    """log.csv's columns as lists of numbers (what ``surgery.train`` returns as the history)."""
    import csv

    if not path.is_file():
        return {}
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    history: dict[str, list] = {}
    for row in rows:
        for key, value in row.items():
            # CSVLogger writes NA for a metric an epoch did not log (validation in a stage without it).
            number = float("nan") if value in ("NA", "") else int(value) if key == "epoch" else float(value)
            history.setdefault(key, []).append(number)
    return history
