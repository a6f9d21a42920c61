"""Training a prepared sweep: each variant a run folder, one at a time or ``--jobs N`` at once, the table
rewritten after each.

A variant that fails while training is recorded with its error line and the others go on. Ctrl-C or SIGTERM
stops the sweep as it stops ``surgery train``: the running variants keep their checkpoints, the table says
which were interrupted, and ``--resume`` goes on from there.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from ..errors import SpecError, SurgeryError, Terminated, interrupted_exit, one_line
from ..io.writing import mark_folder, strict_json
from ..training.result import Interrupted
from . import table
from .prepare import RECORD, STATE, Job, Sweep, record


def sweep(
    spec,
    grid,
    out: Path,
    plugins,
    given: dict,
    test,
    jobs: int,
    resume: bool,
    echo,
    *,
    plot: str | None = None,
    search: str | None = None,
    trials: int | None = None,
    ray_address: str | None = None,
    ray_cpus: int = 1,
) -> list[dict]:
    """``surgery.sweep``: prepare (everything checked and built), start the folder, train, draw, return the rows."""
    from ..io.writing import check_output
    from ..report.shapes import check_suffix
    from ..training import quietly
    from . import cluster
    from .prepare import prepare

    _check_search(search, trials, jobs)
    _check_ray(ray_address, ray_cpus, jobs, search)
    if plot is not None:
        check_output(check_suffix(plot), resume, "--plot")  # a resumed sweep redraws its own picture
    prepared = quietly(
        prepare,
        spec,
        grid,
        out,
        plugins.registry,
        plugins.broken,
        overrides=given,
        test=test,
        resume=resume,
        search=search is not None,
    )
    ray = cluster.connect(ray_address) if ray_address is not None else None  # before anything is written
    try:
        start_folder(prepared)
        rows = run(prepared, plugins, jobs=jobs, echo=echo, trials=trials, ray=ray, ray_cpus=ray_cpus)
    finally:
        if ray is not None:
            ray.shutdown()
    if plot is not None:
        from .plot import draw

        echo(f"wrote {plot} ({draw(rows, prepared.monitor, Path(plot))})")
    return rows


def _check_search(search: str | None, trials: int | None, jobs: int) -> None:
    if search is None:
        if trials is not None:
            raise SpecError("--trials applies to a search: add --search optuna", where="--trials")
        return
    if search != "optuna":
        raise SpecError(f"--search takes optuna, not {search!r}", where="--search")
    if trials is None:
        raise SpecError("a search needs the number of trials to run: add --trials N", where="--search")
    if jobs != 1:
        raise SpecError("a search runs one trial at a time (each learns from the last); drop --jobs", where="--jobs")
    from .search import check_available

    check_available()


def _check_ray(address: str | None, cpus: int, jobs: int, search: str | None) -> None:
    if address is None:
        if cpus != 1:
            raise SpecError("--ray-cpus applies to a sweep on a Ray cluster: add --ray ADDRESS", where="--ray-cpus")
        return
    if jobs != 1:
        raise SpecError(
            "--jobs counts variants on this machine; on a Ray cluster each variant asks for --ray-cpus CPUs and "
            "Ray runs as many at once as the cluster holds: drop --jobs",
            where="--jobs",
        )
    if search is not None:
        raise SpecError("a search runs one trial at a time (each learns from the last); drop --ray", where="--ray")
    from .cluster import check

    check(address)


def start_folder(sweep: Sweep) -> None:
    """The sweep folder, marked as surgery's, with the spec and grid it started with; a grid's variants get their
    run folders now, a search's trials when they start."""
    sweep.folder.mkdir(parents=True, exist_ok=True)
    if not (sweep.folder / RECORD).is_file():
        (sweep.folder / RECORD).write_text(strict_json(record(sweep.spec_data, sweep.grid)) + "\n")
        mark_folder(sweep.folder, "sweep")
    if not sweep.search:
        for job in sweep.jobs:
            place(job)


def place(job: Job) -> None:
    """The variant's run folder with the spec it trains from (``surgery train runs/<id>/spec.json --resume -o
    runs/<id>`` works)."""
    folder = Path(job.folder)
    folder.mkdir(exist_ok=True)
    if not (folder / "spec.json").exists():
        (folder / "spec.json").write_text(json.dumps(job.data, indent=2) + "\n")


def train_job(job: Job, registry, plugins, echo, verbose: int = 0) -> dict:
    """Train (or resume, or find finished) one variant; its row of the table. Errors that are the variant's
    (bad data for it, a diverged loss) become the row's error; an interruption propagates."""
    from ..spec.loading import validate
    from ..training.config import resolve
    from ..training.run import train as run_training

    started = time.monotonic()
    resumed = job.started
    try:
        spec = validate(job.data, registry, file=job.file, base=Path(job.folder))
        config = resolve(spec, job.overrides)
        result = run_training(
            spec, registry, config, Path(job.folder), resume=resumed, created_default=True, echo=echo, verbose=verbose
        )
        row = figures(job, spec, config, plugins)
    except (Interrupted, KeyboardInterrupt):
        raise
    except SurgeryError as e:
        return _row(job, status="failed", error=str(e), seconds=round(time.monotonic() - started, 1))
    except Exception as e:  # noqa: BLE001 (a bug in one variant's training: recorded, and the others go on)
        error = f"internal error: {type(e).__name__}: {one_line(e)}"
        return _row(job, status="failed", error=error, seconds=round(time.monotonic() - started, 1))
    seconds = time.monotonic() - started
    if result is None and job.previous.get("seconds") is not None:  # finished before this invocation
        seconds = job.previous["seconds"]
    elif resumed and job.previous.get("seconds") is not None:
        seconds += job.previous["seconds"]
    return {**row, "seconds": round(seconds, 1)}


def _row(job: Job, **fields: Any) -> dict:
    return {
        "id": job.id,
        **job.values,
        "params": job.params,
        "trainable_params": job.trainable_params,
        **fields,
    }


def figures(job: Job, spec, config, plugins) -> dict:
    """A finished variant's row, read back from its run folder: epochs, the best monitored value, the last
    epoch's validation figures, and the test figures (the final model on ``--test``)."""
    from ..training.callbacks import read_log
    from ..training.result import fingerprint
    from ..training.run_folder import RunFolder

    folder = RunFolder(Path(job.folder), spec.name)
    state = folder.read_state(fingerprint(spec, config))
    history = read_log(folder.log)
    row = _row(
        job,
        status="ok",
        epochs=state.epochs_done,
        monitor=config.monitor_metric,
        best=state.best,
        best_epoch=state.best_epoch,
    )
    row.update({k: v[-1] for k, v in history.items() if k.startswith("val_") and v})
    if job.test is not None:
        from ..training import quietly
        from ..training.evaluate import evaluate
        from ..training.given_data import source_of
        from ..training.models import load

        loaded = quietly(load, str(folder.final), plugins, compile=True)
        found = quietly(evaluate, loaded, source_of(job.test, "--test"))
        row.update({f"test_{k}": v for k, v in found.metrics.items()})
    return row


def run(
    sweep: Sweep,
    plugins,
    *,
    jobs: int = 1,
    echo=print,
    verbose: int = 0,
    trials: int | None = None,
    ray=None,
    ray_cpus: int = 1,
) -> list[dict]:
    """Every variant's row, in the grid's order (a search's in its trials' order); the table is written after
    each variant finishes. ``ray``: the connected Ray module, to train them as tasks on its cluster."""
    if sweep.search:  # the trials so far, and those to come
        rows = {_key(row): row for row in sweep.earlier if "trial" in row}
    else:
        rows = {job.id: _row(job, status="pending") for job in sweep.jobs}

    def done(row: dict) -> None:
        rows[_key(row)] = row
        table.write(sweep.folder, list(rows.values()), list(sweep.labels.values()), sweep.monitor)
        what = row["status"] if row["status"] != "failed" else f"failed: {row['error']}"
        echo(f"variant {row['id']}: {what}")

    def train(job: Job) -> dict:
        place(job)
        return train_job(job, plugins.registry, plugins, echo, verbose)

    table.write(sweep.folder, list(rows.values()), list(sweep.labels.values()), sweep.monitor)
    try:
        if sweep.search:
            from .search import run_search

            run_search(sweep, trials or 0, int(sweep.spec_data.get("seed", 0)), train, done, echo)
        elif jobs == 1 and ray is None:
            for job in sweep.jobs:
                echo(f"variant {job.id} ({_progress(rows)})")
                done(train(job))
        else:

            def stopped(job: Job, error: str | None) -> None:
                done(_row(job, status="failed", error=error) if error else _row(job, status="interrupted"))

            if ray is not None:
                from .cluster import run_on_ray

                echo(f"{len(sweep.jobs)} variants sent to the Ray cluster, {ray_cpus} CPU{'s' * (ray_cpus > 1)} each")
                run_on_ray(ray, sweep.jobs, ray_cpus, done, stopped)
            else:
                from .pool import run_pool

                run_pool(sweep.jobs, jobs, done, stopped)
    except (KeyboardInterrupt, Interrupted) as e:
        raise _halted(sweep, rows, e) from None
    return list(rows.values())


def _halted(sweep: Sweep, rows: dict, e: BaseException) -> Interrupted:
    """After Ctrl-C or SIGTERM: the variants that had started are marked interrupted in the table (written
    although a stop was asked for: it is the record of the stop), and the error that says how far it got."""
    for row in rows.values():
        if row["status"] == "pending" and (sweep.folder / row["id"] / STATE).is_file():
            row["status"] = "interrupted"
    table.write(sweep.folder, list(rows.values()), list(sweep.labels.values()), sweep.monitor, stopped=True)
    halted = Interrupted(
        f"{'terminated' if isinstance(e, Terminated) or getattr(e, 'exit_code', 130) == 143 else 'interrupted'}"
        f"; {sum(r['status'] == 'ok' for r in rows.values())} of {len(rows)} variants finished, the table "
        "says which; continue with --resume",
        file=str(sweep.folder),
    )
    halted.exit_code = e.exit_code if isinstance(e, Interrupted) else interrupted_exit(e)
    return halted


def _key(row: dict) -> str:
    return f"trial {row['trial']}" if "trial" in row else row["id"]


def _progress(rows: dict) -> str:
    finished = sum(r["status"] != "pending" for r in rows.values())
    return f"{finished + 1} of {len(rows)}"
