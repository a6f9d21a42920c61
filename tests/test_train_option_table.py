"""The table of training options (spec.train_options) is the one place an option is spelt: the schema, the
config's dataclasses, surgery.train's keywords and surgery train's flags all come from it. No TensorFlow."""

from __future__ import annotations

from dataclasses import MISSING, fields

import pytest

import surgery
from surgery.spec.train_options import FLAGGED, OPTIONS, OVERRIDABLE, TRAIN_SCHEMA
from surgery.training import config as train_config
from surgery.training.config import Stage, TrainConfig, resolve

from helpers import assert_one_error_line, write_spec


def _spec(**train):
    return {
        "surgery": 1,
        "name": "table",
        "seed": 3,
        "steps": [{"op": "backbone", "name": "mobilenetv2", "weights": None, "input_shape": [32, 32, 3]}],
        "train": train,
    }


def test_the_config_dataclasses_hold_the_tables_options_with_its_defaults():
    stage = {o.name: o for o in OPTIONS if o.scope in ("stage", "stage_only")}
    run = {o.name: o for o in OPTIONS if o.scope in ("section", "python")}
    assert {f.name for f in fields(Stage)} == set(stage)
    assert {f.name for f in fields(TrainConfig)} == set(run) | {"stages"}
    for cls, table in ((Stage, stage), (TrainConfig, run)):
        for f in (f for f in fields(cls) if f.name != "stages"):
            if table[f.name].default is not None:
                assert f.default == table[f.name].default, f"{cls.__name__}.{f.name}"
            elif f.default is not MISSING and f.name != "seed":  # the seed defaults to the spec's
                assert f.default in (None, ()), f"{cls.__name__}.{f.name} has a default the schema does not show"


def test_every_stage_option_is_every_stages_default_at_the_sections_top():
    # optimizer and learning_rate were once refused there, although the docs promised them.
    spec, _ = surgery.load(
        _spec(
            data="x",
            optimizer="sgd",
            learning_rate=0.25,
            label_smoothing=0.1,
            stages=[{"epochs": 1}, {"epochs": 2, "learning_rate": 0.01, "optimizer": "adamw"}],
        )
    )
    first, second = resolve(spec, {}).stages
    assert (first.optimizer, first.learning_rate, first.label_smoothing) == ("sgd", 0.25, 0.1)
    assert (second.optimizer, second.learning_rate, second.label_smoothing) == ("adamw", 0.01, 0.1)
    over = resolve(spec, {"learning_rate": 0.5}).stages
    assert [s.learning_rate for s in over] == [0.5, 0.5]
    stage_keys = {o.name for o in OPTIONS if o.scope == "stage"}
    assert stage_keys <= set(TRAIN_SCHEMA["properties"])
    assert stage_keys <= set(OVERRIDABLE)


# Every flag of `surgery train`, with a value that is not its default, and where the config shows it.
FLAGS = {
    "--data": ("DATA", lambda c: c.data.name == "pics"),
    "--validation-split": ("0.3", lambda c: c.validation_split == 0.3),
    "--samples-per-class": ("4", lambda c: c.samples_per_class == 4),
    "--batch-size": ("7", lambda c: c.batch_size == 7),
    "--seed": ("5", lambda c: c.seed == 5),
    "--deterministic": (None, lambda c: c.deterministic is True),
    "--precision": ("mixed_bfloat16", lambda c: c.precision == "mixed_bfloat16"),
    "--monitor": ("val_loss", lambda c: c.monitor == "val_loss"),
    "--metrics": ("auc,top_3_accuracy", lambda c: c.metrics == ("auc", "top_3_accuracy")),
    "--no-preprocess-in-model": (None, lambda c: c.preprocess_in_model is False),
    "--strategy": ("mirrored", lambda c: c.strategy == "mirrored"),
    "--no-cache": (None, lambda c: c.feature_cache is False and c.cache is True),
    "--optimizer": ("sgd", lambda c: {s.optimizer for s in c.stages} == {"sgd"}),
    "--learning-rate": ("0.25", lambda c: {s.learning_rate for s in c.stages} == {0.25}),
    "--weight-decay": ("0.01", lambda c: {s.weight_decay for s in c.stages} == {0.01}),
    "--early-stopping": ("4", lambda c: all(s.early_stopping == {"patience": 4} for s in c.stages)),
    "--label-smoothing": ("0.1", lambda c: {s.label_smoothing for s in c.stages} == {0.1}),
    "--class-weight": ("balanced", lambda c: {s.class_weight for s in c.stages} == {"balanced"}),
    "--epochs": ("3", lambda c: [s.epochs for s in c.stages] == [3, 3]),
    "--validation-data": (
        "VAL",
        lambda c: getattr(c.validation_data, "name", None) == "held" and c.validation_split == 0,
    ),
}


@pytest.fixture
def resolved(cli, tmp_path, monkeypatch):
    """Run `surgery train` up to the config it resolves; that config is kept and the run goes no further."""
    found = []

    def keep(spec, overrides, need_data=True):
        found.append(resolve(spec, overrides, need_data))
        raise surgery.SpecError("stopped after the config (test)")

    monkeypatch.setattr(train_config, "resolve", keep)
    spec = write_spec(tmp_path, _spec(stages=[{"epochs": 1}, {"epochs": 2, "learning_rate": 0.01}]))

    def run(*args):
        result = cli("train", spec, "-o", tmp_path / "run", *args)
        assert result.exit_code == 2, result.output
        assert_one_error_line(result.stderr, "stopped after the config (test)")
        return found.pop()

    return run


def test_every_flag_in_the_table_reaches_the_config(resolved, tmp_path):
    assert set(FLAGS) == {o.flag_name for o in FLAGGED}, "a flag of the table has no case here"
    defaults = resolved("--data", tmp_path / "pics")
    for flag, (value, shows) in FLAGS.items():
        if flag == "--validation-data":
            continue
        args = [flag] + ([] if value is None else [value])
        if flag != "--data":
            args += ["--data", tmp_path / "pics"]
        args = [{"DATA": tmp_path / "pics"}.get(a, a) for a in args]
        assert shows(resolved(*args)), flag
        assert not shows(defaults) or flag == "--data", f"{flag}'s case does not tell it from the default"


def test_a_validation_folder_flag_replaces_the_split(resolved, tmp_path):
    _, shows = FLAGS["--validation-data"]
    config = resolved("--data", tmp_path / "pics", "--validation-split", "0.4", "--validation-data", tmp_path / "held")
    assert shows(config)
    assert not shows(resolved("--data", tmp_path / "pics", "--validation-split", "0.4"))
