"""A training run: check everything, build the model (or load the checkpoint), run the stages.

Everything that can be wrong with the input (data, classes against the model's
head, unreadable images, the output folder) is checked before the folder is
touched, so bad input leaves no partial run behind.
"""

from __future__ import annotations

import contextlib
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import SpecError, SurgeryError, Terminated, interrupted_exit
from ..keras_env import keras
from ..writing import atomic_output, temporary_sibling
from .. import preprocessing
from ..model_files import load_model
from . import data, distribute, precision, quietly, stages
from .feature_cache import FeatureCache
from .models import read_sidecar
from .run_folder import RunFolder, RunFolderError, RunState, write_json


class Interrupted(SurgeryError):
    exit_code = 130


@dataclass
class TrainResult:
    folder: RunFolder
    state: RunState
    model: object
    resumed_from: int | None = None
    epoch_seconds: list = field(default_factory=list)  # training and validation, checkpointing left out
    feature_cache_seconds: float = 0.0


def fingerprint(spec, config) -> dict:
    return {"steps": spec.data["steps"], "train": config.fingerprint()}


def _check_monitor(config, spec) -> None:
    allowed = ["loss", "accuracy"] + (["val_loss", "val_accuracy"] if config.has_validation else [])
    if config.monitor_metric not in allowed:
        raise SpecError(f'monitor "{config.monitor_metric}" is not logged by this run; use one of '
                        + ", ".join(allowed), file=spec.file, where="train.monitor")


def _mode(monitor: str) -> str:
    return "min" if monitor.endswith("loss") else "max"


@contextlib.contextmanager
def _global_settings(config):
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


def tensorboard_available() -> bool:
    """Keras' TensorBoard callback needs the tensorboard package for tf.summary.scalar; TF no longer pulls it in."""
    import importlib.util

    return importlib.util.find_spec("tensorboard") is not None


def _checkpointer(folder: RunFolder, state: RunState, monitor: str, stage_ends: set[int], model):
    k = keras()
    better = (lambda a, b: a < b) if _mode(monitor) == "min" else (lambda a, b: a > b)

    class Checkpointer(k.callbacks.Callback):
        """Saves every epoch for --resume, copies an improved epoch to best.keras, then records the state.

        It saves ``model``, the full model, also when fit trains only its suffix on cached features."""

        def on_epoch_end(self, epoch, logs=None):
            done = epoch + 1
            path = folder.checkpoint_path(done)
            tmp = temporary_sibling(path)
            model.save(str(tmp))
            tmp.replace(path)
            value = (logs or {}).get(monitor)
            if value is not None and (state.best is None or better(float(value), state.best)):
                state.best, state.best_epoch = float(value), done
                best_tmp = temporary_sibling(folder.best)
                shutil.copyfile(path, best_tmp)
                best_tmp.replace(folder.best)
            state.epochs_done, state.checkpoint = done, path.name
            folder.write_state(state)
            folder.prune({path.name} | {folder.checkpoint_path(e).name for e in stage_ends})

    return Checkpointer()


def _save_discarded(model) -> None:
    """A worker other than the chief saves too, to a file it deletes: under MultiWorkerMirroredStrategy,
    saving can run collective ops (Keras creates reference variables, which the strategy broadcasts), and
    every worker must take part in those (TensorFlow's advice for multi-worker checkpoints)."""
    with tempfile.TemporaryDirectory(prefix="surgery-worker-") as folder:
        model.save(str(Path(folder) / "discarded.keras"))


def _shadow_checkpointer(model):
    class ShadowCheckpointer(keras().callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            _save_discarded(model)

    return ShadowCheckpointer()


def _epoch_timer(seconds: list):
    class EpochTimer(keras().callbacks.Callback):
        """First in the list, so an epoch's time leaves out the other callbacks' work (checkpoints)."""

        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            seconds.append(time.perf_counter() - self.started)

    return EpochTimer()


def _inputs(config):
    train_src = data.inspect(config.data, "--data")
    val_src = None
    if config.validation_data is not None:
        val_src = data.inspect(config.validation_data, "--validation-data")
        data.matching_validation(train_src, val_src)
    return train_src, val_src


def _build(spec, registry, config, echo):
    from ..executor import run_steps

    keras().utils.set_random_seed(config.seed)
    built = run_steps(spec, registry)
    for note in built.notes:
        echo(f"  {note}")
    # The preprocessing is recorded by the backbone's name: classes.json is read back as data, never imported.
    return precision.finalize(built.model, config.precision), built.backbone if built.preprocess is not None else None


def train(spec, registry, config, out: Path, *, resume: bool = False, force: bool = False,
          created_default: bool = False, echo=print, verbose: int | None = None) -> TrainResult | None:
    """Train ``spec``'s model as ``config`` says, into the folder ``out``. None: a resumed run had finished."""
    folder = RunFolder(out, spec.name)
    fp = fingerprint(spec, config)
    _check_monitor(config, spec)
    train_src, val_src = _inputs(config)
    worker = distribute.worker(config.strategy)
    note = distribute.ignored_config_note(config.strategy)
    if note:
        echo(note)
    recorded = None
    if resume:
        state = folder.read_state(fp)
        if state.finished:
            echo(f"nothing to resume: the run in {out} finished after {state.epochs_done} epochs")
            return None
        if not folder.classes.exists():
            raise RunFolderError("classes.json is missing: this is not a complete surgery run", file=str(out),
                                 where="--resume")
        recorded = read_sidecar(folder.classes, registry).preprocess
    else:
        if worker.is_chief:  # the other workers of a cluster write nothing
            folder.check_fresh(force, created_default)
        state = RunState(fp)
    runner = distribute.Runner.start(config.strategy, worker)  # before anything else starts TensorFlow
    with _global_settings(config), runner.scope():
        return quietly(_train, spec, registry, config, folder, state, train_src, val_src, recorded, resume, echo,
                       verbose, runner)


def _model(spec, registry, config, folder, state, recorded, resume, echo):
    """(model, preprocess name): the checkpoint to resume from, or the spec built now."""
    if not resume:
        return _build(spec, registry, config, echo)
    if state.checkpoint is None:  # killed before the first epoch ended
        return _build(spec, registry, config, echo)[0], recorded
    echo(f"resuming {folder.folder} after epoch {state.epochs_done} from checkpoints/{state.checkpoint}")
    checkpoint = load_model(folder.checkpoints / state.checkpoint, compile=True,
                            error=lambda message: RunFolderError(message, where="--resume"))
    return checkpoint, recorded


def _check_fit(model, config, state, train_src, val_src, spec, registry):
    """Everything about the model and the data that could still be wrong; the image spec if nothing is."""
    image = data.ImageSpec.of(model, config.image_size)
    stages.loss_and_metrics(model, train_src.class_names, spec.file)
    bounds = config.stage_bounds()
    first = next((i for i, (_, end) in enumerate(bounds) if end > state.epochs_done), None)
    if first is not None:  # None: killed after the last epoch, before the final model was written
        stages.rehearse(model, config, first, spec, resumed_mid_stage=bounds[first][0] < state.epochs_done)
    for src in (train_src, val_src):
        if src is not None and src.kind == "folder":
            data.check_readable(src.files, image)
    return image


def _start_folder(folder, state, class_names, preprocess, image) -> None:
    folder.start()
    write_json(folder.classes, {"class_names": class_names, "preprocess": preprocess, "input_shape": list(image.shape)})
    folder.write_state(state)


def _callbacks(folder, state, config, echo, model) -> list:
    k = keras()
    callbacks = [k.callbacks.CSVLogger(str(folder.log), append=True)]
    if tensorboard_available():
        callbacks.append(k.callbacks.TensorBoard(str(folder.tensorboard)))
    else:
        echo("note: no TensorBoard logs: the tensorboard package is not installed (pip install tensorboard)")
    stage_ends = {end for _, end in config.stage_bounds()}
    return callbacks + [_checkpointer(folder, state, config.monitor_metric, stage_ends, model)]


def _compile_suffix(model, suffix, class_names, where):
    """Compile the suffix with the full model's optimizer, built on the full model's variables in their
    order, so that a checkpoint holds its state as the full model's own and --resume reads it back."""
    if not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    loss, metrics = stages.loss_and_metrics(suffix, class_names, where)
    suffix.compile(optimizer=model.optimizer, loss=loss, metrics=metrics)
    return loss, metrics


def _run_stages(model, sets, spec, registry, config, state, class_names, callbacks, echo, verbose, runner,
                cache) -> None:
    bounds = config.stage_bounds()
    for i, (stage, (start, end)) in enumerate(zip(config.stages, bounds)):
        if end <= state.epochs_done:
            continue
        echo(f"stage {i + 1}/{len(bounds)} {stage.name}: {stage.describe()}")
        loss, metrics = stages.loss_and_metrics(model, class_names, spec.file)
        if start >= state.epochs_done:  # a stage that starts now; else the checkpoint carries it
            for note in stages.apply_selectors(model, stage, i, spec):
                echo(f"  {note}")
            stages.compile_stage(model, stage, loss, metrics)
        echo(f"  {stages.trainable_report(model)}")
        keras().utils.set_random_seed(config.seed + state.epochs_done)
        fitted, fitted_sets = cache.for_stage(model)
        if fitted is not model:
            loss, metrics = _compile_suffix(model, fitted, class_names, spec.file)
        runner.fit(fitted, fitted_sets, loss=loss, metric=metrics[0], initial_epoch=max(start, state.epochs_done),
                   epochs=end, callbacks=callbacks, verbose=verbose)
        state.epochs_done = end  # the chief's checkpointer recorded it; the other workers keep count here


def _train(spec, registry, config, folder, state, train_src, val_src, recorded, resume, echo, verbose, runner):
    chief = runner.worker.is_chief
    model, preprocess = _model(spec, registry, config, folder, state, recorded, resume, echo)
    image = _check_fit(model, config, state, train_src, val_src, spec, registry)
    sets = data.datasets(train_src, val_src, image, preprocessing.function(preprocess, registry),
                         split=config.validation_split,
                         batch_size=config.batch_size, seed=config.seed, cache=config.cache)
    echo(f"data: {train_src.describe()}; training on {sets.n_train:,}, validating on {sets.n_validation:,}"
         + (f" (precision {config.precision})" if config.precision != "float32" else ""))
    if runner.describe():
        echo(runner.describe())
    # Nothing was written up to here: bad input leaves no partial run.
    if chief and not resume:
        _start_folder(folder, state, train_src.class_names, preprocess, image)
    if chief:
        folder.trim_log(state.epochs_done)
    resumed_from = state.epochs_done if resume else None
    epoch_seconds = []
    callbacks = [_epoch_timer(epoch_seconds)] + (_callbacks(folder, state, config, echo, model) if chief
                                                 else [_shadow_checkpointer(model)])
    if verbose is None:
        verbose = 1 if sys.stdout.isatty() else 2
    cache = FeatureCache(config.feature_cache, config.feature_cache_memory_mb, sets, echo)
    try:
        _run_stages(model, sets, spec, registry, config, state, train_src.class_names, callbacks, echo,
                    verbose if chief else 0, runner, cache)
    except KeyboardInterrupt as e:
        stopped = Interrupted(f"{'terminated' if isinstance(e, Terminated) else 'interrupted'} after "
                              f"{state.epochs_done} epochs; continue with --resume", file=str(folder.folder))
        stopped.exit_code = interrupted_exit(e)
        raise stopped from None
    finally:
        cache.close()
    result = TrainResult(folder, state, model, resumed_from, epoch_seconds, cache.seconds)
    if runner.name == "multiworker":  # equal on every worker: the replicas stayed in sync
        echo(f"{runner.worker.describe()} finished: weights {distribute.weights_digest(model)}"
             + ("" if chief else "; the chief writes the run folder"))
    if not chief:
        _save_discarded(model)  # as the chief saves the final model
        return result
    with atomic_output(folder.final) as tmp:
        model.save(str(tmp))
    state.finished = True
    folder.write_state(state)
    if state.best is not None:
        echo(f"best {config.monitor_metric} {state.best:.4f} at epoch {state.best_epoch}: {folder.best}")
    logs = f", {folder.tensorboard.name}/" if folder.tensorboard.exists() else ""
    echo(f"wrote {folder.final} (final), {folder.classes.name}, {folder.log.name}{logs}")
    return result


def train_spec(spec, out, *, plugins=None, resume: bool = False, force: bool = False, echo=print,
               verbose: int | None = 2, **overrides) -> TrainResult | None:
    """From Python: ``train_spec("spec.json", "runs/x", data="train/", epochs=3)``; overrides as on the command line."""
    from ..plugins import load_plugins
    from ..spec import load_spec
    from .config import resolve

    plugins = plugins or load_plugins()
    parsed = load_spec(spec, plugins.registry, plugins.broken)
    config = resolve(parsed, overrides)
    return train(parsed, plugins.registry, config, Path(out), resume=resume, force=force, created_default=True,
                 echo=echo, verbose=verbose)
