"""The pipeline from Python: surgery.build, load, apply, plan and export do what the commands do."""

from __future__ import annotations

import zipfile

import pytest

import surgery

SMALL = {
    "surgery": 1,
    "name": "small",
    "steps": [
        {"op": "backbone", "name": "vgg16", "weights": None, "include_top": False, "input_shape": [32, 32, 3]},
        {"op": "slice", "layers": ":4"},
        {"op": "append", "layer": "GlobalAveragePooling2D"},
        {"op": "append", "layer": "Dense", "config": {"units": 2, "activation": "softmax"}},
    ],
}


def test_apply_builds_and_writes_every_output_and_says_what(tmp_path, keras):
    seen = []
    done = surgery.apply(SMALL, output=str(tmp_path), options={}, before_writing=lambda state: seen.append(state))
    assert done.written == {"keras": tmp_path / "small.keras"}
    assert done.reports == {"keras": None}
    assert [n.split(":")[0] for n in done.notes] == ["vgg16", "slice", "append", "append"]
    assert len(seen) == 1 and seen[0].model is done.model
    assert keras.saving.load_model(str(tmp_path / "small.keras")).count_params() == done.model.count_params()


def test_apply_refuses_to_overwrite_without_force_before_building(tmp_path):
    (tmp_path / "small.keras").write_text("mine")
    with pytest.raises(surgery.SurgeryError, match="already exists; pass --force"):
        surgery.apply(SMALL, output=str(tmp_path), before_writing=lambda state: pytest.fail("built anyway"))
    assert (tmp_path / "small.keras").read_text() == "mine"
    surgery.apply(SMALL, output=str(tmp_path), force=True)
    assert zipfile.is_zipfile(tmp_path / "small.keras")


def test_apply_writes_all_outputs_or_none(tmp_path, monkeypatch):
    plugins = surgery.load_plugins()

    def broken(model, path, options):
        raise surgery.SurgeryError("the exporter failed")

    exporter = plugins.registry.exporters["saved_model"]
    monkeypatch.setitem(
        plugins.registry.exporters, "saved_model", type(exporter)(**{**vars(exporter), "export": broken})
    )
    spec = {**SMALL, "outputs": {"saved_model": "m.savedmodel"}}
    with pytest.raises(surgery.SurgeryError, match="the exporter failed"):
        surgery.apply(spec, output=str(tmp_path / "m.keras"), plugins=plugins)
    assert list(tmp_path.iterdir()) == []


def test_build_load_plan_and_export(tmp_path):
    spec, plugins = surgery.load(SMALL)
    assert spec.name == "small" and len(spec.steps) == 4 and "append" in plugins.registry.ops
    model = surgery.build(SMALL, plugins)
    assert model.output.shape[-1] == 2
    planned = surgery.plan(SMALL, plugins)
    assert planned.random_init and [c.op for c in planned.changes] == ["backbone", "slice", "append", "append"]
    assert planned.changes[-1].added == ["dense"]
    model.save(str(tmp_path / "m.keras"))
    path, report = surgery.export(tmp_path / "m.keras", "keras", output=str(tmp_path / "copy.keras"), plugins=plugins)
    assert path == tmp_path / "copy.keras" and path.is_file()
    with pytest.raises(surgery.SurgeryError, match='no exporter "onxx" is installed; did you mean "onnx"'):
        surgery.export(tmp_path / "m.keras", "onxx", plugins=plugins)


def test_bad_input_raises_the_line_the_command_prints():
    bad = {**SMALL, "steps": [*SMALL["steps"][:1], {"op": "slice", "layers": ":99"}]}
    with pytest.raises(surgery.SpecError) as caught:
        surgery.build(bad)
    assert (
        str(caught.value) == "<dict>: steps[1] (slice): layer index 99 is out of range; the model has 19 layers (0..18)"
    )


@pytest.mark.parametrize(
    "make, says",
    [
        (lambda d: d.repeat(), "the dataset never ends (it repeats: cardinality INFINITE)"),
        (lambda d: d.filter(lambda x, y: True), "the dataset's length is unknown"),
    ],
    ids=["repeat", "filter"],
)
def test_a_dataset_that_never_ends_or_has_no_length_is_refused_in_seconds(tmp_path, backbone, make, says):
    import numpy as np
    import tensorflow as tf

    from helpers import tiny_spec

    x, y = np.zeros((6, 16, 16, 3), "float32"), np.arange(6) % 3
    dataset = make(tf.data.Dataset.from_tensor_slices((x, y)).batch(2))
    spec = tiny_spec(backbone, [{"epochs": 1}], validation_split=0.0)
    with pytest.raises(surgery.SurgeryError) as caught:
        surgery.train(spec, dataset, tmp_path / "run", echo=None, verbose=0)
    assert caught.value.message.startswith(says), caught.value.message
    assert not (tmp_path / "run").exists()
    if says.startswith("the dataset's length"):  # what the caller states is taken: it trains
        stated = make(tf.data.Dataset.from_tensor_slices((x, y)).batch(2))
        stated = stated.apply(tf.data.experimental.assert_cardinality(3))
        result = surgery.train(spec, stated, tmp_path / "stated", echo=None, verbose=0, class_names=["a", "b", "c"])
        assert result.history["epoch"] == [1]
