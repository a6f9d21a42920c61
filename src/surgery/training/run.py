"""A training run: check everything, build the model (or load the checkpoint), run the stages.

Everything that can be wrong with the input (data, classes against the model's
head, unreadable images, the output folder) is checked before the folder is
touched, so bad input leaves no partial run behind. A ``Run`` holds what the
steps share (spec, config, folder, state, data, strategy), so each step is a
method that reads it rather than a function of a dozen arguments.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import preprocessing
from ..errors import SpecError, SurgeryError, Terminated, interrupted_exit
from ..keras_env import keras
from ..model_files import load_model
from ..writing import atomic_output
from . import callbacks, data, distribute, pipeline, precision, quietly, stages
from .feature_cache import FeatureCache
from .models import read_sidecar
from .run_folder import RunFolder, RunFolderError, RunState, write_json

if TYPE_CHECKING:
    from ..registry import Registry
    from ..spec import Spec
    from .config import TrainConfig


class Interrupted(SurgeryError):
    exit_code = 130


@dataclass
class TrainResult:
    folder: RunFolder
    state: RunState
    model: Any
    resumed_from: int | None = None
    epoch_seconds: list = field(default_factory=list)  # training and validation, checkpointing left out
    feature_cache_seconds: float = 0.0


def fingerprint(spec, config) -> dict:
    return {"steps": spec.data["steps"], "train": config.fingerprint()}


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


@dataclass
class Run:
    """One ``surgery train``: what its steps share."""

    spec: Spec
    registry: Registry
    config: TrainConfig
    folder: RunFolder
    resume: bool = False
    echo: Callable = print
    verbose: int | None = None
    # Set by check() (state, data) and by train() (runner), before execute() reads them.
    state: RunState = field(init=False)
    train_src: data.Source = field(init=False)
    val_src: data.Source | None = None
    recorded_preprocess: str | None = None  # what the run folder's classes.json says, when resuming
    runner: distribute.Runner = field(init=False)
    epoch_seconds: list = field(default_factory=list)

    # --- before TensorFlow: everything that needs no model -------------------------------------------

    def check(self, force: bool, created_default: bool, worker) -> bool:
        """The monitor, the data, the folder (fresh, or a run to resume); False if a resumed run had finished."""
        config, spec = self.config, self.spec
        allowed = ["loss", "accuracy"] + (["val_loss", "val_accuracy"] if config.has_validation else [])
        if config.monitor_metric not in allowed:
            raise SpecError(
                f'monitor "{config.monitor_metric}" is not logged by this run; use one of ' + ", ".join(allowed),
                file=spec.file,
                where="train.monitor",
            )
        self.train_src = data.inspect(config.data, "--data")
        if config.validation_data is not None:
            self.val_src = data.inspect(config.validation_data, "--validation-data")
            data.matching_validation(self.train_src, self.val_src)
        fp = fingerprint(spec, config)
        if not self.resume:
            if worker.is_chief:  # the other workers of a cluster write nothing
                self.folder.check_fresh(force, created_default)
            self.state = RunState(fp)
            return True
        self.state = self.folder.read_state(fp)
        if self.state.finished:
            self.echo(
                f"nothing to resume: the run in {self.folder.folder} finished after {self.state.epochs_done} epochs"
            )
            return False
        if not self.folder.classes.exists():
            raise RunFolderError(
                "classes.json is missing: this is not a complete surgery run",
                file=str(self.folder.folder),
                where="--resume",
            )
        self.recorded_preprocess = read_sidecar(self.folder.classes, self.registry).preprocess
        return True

    # --- with TensorFlow -------------------------------------------------------------------------------

    def build(self):
        """(model, preprocess name): the spec built now, its final activation in float32 for mixed precision."""
        from ..executor import run_steps

        keras().utils.set_random_seed(self.config.seed)
        built = run_steps(self.spec, self.registry)
        for note in built.notes:
            self.echo(f"  {note}")
        # The preprocessing is recorded by the backbone's name: classes.json is read back as data, never imported.
        prep = built.backbone if built.preprocess is not None else None
        return precision.finalize(built.model, self.config.precision), prep

    def model(self):
        """(model, preprocess name): the checkpoint to resume from, or the spec built now."""
        if not self.resume:
            return self.build()
        if self.state.checkpoint is None:  # killed before the first epoch ended
            return self.build()[0], self.recorded_preprocess
        self.echo(
            f"resuming {self.folder.folder} after epoch {self.state.epochs_done} from "
            f"checkpoints/{self.state.checkpoint}"
        )
        checkpoint = load_model(
            self.folder.checkpoints / self.state.checkpoint,
            compile=True,
            error=lambda message: RunFolderError(message, where="--resume"),
        )
        return checkpoint, self.recorded_preprocess

    def check_fit(self, model):
        """Everything about the model and the data that could still be wrong; the image spec if nothing is."""
        config = self.config
        image = pipeline.ImageSpec.of(model, config.image_size)
        stages.loss_and_metrics(model, self.train_src.class_names, self.spec.file)
        bounds = config.stage_bounds()
        first = next((i for i, (_, end) in enumerate(bounds) if end > self.state.epochs_done), None)
        if first is not None:  # None: killed after the last epoch, before the final model was written
            stages.rehearse(
                model, config, first, self.spec, resumed_mid_stage=bounds[first][0] < self.state.epochs_done
            )
        for src in (self.train_src, self.val_src):
            if src is not None and src.kind == "folder":
                pipeline.check_readable(src.files, image)
        return image

    def start_folder(self, preprocess, image) -> None:
        self.folder.start()
        write_json(
            self.folder.classes,
            {"class_names": self.train_src.class_names, "preprocess": preprocess, "input_shape": list(image.shape)},
        )
        self.folder.write_state(self.state)

    def callbacks(self, model) -> list:
        """Keras' CSV log and TensorBoard, and the checkpoints (the chief); a shadow of them (other workers)."""
        timer = [callbacks.epoch_timer(self.epoch_seconds), callbacks.stop_watch()]
        if not self.runner.worker.is_chief:
            return timer + [callbacks.shadow_checkpointer(model)]
        k = keras()
        found = timer + [k.callbacks.CSVLogger(str(self.folder.log), append=True)]
        if callbacks.tensorboard_available():
            found.append(k.callbacks.TensorBoard(str(self.folder.tensorboard)))
        else:
            self.echo("note: no TensorBoard logs: the tensorboard package is not installed (pip install tensorboard)")
        stage_ends = {end for _, end in self.config.stage_bounds()}
        return found + [callbacks.checkpointer(self.folder, self.state, self.config.monitor_metric, stage_ends, model)]

    def run_stages(self, model, cache, fit_callbacks, verbose) -> None:
        config, state, class_names, where = self.config, self.state, self.train_src.class_names, self.spec.file
        bounds = config.stage_bounds()
        for i, (stage, (start, end)) in enumerate(zip(config.stages, bounds)):
            if end <= state.epochs_done:
                continue
            self.echo(f"stage {i + 1}/{len(bounds)} {stage.name}: {stage.describe()}")
            loss, metrics = stages.loss_and_metrics(model, class_names, where)
            if start >= state.epochs_done:  # a stage that starts now; else the checkpoint carries it
                for note in stages.apply_selectors(model, stage, i, self.spec):
                    self.echo(f"  {note}")
                stages.compile_stage(model, stage, loss, metrics)
            self.echo(f"  {stages.trainable_report(model)}")
            keras().utils.set_random_seed(config.seed + state.epochs_done)
            fitted, fitted_sets = cache.for_stage(model)
            if fitted is not model:
                loss, metrics = _compile_suffix(model, fitted, class_names, where)
            self.runner.fit(
                fitted,
                fitted_sets,
                loss=loss,
                metric=metrics[0],
                initial_epoch=max(start, state.epochs_done),
                epochs=end,
                callbacks=fit_callbacks,
                verbose=verbose,
            )
            state.epochs_done = end  # the chief's checkpointer recorded it; the other workers keep count here

    def execute(self) -> TrainResult:
        chief = self.runner.worker.is_chief
        state, config = self.state, self.config
        model, preprocess = self.model()
        image = self.check_fit(model)
        sets = pipeline.datasets(
            self.train_src,
            self.val_src,
            image,
            preprocessing.function(preprocess, self.registry),
            split=config.validation_split,
            batch_size=config.batch_size,
            seed=config.seed,
            cache=config.cache,
        )
        self.echo(
            f"data: {self.train_src.describe()}; training on {sets.n_train:,}, validating on "
            f"{sets.n_validation:,}" + (f" (precision {config.precision})" if config.precision != "float32" else "")
        )
        if self.runner.describe():
            self.echo(self.runner.describe())
        # Nothing was written up to here: bad input leaves no partial run.
        if chief and not self.resume:
            self.start_folder(preprocess, image)
        if chief:
            self.folder.trim_log(state.epochs_done)
        resumed_from = state.epochs_done if self.resume else None
        fit_callbacks = self.callbacks(model)
        verbose = self.verbose if self.verbose is not None else (1 if sys.stdout.isatty() else 2)
        cache = FeatureCache(config.feature_cache, config.feature_cache_memory_mb, sets, self.echo)
        try:
            self.run_stages(model, cache, fit_callbacks, verbose if chief else 0)
        except KeyboardInterrupt as e:
            stopped = Interrupted(
                f"{'terminated' if isinstance(e, Terminated) else 'interrupted'} after "
                f"{state.epochs_done} epochs; continue with --resume",
                file=str(self.folder.folder),
            )
            stopped.exit_code = interrupted_exit(e)
            raise stopped from None
        finally:
            cache.close()
        result = TrainResult(self.folder, state, model, resumed_from, self.epoch_seconds, cache.seconds)
        self.finish(model, chief)
        return result

    def finish(self, model, chief: bool) -> None:
        if self.runner.name == "multiworker":  # equal on every worker: the replicas stayed in sync
            self.echo(
                f"{self.runner.worker.describe()} finished: weights {distribute.weights_digest(model)}"
                + ("" if chief else "; the chief writes the run folder")
            )
        if not chief:
            callbacks.save_discarded(model)  # as the chief saves the final model
            return
        folder, state = self.folder, self.state
        with atomic_output(folder.final) as tmp:
            model.save(str(tmp))
        state.finished = True
        folder.write_state(state)
        if state.best is not None:
            self.echo(f"best {self.config.monitor_metric} {state.best:.4f} at epoch {state.best_epoch}: {folder.best}")
        logs = f", {folder.tensorboard.name}/" if folder.tensorboard.exists() else ""
        self.echo(f"wrote {folder.final} (final), {folder.classes.name}, {folder.log.name}{logs}")


def _compile_suffix(model, suffix, class_names, where):
    """Compile the suffix with the full model's optimizer, built on the full model's variables in their
    order, so that a checkpoint holds its state as the full model's own and --resume reads it back."""
    if not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    loss, metrics = stages.loss_and_metrics(suffix, class_names, where)
    suffix.compile(optimizer=model.optimizer, loss=loss, metrics=metrics)
    return loss, metrics


def train(
    spec,
    registry,
    config,
    out: Path,
    *,
    resume: bool = False,
    force: bool = False,
    created_default: bool = False,
    echo=print,
    verbose: int | None = None,
) -> TrainResult | None:
    """Train ``spec``'s model as ``config`` says, into the folder ``out``. None: a resumed run had finished."""
    run = Run(spec, registry, config, RunFolder(out, spec.name), resume=resume, echo=echo, verbose=verbose)
    worker = distribute.worker(config.strategy)
    note = distribute.ignored_config_note(config.strategy)
    if note:
        echo(note)
    if not run.check(force, created_default, worker):
        return None
    run.runner = distribute.Runner.start(config.strategy, worker)  # before anything else starts TensorFlow
    with _global_settings(config), run.runner.scope():
        return quietly(run.execute)


def train_spec(
    spec,
    out,
    *,
    plugins=None,
    resume: bool = False,
    force: bool = False,
    echo=print,
    verbose: int | None = 2,
    **overrides,
) -> TrainResult | None:
    """From Python: ``train_spec("spec.json", "runs/x", data="train/", epochs=3)``; overrides as on the command line."""
    from ..plugins import load_plugins
    from ..spec import load_spec
    from .config import resolve

    plugins = plugins or load_plugins()
    parsed = load_spec(spec, plugins.registry, plugins.broken)
    config = resolve(parsed, overrides)
    return train(
        parsed,
        plugins.registry,
        config,
        Path(out),
        resume=resume,
        force=force,
        created_default=True,
        echo=echo,
        verbose=verbose,
    )
