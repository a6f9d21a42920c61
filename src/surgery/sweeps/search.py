"""``surgery sweep --search optuna --trials N``: Optuna draws the variants, from ranges and lists of choices.

Optuna's ask-and-tell interface keeps the training here (the same run folders, rows and checks as a grid's
variants); Optuna only proposes the values and learns from each trial's best monitored value. The study is
stored beside the runs (``study.db``, SQLite), so ``--resume`` continues it: finished trials are kept, and a
trial that was interrupted is proposed again first, so its run resumes from its checkpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import SpecError, SurgeryError
from .prepare import Job, Sweep

STUDY = "study.db"
STUDY_NAME = "surgery-sweep"


def _optuna():
    try:
        import optuna
    except ImportError:
        raise SpecError(
            "--search optuna needs Optuna: pip install 'surgery[optuna]' (or pip install optuna)", where="--search"
        ) from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def check_available() -> None:
    _optuna()


def distributions(axes: dict) -> dict:
    """Place -> Optuna distribution: a range as a float or int one (ints when low, high and step are), a list as
    a choice among its positions (any JSON value can be a choice that way)."""
    optuna = _optuna()
    d = optuna.distributions
    found: dict[str, Any] = {}
    for place, values in axes.items():
        if isinstance(values, list):
            found[place] = d.CategoricalDistribution(list(range(len(values))))
        elif all(isinstance(values.get(k, 1), int) for k in ("low", "high", "step")):
            step = values.get("step", 1)
            found[place] = d.IntDistribution(values["low"], values["high"], log=values.get("log", False), step=step)
        else:
            found[place] = d.FloatDistribution(
                values["low"], values["high"], log=values.get("log", False), step=values.get("step")
            )
    return found


def _point(axes: dict, params: dict) -> dict:
    """A trial's parameters as a grid point: place -> (position in its list, value)."""
    return {p: (params[p], v[params[p]]) if isinstance(v, list) else (0, params[p]) for p, v in axes.items()}


def run_search(sweep: Sweep, trials: int, seed: int, train, done, echo) -> None:
    """Ask, build, train, tell, until the study holds ``trials`` finished trials. ``train(job)`` gives a row,
    ``done(row)`` records it. An interruption is told to the study as a failed trial marked interrupted, and
    re-asked first by the next ``--resume``."""
    optuna = _optuna()
    from ..training.callbacks import mode

    state = optuna.trial.TrialState
    study = optuna.create_study(
        storage=f"sqlite:///{Path(sweep.folder, STUDY).resolve()}",
        study_name=STUDY_NAME,
        direction="minimize" if mode(sweep.monitor or "val_accuracy") == "min" else "maximize",
        sampler=optuna.samplers.TPESampler(seed=seed),
        load_if_exists=True,
    )
    space = distributions(sweep.grid.axes)
    for earlier in study.get_trials(deepcopy=False, states=(state.FAIL, state.RUNNING)):
        stopped = earlier.state == state.RUNNING or earlier.user_attrs.get("interrupted")
        if stopped and not _job(sweep, earlier.params).finished:
            study.enqueue_trial(earlier.params, skip_if_exists=False)

    def finished() -> int:  # an interrupted trial is not one: it is asked again
        return sum(
            t.state == state.COMPLETE or (t.state == state.FAIL and not t.user_attrs.get("interrupted"))
            for t in study.get_trials(deepcopy=False)
        )

    while finished() < trials:
        trial = study.ask(space)
        try:
            job = _job(sweep, trial.params)
            sweep.build([job])
        except SurgeryError as e:
            study.tell(trial, state=state.FAIL)
            echo(f"trial {trial.number}: not a valid variant: {e}")
            continue
        echo(f"trial {trial.number} (until {trials} have finished): variant {job.id}")
        try:
            row = {**train(job), "trial": trial.number}
        except BaseException:
            trial.set_user_attr("interrupted", True)
            study.tell(trial, state=state.FAIL)
            raise
        if row["status"] == "ok" and row.get("best") is not None:
            study.tell(trial, row["best"])
        else:
            study.tell(trial, state=state.FAIL)
        done(row)


def _job(sweep: Sweep, params: dict) -> Job:
    """The variant a trial's values make, as a job: the same values, the same id and run folder."""
    point = _point(sweep.grid.axes, params)
    return sweep.make_job(sweep.grid.variant(sweep.spec_data, point, "<grid>", set()))
