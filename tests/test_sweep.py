"""surgery sweep: a grid of spec variants, each checked before any trains, trained into run folders, compared
in one table; interrupted and resumed; failures recorded while the others go on."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

import surgery
from surgery.errors import SpecError
from surgery.sweeps.grid import grid_of

from helpers import assert_one_error_line, tiny_spec, wait_for_epochs, write_pngs

# --- the grid, without TensorFlow ------------------------------------------------------------------------

SPEC = {
    "surgery": 1,
    "steps": [{"op": "backbone", "name": "vgg16"}, {"op": "freeze", "layers": ":"}],
    "train": {"stages": [{"epochs": 1, "learning_rate": 0.1}, {"epochs": 1, "learning_rate": 0.01}]},
}


def test_a_product_grid_makes_every_combination_in_order_with_readable_ids():
    grid = grid_of({"steps[1].layers": [":", ":-3"], "train.stages[1].epochs": [2, 5, 9]}, "g.json")
    variants = grid.variants(SPEC, "g.json")
    assert [v.id for v in variants] == [
        "layers=.._epochs=2",
        "layers=.._epochs=5",
        "layers=.._epochs=9",
        "layers=..-3_epochs=2",
        "layers=..-3_epochs=5",
        "layers=..-3_epochs=9",
    ]
    fourth = variants[3].data
    assert fourth["steps"][1] == {"op": "freeze", "layers": ":-3"}
    assert fourth["train"]["stages"] == [{"epochs": 1, "learning_rate": 0.1}, {"epochs": 2, "learning_rate": 0.01}]
    assert SPEC["steps"][1]["layers"] == ":" and SPEC["train"]["stages"][1]["epochs"] == 1  # the spec is untouched


def test_zip_pairs_the_lists_and_ids_tell_apart_places_with_the_same_last_key():
    grid = grid_of(
        {
            "train.stages[0].learning_rate": [0.1, 0.001],
            "train.stages[1].learning_rate": [0.01, 0.0001],
            "steps[1]": [{"op": "freeze", "layers": ":"}, {"op": "freeze", "names": ["block1_conv1"]}],
            "mode": "zip",
        },
        "g.json",
    )
    variants = grid.variants(SPEC, "g.json")
    assert [v.id for v in variants] == [
        "stages-0-.learning_rate=0.1_stages-1-.learning_rate=0.01_steps-1-=v1",
        "stages-0-.learning_rate=0.001_stages-1-.learning_rate=0.0001_steps-1-=v2",
    ]
    assert variants[1].values == {
        "train.stages[0].learning_rate": 0.001,
        "train.stages[1].learning_rate": 0.0001,
        "steps[1]": {"op": "freeze", "names": ["block1_conv1"]},
    }


def test_equal_ids_are_made_unique():
    variants = grid_of({"steps[1].layers": ["a:b", "a/b"]}, "g.json").variants(SPEC, "g.json")
    assert [v.id for v in variants] == ["layers=a..b", "layers=a-b"]
    variants = grid_of({"steps[1].layers": ["a b", "a/b"]}, "g.json").variants(SPEC, "g.json")
    assert [v.id for v in variants] == ["layers=a-b", "layers=a-b-2"]


BAD_GRIDS = {
    "a place that is not there": ({"steps[7].layers": [":"]}, "steps[7] does not exist: steps has 3 items"),
    "a key under a missing key": ({"train.schedule.warmup": [1]}, "train.schedule does not exist in the spec"),
    "not a place": ({"steps..layers": [":"]}, '"steps..layers" is not a place in a spec'),
    "an empty list": ({"steps[1].layers": []}, "expected a non-empty list of the values to try"),
    "a value, not a list": ({"steps[1].layers": ":"}, "expected a non-empty list of the values to try"),
    "a bad mode": ({"steps[1].layers": [":"], "mode": "random"}, "mode must be one of product, zip"),
    "zip of unequal lists": ({"steps[1].layers": [":", "1:"], "seed": [1], "mode": "zip"}, "must have one length"),
    "not an object": ([1, 2], "a grid is an object"),
    "nothing to vary": ({"mode": "zip"}, "the grid names no place to vary"),
    "too many variants": ({"seed": list(range(40)), "steps[1].layers": [str(i) for i in range(30)]}, "1,200 variants"),
}


@pytest.fixture(scope="module")
def project(tmp_path_factory, backbone):
    """A spec in its own folder naming its backbone by a relative path, and data beside it."""
    root = tmp_path_factory.mktemp("sweep")
    (root / "proj").mkdir()
    shutil.copy(backbone, root / "proj" / "tiny.keras")
    spec = tiny_spec("tiny.keras", [{"epochs": 2, "learning_rate": 0.05}])
    (root / "proj" / "spec.json").write_text(json.dumps(spec))
    write_pngs(root / "data", {"red": 9, "green": 6, "blue": 3})
    write_pngs(root / "test", 3, seed=2)
    return root


@pytest.mark.parametrize("case", sorted(BAD_GRIDS))
def test_a_bad_grid_is_one_line_and_nothing_is_made(cli, project, tmp_path, case):
    grid, fragment = BAD_GRIDS[case]
    (tmp_path / "grid.json").write_text(json.dumps(grid))
    spec = project / "proj" / "spec.json"
    result = cli("sweep", spec, "--grid", tmp_path / "grid.json", "--data", project / "data", "-o", tmp_path / "runs")
    assert result.exit_code == 2, result.output
    assert_one_error_line(result.stderr, "grid.json", fragment)
    assert not (tmp_path / "runs").exists()


BAD_VARIANTS = {
    # (grid, the variant named, the place and what is wrong)
    "a value of the wrong type": ({"steps[1].layers": [":", 5]}, "[variant layers=5]", "layers: expected string"),
    "an unknown option": (
        {"train.stages[0].learnig_rate": [0.1]},
        "[variant learnig_rate=0.1]",
        'unknown key "learnig_rate"; did you mean "learning_rate"?',
    ),
    "a layer the model lacks": (
        {"steps[1].names": [["conv1"], ["conv9"]]},
        "[variant names=v2]",
        'steps[1] (freeze): names: "conv9" matches no layer',
    ),
    "a monitor nothing logs": ({"train.monitor": ["val_loss", "val_auc"]}, "[variant monitor=val_auc]", "val_auc"),
}


@pytest.mark.parametrize("case", sorted(BAD_VARIANTS))
def test_every_variant_is_checked_before_any_trains(cli, project, tmp_path, case):
    grid, variant, fragment = BAD_VARIANTS[case]
    (tmp_path / "grid.json").write_text(json.dumps(grid))
    spec = project / "proj" / "spec.json"
    result = cli("sweep", spec, "--grid", tmp_path / "grid.json", "--data", project / "data", "-o", tmp_path / "runs")
    assert result.exit_code == 2, result.output
    assert_one_error_line(result.stderr, f"spec.json {variant}", fragment)
    assert not (tmp_path / "runs").exists()


def test_the_data_is_checked_before_any_trains(cli, project, tmp_path):
    (tmp_path / "grid.json").write_text(json.dumps({"steps[1].layers": [":"]}))
    spec = project / "proj" / "spec.json"
    result = cli("sweep", spec, "--grid", tmp_path / "grid.json", "--data", tmp_path / "none", "-o", tmp_path / "runs")
    assert result.exit_code == 2
    assert_one_error_line(result.stderr, "none", "no such file or folder")
    assert not (tmp_path / "runs").exists()


def test_a_folder_that_holds_other_files_is_refused(cli, project, tmp_path):
    (tmp_path / "grid.json").write_text(json.dumps({"steps[1].layers": [":"]}))
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "notes.txt").write_text("mine")
    spec = project / "proj" / "spec.json"
    for extra in ((), ("--resume",)):
        result = cli(
            "sweep", spec, "--grid", tmp_path / "grid.json", "--data", project / "data", "-o", tmp_path / "runs", *extra
        )
        assert result.exit_code == 2
        assert_one_error_line(result.stderr, "runs", "not empty" if not extra else "is not a sweep folder")
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["notes.txt"]


# --- training ----------------------------------------------------------------------------------------------

GRID = {"steps[1].layers": [":", ":-3"]}  # the head alone, or the head and bn2 (conv2 has no bias to train)


def _sweep(cli, project, out, *extra):
    (out.parent / "grid.json").write_text(json.dumps(GRID))
    return cli(
        "sweep", project / "proj" / "spec.json", "--grid", out.parent / "grid.json", "--data", project / "data",
        "--test", project / "test", "-o", out, *extra,
    )  # fmt: skip


def _table(out) -> list[dict]:
    rows = json.loads((out / "results.json").read_text())["variants"]
    return [{k: v for k, v in row.items() if k != "seconds"} for row in rows]


@pytest.fixture(scope="module")
def swept(project):
    from click.testing import CliRunner

    from surgery.cli import main

    def cli(*args):
        return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)

    out = project / "whole" / "runs"
    out.parent.mkdir()
    result = _sweep(cli, project, out, "--plot", out.parent / "results.svg")
    assert result.exit_code == 0, result.output + result.stderr
    return out


@pytest.mark.slow
def test_the_table_holds_each_variants_figures_read_from_its_run(keras, swept, project):
    found = json.loads((swept / "results.json").read_text())
    rows = found["variants"]
    assert [r["id"] for r in rows] == ["layers=..", "layers=..-3"]
    assert [r["layers"] for r in rows] == [":", ":-3"]
    assert found["monitor"] == "val_accuracy"
    with (swept / "results.csv").open() as f:
        table = list(csv.DictReader(f))
    assert [r["id"] for r in table] == ["layers=..", "layers=..-3"]
    assert list(table[0])[:4] == ["id", "layers", "status", "params"]
    md = (swept / "results.md").read_text().splitlines()
    assert md[0].startswith("| id | layers | status |") and len(md) == 4
    for row in rows:
        run = swept / row["id"]
        final = keras.saving.load_model(run / "tiny.keras")
        assert row["status"] == "ok" and row["epochs"] == 2
        assert row["params"] == final.count_params()
        with (run / "log.csv").open() as f:
            log = list(csv.DictReader(f))
        accuracies = [float(r["val_accuracy"]) for r in log]
        assert row["best"] == pytest.approx(max(accuracies)) and row["best_epoch"] == 1 + accuracies.index(
            max(accuracies)
        )
        assert row["val_loss"] == pytest.approx(float(log[-1]["val_loss"]))
        evaluated = surgery.evaluate(run / "tiny.keras", project / "test")
        assert row["test_accuracy"] == pytest.approx(evaluated.metrics["accuracy"])
        assert row["test_loss"] == pytest.approx(evaluated.metrics["loss"])
    # The first freezes everything but the head; the second leaves bn2 (gamma and beta of 8 channels) too.
    assert rows[1]["trainable_params"] - rows[0]["trainable_params"] == 16
    assert rows[0]["test_loss"] != rows[1]["test_loss"]


@pytest.mark.slow
def test_the_plot_draws_each_variants_best_value_to_scale(swept):
    import re

    rows = json.loads((swept / "results.json").read_text())["variants"]
    svg = (swept.parent / "results.svg").read_text()
    bars = [float(h) for h in re.findall(r'<rect x="\d+" y="\d+" width="28" height="(\d+)" fill="#7da7d9"', svg)]
    assert len(bars) == 2
    best = [r["best"] for r in rows]
    assert bars[0] / bars[1] == pytest.approx(best[0] / best[1], rel=0.02)
    assert "1  layers=.." in svg and "2  layers=..-3" in svg and "best val_accuracy by variant" in svg


def test_a_plot_that_cannot_be_drawn_is_refused_before_anything(cli, project, tmp_path):
    (tmp_path / "grid.json").write_text(json.dumps(GRID))
    result = cli(
        "sweep", project / "proj" / "spec.json", "--grid", tmp_path / "grid.json", "--data", project / "data",
        "-o", tmp_path / "runs", "--plot", tmp_path / "results.txt",
    )  # fmt: skip
    assert result.exit_code == 2
    assert_one_error_line(result.stderr, "--plot", "give a file ending in .svg or .png")
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_each_variant_is_a_run_folder_its_own_spec_resumes(cli, swept, project):
    run = swept / "layers=..-3"
    written = json.loads((run / "spec.json").read_text())
    assert written["steps"][1] == {"op": "freeze", "layers": ":-3"}
    assert written["steps"][0]["path"] == "../../../proj/tiny.keras"  # relative to the run folder
    resumed = cli("train", run / "spec.json", "--resume", "-o", run)
    assert resumed.exit_code == 0, resumed.output + resumed.stderr
    assert "nothing to resume" in resumed.output
    evaluated = cli("evaluate", run, "--data", project / "test")
    assert evaluated.exit_code == 0, evaluated.stderr


def _sigterm_at_epoch(monkeypatch, keras, variant: str, epoch: int):
    """SIGTERM at the end of ``epoch`` (after its checkpoint) in the run folder of ``variant``: what the CLI's
    handler does with it (the stop remembered, ``Terminated`` raised), so that every later output sees it."""
    from surgery import errors
    from surgery.training import run as run_module

    original = run_module.Run.callbacks
    monkeypatch.setattr(errors, "_stop_signal", None)  # put back by undo: the next commands are not stopped

    class CtrlC(keras.callbacks.Callback):
        def on_epoch_end(self, index, logs=None):
            if index + 1 == epoch:
                errors.stop_on_signal(signal.SIGTERM, None)

    def callbacks(self, model):
        found = original(self, model)
        return [*found, CtrlC()] if self.folder.folder.name == variant else found

    monkeypatch.setattr(run_module.Run, "callbacks", callbacks)


@pytest.mark.slow
def test_resume_after_sigterm_gives_the_table_of_an_uninterrupted_sweep(
    cli, keras, swept, project, tmp_path, monkeypatch
):
    out = tmp_path / "runs"
    _sigterm_at_epoch(monkeypatch, keras, "layers=..-3", 1)
    stopped = _sweep(cli, project, out)
    assert stopped.exit_code == 143, stopped.output
    assert_one_error_line(stopped.stderr, "terminated; 1 of 2 variants finished", "--resume")
    assert [r["status"] for r in _table(out)] == ["ok", "interrupted"]
    monkeypatch.undo()
    again = _sweep(cli, project, out)
    assert again.exit_code == 2 and "pass --resume to continue it" in again.stderr
    resumed = _sweep(cli, project, out, "--resume")
    assert resumed.exit_code == 0, resumed.output + resumed.stderr
    assert "resuming" in resumed.output and "after epoch 1" in resumed.output
    assert _table(out) == _table(swept)


@pytest.mark.slow
def test_resume_with_another_grid_is_refused(cli, swept, project, tmp_path):
    (tmp_path / "grid.json").write_text(json.dumps({"steps[1].layers": [":", ":-4"]}))
    result = cli(
        "sweep", project / "proj" / "spec.json", "--grid", tmp_path / "grid.json", "--data", project / "data",
        "-o", swept, "--resume",
    )  # fmt: skip
    assert result.exit_code == 2
    assert_one_error_line(result.stderr, "the grid differs from the one this sweep started with")


@pytest.mark.slow
def test_a_variant_that_fails_is_recorded_and_the_others_finish(cli, swept, project, tmp_path, monkeypatch):
    from surgery.training import run as run_module

    original = run_module.train

    def failing(spec, registry, config, out, **kwargs):
        if out.name == "layers=..":
            raise SpecError("the disk is full", file=str(out))
        return original(spec, registry, config, out, **kwargs)

    monkeypatch.setattr(run_module, "train", failing)
    out = tmp_path / "runs"
    result = _sweep(cli, project, out)
    assert result.exit_code == 3, result.output
    assert "1 of 2 variants ok" in result.output
    rows = _table(out)
    assert rows[0]["status"] == "failed" and rows[0]["error"].endswith("layers=..: the disk is full")
    assert rows[1] == _table(swept)[1]
    assert "- layers=..: " in (out / "results.md").read_text()


@pytest.mark.slow
def test_two_jobs_give_the_figures_of_one(swept, project, tmp_path):
    (tmp_path / "grid.json").write_text(json.dumps(GRID))
    rows = surgery.sweep(
        project / "proj" / "spec.json", tmp_path / "grid.json", tmp_path / "runs", data=project / "data",
        test=project / "test", jobs=2, echo=None,
    )  # fmt: skip
    assert [{k: v for k, v in r.items() if k != "seconds"} for r in rows] == _table(swept)
    assert _table(tmp_path / "runs") == _table(swept)


@pytest.mark.slow
def test_a_sigterm_on_another_thread_stops_a_jobs_sweep(cli, project, tmp_path, monkeypatch):
    """The kernel may give a process's SIGTERM to any of its threads (TensorFlow's pools are threads), and
    Python runs the handler only when the main thread is back in Python: the sweep's wait on its workers
    must come back between polls, or the stop waits for a variant to finish (here, 5,000 epochs). The
    signal is sent to a helper thread of this process, so it lands off the main thread every time.
    About 15 s: two worker processes start TensorFlow."""
    import multiprocessing
    import threading

    from surgery import errors

    monkeypatch.setattr(errors, "_stop_signal", None)  # put back afterwards: the next tests are not stopped
    spec = json.loads((project / "proj" / "spec.json").read_text())
    spec["steps"][0]["path"] = str(project / "proj" / "tiny.keras")
    spec["train"].update(stages=[{"epochs": 5000}], feature_cache_memory_mb=0)
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    (tmp_path / "grid.json").write_text(json.dumps(GRID))
    out, returned, rescued = tmp_path / "runs", threading.Event(), []

    def signal_off_the_main_thread():
        state = out / "layers=.." / "checkpoints" / "state.json"
        deadline = time.monotonic() + 120
        while not returned.is_set() and time.monotonic() < deadline:
            try:
                if json.loads(state.read_text())["epochs_done"] >= 1:
                    break
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.05)
        signal.pthread_kill(threading.get_ident(), signal.SIGTERM)
        if not returned.wait(60):  # still waiting on its workers: end them, so that the test fails, not hangs
            rescued.append(True)
            for child in multiprocessing.active_children():
                child.kill()

    helper = threading.Thread(target=signal_off_the_main_thread, daemon=True)
    helper.start()
    try:
        result = cli(
            "sweep", tmp_path / "spec.json", "--grid", tmp_path / "grid.json", "--data", project / "data",
            "-o", out, "--jobs", "2",
        )  # fmt: skip
    finally:
        returned.set()
        helper.join()
    assert not rescued, "the sweep went on waiting for its workers after the SIGTERM"
    assert result.exit_code == 143, result.output + result.stderr
    assert_one_error_line(result.stderr, "terminated", "--resume")
    assert {r["status"] for r in _table(out)} == {"interrupted"}


# --- the data-size axis -----------------------------------------------------------------------------------


def test_samples_per_class_draws_nested_stratified_samples_and_keeps_the_validation_images(project):
    from surgery.training import data

    source = data.inspect(project / "data")  # red 9, green 6, blue 3 images
    names = source.class_names
    draws = {n: data.per_class(source, n, seed=0, split=0.2) for n in (1, 2)}
    for n, (train, held) in draws.items():
        assert sorted(np.bincount(train.labels(), minlength=3).tolist()) == [n, n, n]
        assert train.drawn and len(held) == 3  # a fifth of 18, whatever n is
    assert draws[1][1].files == draws[2][1].files
    assert set(draws[1][0].files) < set(draws[2][0].files)
    assert not set(draws[2][0].files) & set(draws[2][1].files)
    again, _ = data.per_class(source, 2, seed=0, split=0.2)
    other, _ = data.per_class(source, 2, seed=1, split=0.2)
    assert again.files == draws[2][0].files and other.files != again.files
    with pytest.raises(data.DataError, match=r'class "blue" has \d images to train on after the validation split'):
        data.per_class(source, 3, seed=0, split=0.2)
    assert names == ["blue", "green", "red"]


@pytest.mark.slow
def test_a_run_trains_on_the_drawn_samples(cli, project, tmp_path):
    spec = json.loads((project / "proj" / "spec.json").read_text())
    spec["steps"][0]["path"] = str(project / "proj" / "tiny.keras")
    spec["train"]["stages"] = [{"epochs": 1}]
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    args = ("train", tmp_path / "spec.json", "--data", project / "data", "--samples-per-class", "2")
    result = cli(*args, "-o", tmp_path / "run")
    assert result.exit_code == 0, result.output + result.stderr
    assert "data: 6 images in 3 classes (blue, green, red); training on 6, validating on 3" in result.output
    too_many = cli(*args[:-1], "7", "-o", tmp_path / "run2")
    assert too_many.exit_code == 2
    assert_one_error_line(too_many.stderr, "train.samples_per_class", 'class "blue" has')


# --- search ----------------------------------------------------------------------------------------------

SEARCH = {"train.stages[0].learning_rate": {"low": 0.001, "high": 0.1, "log": True}, "steps[1].layers": [":", ":-3"]}

BAD_SEARCHES = {
    "trials without a search": ({"steps[1].layers": [":"]}, ["--trials", "2"], "--trials applies to a search"),
    "a search without trials": (SEARCH, ["--search", "optuna"], "add --trials N"),
    "another searcher": (SEARCH, ["--search", "grid", "--trials", "2"], "--search takes optuna"),
    "a range without a search": (SEARCH, [], "expected a non-empty list of the values to try"),
    "a range upside down": (
        {"seed": {"low": 5, "high": 1}},
        ["--search", "optuna", "--trials", "2"],
        "low < high, got 5 and 1",
    ),
    "a log range from zero": (
        {"train.stages[0].learning_rate": {"low": 0, "high": 1, "log": True}},
        ["--search", "optuna", "--trials", "2"],
        "a log range needs low > 0",
    ),
    "a search in jobs": (SEARCH, ["--search", "optuna", "--trials", "2", "--jobs", "2"], "one trial at a time"),
}


@pytest.mark.parametrize("case", sorted(BAD_SEARCHES))
def test_a_bad_search_is_one_line(cli, project, tmp_path, case):
    grid, args, fragment = BAD_SEARCHES[case]
    (tmp_path / "grid.json").write_text(json.dumps(grid))
    spec = project / "proj" / "spec.json"
    out = tmp_path / "runs"
    result = cli("sweep", spec, "--grid", tmp_path / "grid.json", "--data", project / "data", "-o", out, *args)
    assert result.exit_code == 2, result.output
    assert_one_error_line(result.stderr, fragment)
    assert not out.exists()


def _search(cli, project, out, *extra):
    (out.parent / "grid.json").write_text(json.dumps(SEARCH))
    return cli(
        "sweep", project / "proj" / "spec.json", "--grid", out.parent / "grid.json", "--data", project / "data",
        "-o", out, "--search", "optuna", "--trials", "2", *extra,
    )  # fmt: skip


@pytest.mark.slow
def test_a_search_trains_the_trials_optuna_asks_for_and_tells_it_each_result(cli, project, tmp_path):
    import optuna

    result = _search(cli, project, tmp_path / "runs")
    assert result.exit_code == 0, result.output + result.stderr
    rows = json.loads((tmp_path / "runs" / "results.json").read_text())["variants"]
    study = optuna.load_study(study_name="surgery-sweep", storage=f"sqlite:///{tmp_path / 'runs' / 'study.db'}")
    trials = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert [r["trial"] for r in rows] == [t.number for t in trials] == [0, 1]
    with (tmp_path / "runs" / "results.csv").open() as f:
        assert next(csv.reader(f))[:4] == ["id", "trial", "learning_rate", "layers"]
    assert study.direction == optuna.study.StudyDirection.MAXIMIZE  # val_accuracy
    for row, trial in zip(rows, trials):
        assert row["status"] == "ok" and trial.value == row["best"]
        rate = trial.params["train.stages[0].learning_rate"]
        assert 0.001 <= rate <= 0.1 and row["learning_rate"] == rate
        assert row["layers"] == [":", ":-3"][trial.params["steps[1].layers"]]
        written = json.loads((tmp_path / "runs" / row["id"] / "spec.json").read_text())
        assert written["train"]["stages"][0]["learning_rate"] == rate
        assert written["steps"][1]["layers"] == row["layers"]


@pytest.mark.slow
def test_a_resumed_search_finishes_the_interrupted_trial_first(cli, keras, project, tmp_path, monkeypatch):
    import optuna

    from surgery.training import run as run_module

    original, started = run_module.Run.callbacks, []

    class CtrlC(keras.callbacks.Callback):
        def on_epoch_end(self, index, logs=None):
            raise KeyboardInterrupt

    def callbacks(self, model):
        started.append(self.folder.folder.name)
        return [*original(self, model), CtrlC()] if len(started) == 2 else original(self, model)

    monkeypatch.setattr(run_module.Run, "callbacks", callbacks)
    out = tmp_path / "runs"
    stopped = _search(cli, project, out)
    assert stopped.exit_code == 130, stopped.output
    monkeypatch.undo()
    resumed = _search(cli, project, out, "--resume")
    assert resumed.exit_code == 0, resumed.output + resumed.stderr
    assert f"variant {started[1]}" in resumed.output and f"resuming {out / started[1]} after epoch 1" in resumed.output
    study = optuna.load_study(study_name="surgery-sweep", storage=f"sqlite:///{out / 'study.db'}")
    states = [t.state.name for t in study.trials]
    assert states == ["COMPLETE", "FAIL", "COMPLETE"] and study.trials[1].user_attrs == {"interrupted": True}
    assert study.trials[2].params == study.trials[1].params  # asked again, and resumed
    rows = json.loads((out / "results.json").read_text())["variants"]
    assert [(r["trial"], r["status"]) for r in rows] == [(0, "ok"), (2, "ok")] and rows[1]["id"] == started[1]


# --- on a Ray cluster -------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


BAD_RAY = {
    "nothing answers": (["--ray", "127.0.0.1:{port}"], "--ray: cannot reach a Ray cluster at 127.0.0.1:{port} ("),
    "not an address": (["--ray", "headnode"], "'headnode' is not a Ray address: give HOST:PORT"),
    "jobs on a cluster": (["--ray", "127.0.0.1:{port}", "--jobs", "2"], "--jobs counts variants on this machine"),
    "cpus without a cluster": (["--ray-cpus", "2"], "--ray-cpus applies to a sweep on a Ray cluster"),
    "a search on a cluster": (
        ["--ray", "127.0.0.1:{port}", "--search", "optuna", "--trials", "2"],
        "one trial at a time (each learns from the last); drop --ray",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_RAY))
def test_a_bad_ray_option_is_one_line_before_anything_is_built(cli, project, tmp_path, case):
    args, fragment = BAD_RAY[case]
    port = _free_port()  # bound and released: nothing listens there
    (tmp_path / "grid.json").write_text(json.dumps(GRID))
    spec, out = project / "proj" / "spec.json", tmp_path / "runs"
    args = [a.format(port=port) for a in args]
    result = cli("sweep", spec, "--grid", tmp_path / "grid.json", "--data", project / "data", "-o", out, *args)
    assert result.exit_code == 2, result.output
    assert_one_error_line(result.stderr, fragment.format(port=port))
    assert not out.exists()


def test_a_port_that_answers_but_not_as_ray_is_refused_at_once(cli, project, tmp_path):
    """The dashboard's port (8265) is the likely wrong one: it answers HTTP/1.1, and Ray would retry it for
    minutes."""
    import threading

    server = socket.create_server(("127.0.0.1", 0))

    def answer():
        conn, _ = server.accept()
        conn.recv(1024)
        conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        conn.close()

    threading.Thread(target=answer, daemon=True).start()
    port = server.getsockname()[1]
    (tmp_path / "grid.json").write_text(json.dumps(GRID))
    spec, out = project / "proj" / "spec.json", tmp_path / "runs"
    try:
        args = ("--data", project / "data", "-o", out, "--ray", f"127.0.0.1:{port}")
        result = cli("sweep", spec, "--grid", tmp_path / "grid.json", *args)
    finally:
        server.close()
    assert result.exit_code == 2
    assert_one_error_line(result.stderr, f"cannot reach a Ray cluster at 127.0.0.1:{port} (it answers, but not as Ray")
    assert not out.exists()


def test_ray_missing_is_one_line_naming_the_extra(cli, project, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # what an import of an absent package does
    (tmp_path / "grid.json").write_text(json.dumps(GRID))
    spec, out = project / "proj" / "spec.json", tmp_path / "runs"
    result = cli(
        "sweep", spec, "--grid", tmp_path / "grid.json", "--data", project / "data", "-o", out, "--ray", "auto"
    )
    assert result.exit_code == 2
    assert_one_error_line(result.stderr, "--ray: --ray needs Ray: pip install 'surgery[ray]'")
    assert not out.exists()


def test_a_ray_task_on_a_node_that_cannot_train_the_variant_says_why(tmp_path, monkeypatch):
    from surgery.sweeps.cluster import train_variant
    from surgery.sweeps.prepare import RECORD, Job
    from surgery.version import __version__

    job = Job(id="a", values={}, data={}, file="spec.json [variant a]", folder="runs/a", overrides={})
    other = f"{__version__}.1"
    kind, error = train_variant(job, 1, str(tmp_path), other)
    assert kind == "failed" and f"runs surgery {__version__}, this sweep {other}: install one version" in error
    kind, error = train_variant(job, 1, str(tmp_path / "elsewhere"), __version__)
    assert (
        kind == "failed" and f"has no folder {tmp_path / 'elsewhere'}: --ray needs the sweep on a filesystem" in error
    )
    (tmp_path / "runs" / "a").mkdir(parents=True)  # a folder of that name, not the sweep's
    monkeypatch.chdir("/")
    kind, error = train_variant(job, 1, str(tmp_path), __version__)
    assert kind == "failed" and "does not see the sweep folder runs: --ray needs the sweep folder and the data" in error
    assert os.getcwd() == str(tmp_path)  # the task works where the sweep was started
    assert not (tmp_path / "runs" / RECORD).exists()


@pytest.fixture(scope="module")
def ray_cluster():
    """A local Ray cluster as users start one (`ray start --head`), on ports of its own; stopped afterwards. Its
    address, and the TMPDIR its tasks write their temporary files in."""
    port, client = _free_port(), _free_port()
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # Ray's socket paths must stay short
    os.mkdir(os.path.join(temp, "tmp"))
    started = Path(temp) / "start.log"
    log = started.open("w")  # noqa: SIM115 (open while the cluster runs)
    head = subprocess.Popen(
        [
            os.path.join(os.path.dirname(sys.executable), "ray"), "start", "--head", "--block", f"--port={port}",
            f"--ray-client-server-port={client}", "--num-cpus=2", "--include-dashboard=false",
            "--disable-usage-stats", f"--temp-dir={temp}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "TMPDIR": os.path.join(temp, "tmp")},
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while "Ray runtime started" not in started.read_text():
            if head.poll() is not None or time.monotonic() > deadline:
                pytest.fail("ray start failed:\n" + started.read_text())
            time.sleep(0.2)
        yield f"127.0.0.1:{port}", Path(temp) / "tmp"
    finally:
        head.terminate()  # --block: stopping the command stops the cluster it started
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            head.kill()
            head.wait()
        log.close()
        shutil.rmtree(temp, ignore_errors=True)


@pytest.mark.slow
def test_a_sweep_on_a_ray_cluster_gives_the_folders_and_table_of_one_here(
    swept, project, tmp_path, ray_cluster, monkeypatch
):
    address, _ = ray_cluster
    (tmp_path / "grid.json").write_text(json.dumps(GRID))
    monkeypatch.chdir(tmp_path)  # paths relative to here, not to where the cluster was started
    lines: list[str] = []
    rows = surgery.sweep(
        os.path.relpath(project / "proj" / "spec.json"), "grid.json", "runs", data=os.path.relpath(project / "data"),
        test=os.path.relpath(project / "test"), ray=address, echo=lines.append,
    )  # fmt: skip
    assert lines[0] == "2 variants sent to the Ray cluster, 1 CPU each"
    assert [{k: v for k, v in r.items() if k != "seconds"} for r in rows] == _table(swept)
    assert _table(tmp_path / "runs") == _table(swept)
    for row in rows:  # each a run folder as a local variant's, written by the task on the cluster
        run = tmp_path / "runs" / row["id"]
        assert json.loads((run / "checkpoints" / "state.json").read_text())["finished"]
        assert sorted(p.name for p in run.iterdir()) == sorted(p.name for p in (swept / row["id"]).iterdir())


@pytest.mark.slow
def test_sigterm_stops_the_variants_on_the_cluster_cleanly(project, tmp_path, ray_cluster):
    """The task stops (its checkpoint kept, its feature cache removed, no more epochs), the table says it was
    interrupted, and the sweep exits as a terminated train does."""
    address, task_tmp = ray_cluster
    spec = json.loads((project / "proj" / "spec.json").read_text())
    spec["steps"][0]["path"] = str(project / "proj" / "tiny.keras")
    spec["train"].update(stages=[{"epochs": 5000}], feature_cache_memory_mb=0)  # stops only when told to
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    (tmp_path / "grid.json").write_text(json.dumps({"steps[1].layers": [":"]}))
    out = tmp_path / "runs"
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "surgery", "sweep", str(tmp_path / "spec.json"), "--grid", str(tmp_path / "grid.json"),
            "--data", str(project / "data"), "-o", str(out), "--ray", address,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        wait_for_epochs(out / "layers=.." / "checkpoints" / "state.json", 2, proc)
        assert list(task_tmp.glob("surgery-feature-cache-*")), "the test needs the task's disk cache"
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 143, stderr
    assert_one_error_line(stderr, "terminated; 0 of 1 variants finished", "continue with --resume")
    state = json.loads((out / "layers=.." / "checkpoints" / "state.json").read_text())
    assert not state["finished"] and state["epochs_done"] >= 2
    assert [r["status"] for r in _table(out)] == ["interrupted"]
    assert not list(task_tmp.glob("surgery-feature-cache-*"))
    time.sleep(1)  # had the task gone on training, its checkpoint would move on
    assert json.loads((out / "layers=.." / "checkpoints" / "state.json").read_text()) == state


def test_the_table_shows_a_swept_null_as_null_and_a_missing_figure_as_empty():
    from surgery.sweeps import table

    rows = [
        {"id": "weights=none", "weights": None, "status": "failed", "error": "x | y", "best": None},
        {"id": "weights=file", "weights": "file", "status": "ok", "best": 0.5, "val_loss": 1.25, "test_loss": 2.0},
    ]
    cols = table.columns(rows, ["weights"])
    assert cols == ["id", "weights", *table.FIXED, "val_loss", "test_loss", "seconds", "error"]
    lines = table.as_csv(rows, cols, ["weights"]).splitlines()
    assert lines[1].startswith("weights=none,null,failed,") and ",,,,,,,,,x | y" in lines[1]
    assert lines[2].startswith("weights=file,file,ok,,,,,0.5,,1.25,2,,")
    md = table.as_markdown(rows, cols, ["weights"])
    assert "| weights=none | null | failed |" in md and md.rstrip().endswith("- weights=none: x \\| y")
