"""A training run: check everything, build the model (or load the checkpoint), run the stages.

Everything that can be wrong with the input (data, classes against the model's
head, unreadable images, the output folder, the options) is checked before the
folder is touched, so bad input leaves no partial run behind. A ``Run`` holds
what the steps share (spec, config, folder, state, data, strategy), so each
step is a method that reads it rather than a function of a dozen arguments.

Stages end where they actually end (early stopping may end one sooner), and
``state.json`` records it, so the next stage and a ``--resume`` start there.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import Terminated, counted, interrupted_exit
from ..io.keras_state import save_model
from ..io.model_files import load_model
from ..io.writing import atomic_output
from ..keras_env import keras
from ..model import preprocessing
from . import callbacks, data, distribute, options, pipeline, precision, preflight, quietly, stages
from .evaluate import evaluate_batches
from .feature_cache import FeatureCache
from .result import Interrupted, TrainResult, global_settings
from .run_folder import RunFolder, RunFolderError, RunState, write_json

if TYPE_CHECKING:
    from ..plugins.registry import Registry
    from ..spec.loading import Spec
    from .config import TrainConfig


@dataclass
class Run:
    """One ``surgery train``: what its steps share."""

    spec: Spec
    registry: Registry
    config: TrainConfig
    folder: RunFolder
    resume: bool = False
    extend_to: int | None = None  # --resume --epochs N: the run's last stage ends after N epochs in all
    echo: Callable = print
    verbose: int | None = None
    extra_callbacks: tuple = ()  # Keras callbacks given from Python, in every stage
    # Set by check() (state, data) and by train() (runner), before execute() reads them.
    state: RunState = field(init=False)
    train_src: data.Source = field(init=False)
    val_src: data.Source | None = None
    recorded_preprocess: str | None = None  # what the run folder's classes.json says, when resuming
    runner: distribute.Runner = field(init=False)
    epoch_seconds: list = field(default_factory=list)
    one_hot: bool = False
    model_file: str | None = None  # the checkpoint resumed from; else the model is the spec's, built now

    # --- before TensorFlow: everything that needs no model -------------------------------------------

    def check(self, force: bool, created_default: bool, worker) -> bool:
        """The options, the data, the folder (fresh, or a run to resume); False if a resumed run had finished."""
        found = preflight.check(self, force, created_default, worker)
        self.train_src, self.val_src, self.one_hot = found.train_src, found.val_src, found.one_hot
        self.state, self.config, self.extend_to = found.state, found.config, found.extend_to
        self.recorded_preprocess = found.recorded_preprocess
        return not found.finished

    # --- stages -------------------------------------------------------------------------------------

    def window(self, i: int) -> tuple[int, int]:
        """(first epoch, end epoch) of stage ``i``: where the stage before it actually ended, and its length on."""
        ends = self.state.stage_ends
        start = 0 if i == 0 else (ends[i - 1] if i - 1 < len(ends) else self.window(i - 1)[1])
        if i < len(ends):
            return start, ends[i]
        if i == len(self.config.stages) - 1 and self.state.last_stage_end is not None:
            return start, self.state.last_stage_end
        return start, start + self.config.stages[i].epochs

    def stage_ends(self) -> set[int]:
        return {self.window(i)[1] for i in range(len(self.config.stages))}

    # --- with TensorFlow -------------------------------------------------------------------------------

    def build(self):
        """(model, preprocess name): the spec built now, with its preprocessing in the graph unless asked not
        to, and its final activation in float32 for mixed precision."""
        from ..executor import run_steps
        from ..model.preprocess_layers import for_backbone, into_model

        keras().utils.set_random_seed(self.config.seed)
        built = run_steps(self.spec, self.registry)
        embedded = built.preprocess is not None and self.config.preprocess_in_model
        if embedded:
            built = into_model(built, *for_backbone(self.registry.backbones[built.backbone], self.registry))
        for note in built.notes:
            self.echo(f"  {note}")
        if embedded:
            self.echo(
                "  the trained model takes raw 0-255 pixels (its preprocessing is in the graph; "
                "--no-preprocess-in-model keeps it outside)"
            )
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
        self.model_file = str(self.folder.checkpoints / self.state.checkpoint)
        checkpoint = load_model(
            self.model_file,
            compile=True,
            error=lambda message: RunFolderError(message, where="--resume"),
        )
        return checkpoint, self.recorded_preprocess

    def check_fit(self, model):
        """Everything about the model and the data that could still be wrong; the image spec if nothing is."""
        config = self.config
        # A refusal names the file the model came from: the spec, or the checkpoint a --resume loaded.
        source = self.model_file or self.spec.file
        image = pipeline.ImageSpec.of(model, config.image_size, file=source)
        stages.loss_and_metrics(model, self.train_src.class_names, source, one_hot=self.one_hot, extra=config.metrics)
        # A one-unit head takes the labels as they are, 0 or 1: its binary loss smooths them itself, and
        # AUC, precision and recall compare them with its one column.
        self.one_hot = stages.head(model, self.train_src.class_names, source, self.one_hot).one_hot
        first = len(self.state.stage_ends)
        if first < len(config.stages):  # else: killed after the last epoch, before the final model was written
            stages.rehearse(
                model, config, first, self.spec, resumed_mid_stage=self.window(first)[0] < self.state.epochs_done
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
        """The timer and stop watch, then Keras' CSV log and the checkpoints (the chief) or their shadow."""
        timer = [callbacks.epoch_timer(self.epoch_seconds), callbacks.stop_watch()]
        if not self.runner.worker.is_chief:
            return timer + [callbacks.shadow_checkpointer(model)] + list(self.extra_callbacks)
        found = timer + [callbacks.epoch_log(self.folder.log)]
        checkpoints = callbacks.checkpointer(
            self.folder, self.state, self.config.monitor_metric, self.stage_ends, model
        )
        return found + [checkpoints] + list(self.extra_callbacks)

    def begin_stage(self, model, i: int, start: int, end: int) -> tuple:
        """Say the stage; a stage that starts now (not one a checkpoint carries) applies its selectors and
        compiles. Returns its (loss, metrics)."""
        config, state, class_names = self.config, self.state, self.train_src.class_names
        stage = config.stages[i]
        self.echo(
            f"stage {i + 1}/{len(config.stages)} {stage.name}: {stage.describe()}"
            + (f" (extended to end at epoch {end})" if state.last_stage_end == end and i else "")
        )
        loss, metrics = stages.loss_and_metrics(
            model,
            class_names,
            self.spec.file,
            one_hot=self.one_hot,
            label_smoothing=stage.label_smoothing,
            extra=config.metrics,
        )
        if start >= state.epochs_done:
            for note in stages.apply_selectors(model, stage, i, self.spec):
                self.echo(f"  {note}")
            stages.compile_stage(model, stage, loss, metrics)
            warning = stages.random_backbone_warning(model, self.spec, self.registry, len(class_names), i)
            if warning and not self.resume:
                self.echo(warning)
        self.echo(f"  {stages.trainable_report(model)}")
        return loss, metrics

    def end_stage(self, stage, end: int, own: list) -> None:
        """Where the stage ended (early stopping may end it first), recorded in the run's state."""
        state = self.state
        stopper = next((c for c in own if type(c).__name__ == "EarlyStopping"), None)
        done = stopper.stopped_epoch + 1 if stopper is not None and stopper.stopped_epoch else end
        if stopper is not None and done < end:
            self.echo(
                f"  early stopping: {stage.name} ended after epoch {done} of {end} ({stopper.monitor} stopped improving)"
            )
        state.epochs_done = done  # the chief's checkpointer recorded it too; the other workers count here
        state.stage_ends.append(done)
        if self.runner.worker.is_chief:
            self.folder.write_state(state)

    def run_stages(self, model, sets, cache, fit_callbacks, verbose) -> None:
        config, state, class_names, where = self.config, self.state, self.train_src.class_names, self.spec.file
        tensorboard_written = False
        for i, stage in enumerate(config.stages):
            if i < len(state.stage_ends):
                continue
            start, end = self.window(i)
            loss, metrics = self.begin_stage(model, i, start, end)
            keras().utils.set_random_seed(config.seed + state.epochs_done)
            fitted, fitted_sets = cache.for_stage(model)
            if fitted is not model:
                loss, metrics = stages.compile_suffix(model, fitted, class_names, where, self.one_hot, stage, config)
            own = options.callbacks(stage, start, config.monitor_metric, epochs=end - start)
            if self.runner.worker.is_chief and callbacks.tensorboard_available():
                own.append(callbacks.tensorboard(self.folder.tensorboard, write_graph=not tensorboard_written))
                tensorboard_written = True
            weights = options.class_weights(stage, class_names, self.train_src.counts(), where)
            self.runner.fit(
                fitted,
                fitted_sets,
                loss=loss,
                metric=metrics[0],
                initial_epoch=max(start, state.epochs_done),
                epochs=end,
                # The stage's own first: the log and the checkpoint see the epoch as they left it.
                callbacks=fit_callbacks[:2] + own + fit_callbacks[2:],
                verbose=verbose,
                class_weight=weights,
            )
            self.end_stage(stage, end, own)
        if not self.runner.worker.is_chief or callbacks.tensorboard_available():
            return
        self.echo("note: no TensorBoard logs: the tensorboard package is not installed (pip install tensorboard)")

    def execute(self) -> TrainResult:
        chief = self.runner.worker.is_chief
        state, config = self.state, self.config
        model, preprocess = self.model()
        image = self.check_fit(model)
        # The shuffles' orders come from their seed and the global one: a resumed run, which loads a checkpoint
        # instead of building, sets it too.
        keras().utils.set_random_seed(config.seed)
        sets = pipeline.datasets(
            self.train_src,
            self.val_src,
            image,
            preprocessing.function(preprocess, self.registry),
            split=0.0 if config.samples_per_class is not None else config.validation_split,  # drawn by preflight
            batch_size=config.batch_size,
            seed=config.seed,
            cache=config.cache,
            one_hot=self.one_hot,
        )
        if self.resume:
            pipeline.skip_epochs(sets, state.epochs_done)
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
        use_cache = config.feature_cache and self.train_src.kind != "dataset"
        if config.feature_cache and not use_cache:
            self.echo("  feature cache: off (the data is a tf.data.Dataset given from Python)")
        cache = FeatureCache(use_cache, config.feature_cache_memory_mb, sets, self.echo)
        stopped = None
        try:
            self.run_stages(model, sets, cache, fit_callbacks, verbose if chief else 0)
        except KeyboardInterrupt as e:
            stopped = Interrupted(
                f"{'terminated' if isinstance(e, Terminated) else 'interrupted'} after "
                f"{counted(state.epochs_done, 'epoch')}; continue with --resume",
                file=str(self.folder.folder),
            )
            stopped.exit_code = interrupted_exit(e)
        finally:
            cache.close()
        if stopped is not None:
            # Raised outside the handler, so that it does not keep the interrupt, and through it every frame
            # of the fit (its data pipeline and their threads), alive for as long as the caller holds it.
            raise stopped
        result = TrainResult(self.folder, state, model, resumed_from, self.epoch_seconds, cache.seconds)
        self.finish(model, chief, sets, result)
        return result

    def finish(self, model, chief: bool, sets, result: TrainResult) -> None:
        if self.runner.name == "multiworker":  # equal on every worker: the replicas stayed in sync
            self.echo(
                f"{self.runner.worker.describe()} finished: weights {distribute.weights_digest(model)}"
                + ("" if chief else "; the chief writes the run folder")
            )
        if not chief:
            callbacks.save_discarded(model)  # as the chief saves the final model
            return
        folder, state = self.folder, self.state
        # An extended run replaces its own earlier final model; a fresh run never replaces anything.
        with atomic_output(folder.final, force=self.resume) as tmp:
            save_model(model, tmp)
        state.finished = True
        folder.write_state(state)
        result.history = callbacks.read_log(folder.log)
        if state.best is not None:
            self.echo(f"best {self.config.monitor_metric} {state.best:.4f} at epoch {state.best_epoch}: {folder.best}")
        if sets.validation is not None and self.runner.name != "multiworker":
            result.validation = evaluate_batches(model, sets.validation, self.train_src.class_names, self.spec.file)
            self.echo(f"validation of the final model: {result.validation.summary()}")
        logs = f", {folder.tensorboard.name}/" if folder.tensorboard.exists() else ""
        self.echo(f"wrote {folder.final} (final), {folder.classes.name}, {folder.log.name}{logs}")


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
    extend_to: int | None = None,
    extra_callbacks=(),
) -> TrainResult | None:
    """Train ``spec``'s model as ``config`` says, into the folder ``out``. None: a resumed run had finished."""
    run = Run(
        spec,
        registry,
        config,
        RunFolder(out, spec.name),
        resume=resume,
        extend_to=extend_to,
        echo=echo,
        verbose=verbose,
        extra_callbacks=tuple(extra_callbacks),
    )
    worker = distribute.worker(config.strategy)
    note = distribute.ignored_config_note(config.strategy)
    if note:
        echo(note)
    if not run.check(force, created_default, worker):
        return None
    run.runner = distribute.Runner.start(config.strategy, worker)  # before anything else starts TensorFlow
    with global_settings(config), run.runner.scope():
        return quietly(run.execute)
