"""What a run checks before TensorFlow starts: the options, the data, the output folder or the run to resume.

Bad input here costs a fraction of a second and leaves nothing behind.
"""

from __future__ import annotations

from ..errors import SpecError, counted
from . import data, given_data, options
from .fingerprints import stage_epochs
from .models import read_sidecar
from .result import fingerprint
from .run_folder import RunFolderError, RunState


def check(run, force: bool, created_default: bool, worker) -> bool:
    """The options, the data, the folder (fresh, or a run to resume); False if a resumed run had finished."""
    config, spec = run.config, run.spec
    options.check_monitors(config, spec.file)
    if config.strategy == "multiworker" and (config.metrics or any(s.label_smoothing for s in config.stages)):
        raise SpecError(
            "extra metrics and label smoothing are not available with --strategy multiworker "
            "(its training loop computes loss and accuracy); train without them",
            file=spec.file,
            where="train",
        )
    run.train_src = given_data.source_of(config.data, "--data", config.class_names)
    if config.validation_data is not None:
        run.val_src = given_data.source_of(config.validation_data, "--validation-data", config.class_names)
        data.matching_validation(run.train_src, run.val_src)
    for stage in config.stages:
        if isinstance(stage.class_weight, dict):
            options.class_weights(stage, run.train_src.class_names, [1] * len(run.train_src.class_names), spec.file)
    run.one_hot = options.needs_one_hot(config)
    fp = fingerprint(spec, config)
    if worker.is_chief:
        sources = [src for src in (run.train_src, run.val_src) if src is not None]
        run.folder.check_contents("--resume" if run.resume else "-o")
        run.folder.check_inputs(
            spec.files_read() + [src.path for src in sources if src.kind == "npz"],
            [src.path for src in sources if src.kind == "folder"],
        )
    if not run.resume:
        if run.extend_to is not None:
            raise SpecError("--epochs N extends a run only with --resume", where="--epochs")
        if worker.is_chief:  # the other workers of a cluster write nothing
            run.folder.check_fresh(force, created_default)
        run.state = RunState(fp)
        return True
    run.state = run.folder.read_state(fp)
    run.folder.log_rows()
    adopt_recorded_epochs(run)
    if run.extend_to is not None:
        extend(run)
    elif run.state.finished:
        run.echo(
            f"nothing to resume: the run in {run.folder.folder} finished after {run.state.epochs_done} "
            "epochs (--epochs N trains it on to N)"
        )
        return False
    if not run.folder.classes.exists():
        raise RunFolderError(
            "classes.json is missing: this is not a complete surgery run",
            file=str(run.folder.folder),
            where="--resume",
        )
    run.recorded_preprocess = read_sidecar(run.folder.classes, run.registry).preprocess
    return True


def adopt_recorded_epochs(run) -> None:
    """A resumed run trains its stages for the epochs it started with, whatever the spec says now.

    ``--epochs N`` equal to every stage's recorded epochs is the command that started the run, repeated
    with --resume: it continues the run. As a total to extend to it could only be refused (it is no more
    than the run's first stages), so the two readings never compete.
    """
    recorded = stage_epochs(run.state.fingerprint)
    assert recorded is not None  # read_state refused a state without them
    asked = [stage.epochs for stage in run.config.stages]
    repeated = run.extend_to is not None and all(n == run.extend_to for n in recorded)
    if repeated:
        run.extend_to = None
    if recorded != asked:
        run.config = run.config.with_epochs(recorded)
        if not repeated:
            run.echo(
                f"resuming with the run's own stage epochs ({', '.join(map(str, recorded))}), "
                f"not {', '.join(map(str, asked))} (--resume --epochs N trains it on to N)"
            )


def extend(run) -> None:
    """``--resume --epochs N``: train the last stage on until the run has N epochs."""
    state, last = run.state, len(run.config.stages) - 1
    if run.extend_to <= state.epochs_done:
        raise RunFolderError(
            f"the run has {counted(state.epochs_done, 'epoch')} already; --epochs {run.extend_to} must be more, to extend it",
            file=str(run.folder.folder),
            where="--resume --epochs",
        )
    if len(state.stage_ends) < last:
        raise RunFolderError(
            f"--epochs extends the last stage, and the run is in stage {len(state.stage_ends) + 1}"
            f" of {last + 1}; resume without --epochs first",
            file=str(run.folder.folder),
            where="--resume --epochs",
        )
    if state.finished:
        state.finished = False
        state.stage_ends = state.stage_ends[:last]
    state.last_stage_end = run.extend_to
