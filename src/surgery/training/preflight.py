"""What a run checks before TensorFlow starts: the options, the data, the output folder or the run to resume.

Bad input here costs a fraction of a second and leaves nothing behind.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import SpecError, counted
from . import data, given_data, options
from .config import TrainConfig
from .fingerprints import stage_epochs
from .models import read_sidecar
from .result import fingerprint
from .run_folder import RunFolderError, RunState


@dataclass
class Checked:
    """What the checks found: the data, the state the run starts from, and what a resumed run changes."""

    train_src: data.Source
    val_src: data.Source | None
    one_hot: bool  # labels go in one-hot (label smoothing, the probability metrics)
    state: RunState
    config: TrainConfig  # a resumed run's own stage epochs, whatever the spec says now
    extend_to: int | None  # --resume --epochs N, unless N repeats the command that started the run
    recorded_preprocess: str | None = None  # what the run folder's classes.json says, when resuming
    finished: bool = False  # a resumed run that had already finished: nothing to train


def check(run, force: bool, created_default: bool, worker) -> Checked:
    """The options, the data, the folder (fresh, or a run to resume), read from ``run``, which is not changed."""
    config, spec = run.config, run.spec
    options.check_monitors(config, spec.file)
    if config.strategy == "multiworker" and (config.metrics or any(s.label_smoothing for s in config.stages)):
        raise SpecError(
            "extra metrics and label smoothing are not available with --strategy multiworker "
            "(its training loop computes loss and accuracy); train without them",
            file=spec.file,
            where="train",
        )
    train_src = given_data.source_of(config.data, "--data", config.class_names)
    val_src = None
    if config.validation_data is not None:
        val_src = given_data.source_of(config.validation_data, "--validation-data", config.class_names)
        data.matching_validation(train_src, val_src)
    if config.samples_per_class is not None:
        split = 0.0 if val_src is not None else config.validation_split
        train_src, drawn = data.per_class(train_src, config.samples_per_class, config.seed, split)
        val_src = val_src or drawn
    for stage in config.stages:
        if isinstance(stage.class_weight, dict):
            options.class_weights(stage, train_src.class_names, [1] * len(train_src.class_names), spec.file)
    fp = fingerprint(spec, config)
    if worker.is_chief:
        sources = [src for src in (train_src, val_src) if src is not None]
        run.folder.check_contents("--resume" if run.resume else "-o")
        run.folder.check_inputs(
            spec.files_read() + [src.path for src in sources if src.kind == "npz"],
            [src.path for src in sources if src.kind == "folder"],
        )
    found = Checked(train_src, val_src, options.needs_one_hot(config), RunState(fp), config, run.extend_to)
    if not run.resume:
        if run.extend_to is not None:
            raise SpecError("--epochs N extends a run only with --resume", where="--epochs")
        if worker.is_chief:  # the other workers of a cluster write nothing
            run.folder.check_fresh(force, created_default)
        return found
    return _resumed(run, found, fp)


def _resumed(run, found: Checked, fp: dict) -> Checked:
    """The state of the run in the folder, which must match ``fp`` but for its stages' epochs."""
    found.state = run.folder.read_state(fp)
    run.folder.log_rows()
    adopt_recorded_epochs(found, run.echo)
    if found.extend_to is not None:
        extend(found, run.folder.folder)
    elif found.state.finished:
        run.echo(
            f"nothing to resume: the run in {run.folder.folder} finished after {found.state.epochs_done} "
            "epochs (--epochs N trains it on to N)"
        )
        found.finished = True
        return found
    if not run.folder.classes.exists():
        raise RunFolderError(
            "classes.json is missing: this is not a complete surgery run",
            file=str(run.folder.folder),
            where="--resume",
        )
    found.recorded_preprocess = read_sidecar(run.folder.classes, run.registry).preprocess
    return found


def adopt_recorded_epochs(found: Checked, echo) -> None:
    """A resumed run trains its stages for the epochs it started with, whatever the spec says now.

    ``--epochs N`` equal to every stage's recorded epochs is the command that started the run, repeated
    with --resume: it continues the run. As a total to extend to it could only be refused (it is no more
    than the run's first stages), so the two readings never compete.
    """
    recorded = stage_epochs(found.state.fingerprint)
    assert recorded is not None  # read_state refused a state without them
    asked = [stage.epochs for stage in found.config.stages]
    repeated = found.extend_to is not None and all(n == found.extend_to for n in recorded)
    if repeated:
        found.extend_to = None
    if recorded != asked:
        found.config = found.config.with_epochs(recorded)
        if not repeated:
            echo(
                f"resuming with the run's own stage epochs ({', '.join(map(str, recorded))}), "
                f"not {', '.join(map(str, asked))} (--resume --epochs N trains it on to N)"
            )


def extend(found: Checked, folder) -> None:
    """``--resume --epochs N``: train the last stage on until the run has N epochs."""
    state, last, to = found.state, len(found.config.stages) - 1, found.extend_to
    assert to is not None
    if to <= state.epochs_done:
        raise RunFolderError(
            f"the run has {counted(state.epochs_done, 'epoch')} already; --epochs {to} must be more, to extend it",
            file=str(folder),
            where="--resume --epochs",
        )
    if len(state.stage_ends) < last:
        raise RunFolderError(
            f"--epochs extends the last stage, and the run is in stage {len(state.stage_ends) + 1}"
            f" of {last + 1}; resume without --epochs first",
            file=str(folder),
            where="--resume --epochs",
        )
    if state.finished:
        state.finished = False
        state.stage_ends = state.stage_ends[:last]
    state.last_stage_end = to
