"""Before any variant trains: every variant validated, its data and run folder checked, its model built.

A grid is checked whole, so that the eleventh variant's typo is found in the first second, not after ten
trainings. What one variant's training needs travels as a ``Job``: plain data, so that a worker process
(``--jobs N``) can receive it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import SpecError, SurgeryError
from ..io.files import read_json
from ..io.writing import MARKER, is_surgery_folder
from .grid import Grid, Variant, grid_of, read_grid

RECORD = "sweep.json"  # the spec and grid a sweep folder was started with: what --resume compares
RECORD_LIMIT = 8 << 20
STATE = Path("checkpoints") / "state.json"


@dataclass
class Job:
    """One variant's training, as plain data: its spec, the command's data options and its run folder."""

    id: str
    values: dict
    data: dict
    file: str  # how messages name the variant: "spec.json [variant lr=0.01]"
    folder: str  # the run folder: the spec is written there and its paths are relative to it
    overrides: dict  # train options every variant gets: data, validation_data, epochs
    test: str | None = None
    monitor: str | None = None
    params: int = 0
    trainable_params: int = 0
    previous: dict = field(default_factory=dict)  # this variant's row in the results of an earlier invocation

    @property
    def started(self) -> bool:
        return (Path(self.folder) / STATE).is_file()

    @property
    def finished(self) -> bool:
        """Whether its run finished (what state.json says; unreadable counts as not)."""
        try:
            found = read_json(Path(self.folder) / STATE, RECORD_LIMIT, "--resume", what="state.json", error=SpecError)
        except SurgeryError:
            return False
        return isinstance(found, dict) and found.get("finished") is True


@dataclass
class Sweep:
    folder: Path
    jobs: list[Job]
    labels: dict  # place -> column name
    monitor: str | None
    spec_data: dict  # the spec and grid the sweep was started from (sweep.json records them)
    grid: Grid
    # A search makes its variants as it goes (``make_job``); its ``jobs`` are the corners checked beforehand.
    search: bool = False
    make_job: Any = None
    build: Any = None  # jobs -> None: each job's model built once and counted
    earlier: list = field(default_factory=list)  # the rows an earlier invocation wrote (results.json)


def _variant_file(spec_file: str, variant: Variant) -> str:
    return f"{spec_file} [variant {variant.id}]"


def prepare(
    spec_source,
    grid_source,
    out: Path,
    registry,
    broken=None,
    *,
    overrides: dict[str, Any],
    test: str | None = None,
    resume: bool = False,
    search: bool = False,
) -> Sweep:
    """Read the spec and grid, make and check every variant, check the folder; then build each variant's model
    once, so that what only the built graph knows (a layer name after an edit) fails here, not mid-sweep."""
    from ..spec.loading import load_spec
    from ..training import data

    spec = load_spec(spec_source, registry, broken)
    grid_file = str(grid_source) if not isinstance(grid_source, dict) else "<grid>"
    if isinstance(grid_source, dict):
        grid: Grid = grid_of(grid_source, grid_file, search)
    else:
        grid = read_grid(str(grid_source), search)
    seen: set[str] = set()
    points = grid.corners() if search else grid.points()
    variants = [grid.variant(spec.data, point, grid_file, seen) for point in points]
    labels = grid.labels(grid_file)
    given = {k: v for k, v in overrides.items() if v is not None}
    for key in ("data", "validation_data"):
        if isinstance(given.get(key), (str, os.PathLike)):
            given[key] = str(Path(given[key]).resolve())
    if test is not None:
        data.inspect(test, "--test")
        test = str(Path(test).resolve())
    earlier = _check_folder(out, spec.data, grid, resume)
    previous = {row["id"]: row for row in earlier}

    def make_job(variant: Variant) -> Job:
        return _job(variant, labels, spec, out, registry, broken, given, test, previous)

    jobs = [make_job(variant) for variant in variants]
    _build_all(jobs, registry)
    return Sweep(
        out,
        jobs,
        labels,
        jobs[0].monitor,
        spec.data,
        grid,
        search,
        make_job,
        lambda found: _build_all(found, registry),
        earlier,
    )


def _job(variant: Variant, labels: dict, spec, out: Path, registry, broken, given: dict, test, previous: dict) -> Job:
    """One variant validated and checked as ``surgery train`` checks a run before it starts TensorFlow (the
    options, the data, the folder or the run to resume), so that no variant trains before all are known good."""
    from ..spec.loading import validate
    from ..training import config as train_config
    from ..training import distribute, preflight
    from ..training.run import Run
    from ..training.run_folder import RunFolder

    file = _variant_file(spec.file, variant)
    folder = out / variant.id
    checked = validate(variant.data, registry, file=file, base=spec.base, broken_plugins=broken)
    train_config.resolve(checked, given)  # records the spec's own train.data among the files it reads
    relocated = validate(_relocated(checked, folder, given), registry, file=file, base=folder)
    config = train_config.resolve(relocated, given)
    if config.strategy == "multiworker":
        raise SpecError("a sweep trains its variants on this machine; multiworker is not for sweeps", file=file)
    job = Job(
        variant.id,
        {labels[place]: value for place, value in variant.values.items()},
        relocated.data,
        file,
        str(folder),
        given,
        test,
        monitor=config.monitor_metric,
        previous=previous.get(variant.id, {}),
    )
    run = Run(relocated, registry, config, RunFolder(folder, relocated.name), resume=job.started, echo=_silent)
    preflight.check(run, False, True, distribute.worker(config.strategy))
    return job


def _silent(line: str) -> None:
    pass


def _relocated(spec, folder: Path, given: dict) -> dict:
    """The variant's spec as it trains from its run folder: every file it reads (the ones its ops and train
    section recorded as inputs) named relative to that folder, and the command's data written in, so that the
    spec alone resumes the run."""
    read = set(spec.inputs)

    def moved(value):
        if isinstance(value, str) and value and spec.resolve(value) in read:
            return os.path.relpath(spec.resolve(value), folder)
        return value

    data = json.loads(json.dumps(spec.data))
    for step in data["steps"]:
        step.update({k: moved(v) for k, v in step.items() if k not in ("op", "as")})
    train = data.setdefault("train", {})
    train.update({k: moved(train[k]) for k in ("data", "validation_data") if k in train})
    train.update(
        {k: os.path.relpath(given[k], folder) for k in ("data", "validation_data") if isinstance(given.get(k), str)}
    )
    for value in data.get("outputs", {}).values():
        if isinstance(value, dict):
            value.update({k: moved(value[k]) for k in ("calibration", "eval") if k in value})
    return data


def _build_all(jobs: list[Job], registry) -> None:
    """Each variant's model built (weights loaded) and counted; a failure names the variant."""
    from ..executor import run_steps
    from ..keras_env import keras
    from ..spec.loading import validate

    for job in jobs:
        spec = validate(job.data, registry, file=job.file, base=Path(job.folder))
        model = run_steps(spec, registry).model
        job.params = int(model.count_params())
        job.trainable_params = int(sum(int(w.numpy().size) for w in model.trainable_weights))
        del model
        keras().backend.clear_session()


def record(spec_data: dict, grid: Grid) -> dict:
    return {"spec": spec_data, "grid": {**grid.axes, "mode": grid.mode}}


def _check_folder(out: Path, spec_data: dict, grid: Grid, resume: bool) -> list:
    """A fresh sweep needs a new or empty folder; --resume needs the folder of this very sweep. Returns the rows
    an earlier invocation wrote (id -> row), for the wall times of variants that need no more training."""
    if out.exists() and not out.is_dir():
        raise SpecError("exists and is not a folder", file=str(out), where="-o")
    present = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    if not resume:
        if present:
            hint = "pass --resume to continue it" if is_surgery_folder(out, "sweep") else "choose a new -o"
            raise SpecError(f"is not empty (it holds {present[0]}); {hint}", file=str(out), where="-o")
        return []
    if not is_surgery_folder(out, "sweep") or not (out / RECORD).is_file():
        raise SpecError(
            f"is not a sweep folder (no {MARKER} and {RECORD}); nothing to resume", file=str(out), where="--resume"
        )
    found = read_json(out / RECORD, RECORD_LIMIT, "--resume", what=RECORD, error=SpecError)
    if found != record(spec_data, grid):
        part = "spec" if not isinstance(found, dict) or found.get("spec") != spec_data else "grid"
        raise SpecError(
            f"the {part} differs from the one this sweep started with ({RECORD}); resume with the same spec and "
            "grid, or start a new sweep in another folder",
            file=str(out),
            where="--resume",
        )
    return _previous_rows(out)


def _previous_rows(out: Path) -> list:
    try:
        found = read_json(out / "results.json", RECORD_LIMIT, "--resume", what="results.json", error=SpecError)
    except SurgeryError:
        return []  # the table is rebuilt from the run folders; only wall times are lost
    rows = found.get("variants") if isinstance(found, dict) else None
    if not isinstance(rows, list):
        return []
    return [r for r in rows if isinstance(r, dict) and isinstance(r.get("id"), str)]
