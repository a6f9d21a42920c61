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


# Each public function with a wrong type, a misspelt keyword or too many arguments: the one line, naming
# the function and the argument, and nothing written.
WRONG_ARGUMENTS = {
    "number for a spec": (
        lambda out: surgery.build(5),
        "surgery.build(): spec must be the path of a .json spec or a dict, not int 5",
    ),
    "list for an output": (
        lambda out: surgery.apply(SMALL, output=[str(out)]),
        "surgery.apply(): output must be a path (str or os.PathLike) or None, not a list",
    ),
    "misspelt keyword": (
        lambda out: surgery.apply(SMALL, ouput=str(out)),
        'surgery.apply(): unknown argument "ouput"; did you mean "output"?',
    ),
    "positional output": (lambda out: surgery.apply(SMALL, str(out)), "surgery.apply(): too many positional arguments"),
    "a string for force": (
        lambda out: surgery.apply(SMALL, output=str(out), force="yes"),
        "surgery.apply(): force must be True or False, not str 'yes'",
    ),
    "number for plan": (
        lambda out: surgery.plan(3.5),
        "surgery.plan(): spec must be the path of a .json spec or a dict, not float 3.5",
    ),
    "load with plugins of another kind": (
        lambda out: surgery.load(SMALL, plugins={"ops": []}),
        "surgery.load(): plugins must be surgery.load_plugins()'s result or None, not dict {'ops': []}",
    ),
    "export without a format": (
        lambda out: surgery.export(out / "m.keras", None),
        "surgery.export(): to must be a string, not NoneType None",
    ),
    "string for epochs": (
        lambda out: surgery.train(SMALL, "data", out, epochs="2"),
        "surgery.train(): epochs must be a whole number >= 1 or None, not str '2'",
    ),
    "zero epochs": (
        lambda out: surgery.train(SMALL, "data", out, epochs=0),
        "surgery.train(): epochs must be a whole number >= 1 or None, not int 0",
    ),
    "not a callback": (
        lambda out: surgery.train(SMALL, "data", out, callbacks=[print]),
        "surgery.train(): callbacks must be a list of keras.callbacks.Callback objects, not list [<built-in",
    ),
    "misspelt train option": (
        lambda out: surgery.train(SMALL, "data", out, batchsize=2),
        'surgery.train(): unknown training option "batchsize"; did you mean "batch_size"?',
    ),
    "string for a train option": (
        lambda out: surgery.train(SMALL, "data", out, batch_size="2"),
        '--batch-size: expected integer, got string "2"',
    ),
    "evaluate a number": (
        lambda out: surgery.evaluate(3, "data"),
        "surgery.evaluate(): model must be a path (str or os.PathLike), not int 3",
    ),
    "evaluate a batch size of a float": (
        lambda out: surgery.evaluate(out / "m.keras", "data", batch_size=2.5),
        "surgery.evaluate(): batch_size must be a whole number >= 1, not float 2.5",
    ),
}


@pytest.mark.parametrize("case", list(WRONG_ARGUMENTS), ids=list(WRONG_ARGUMENTS))
def test_every_public_function_refuses_wrong_arguments_with_one_line(tmp_path, case):
    call, says = WRONG_ARGUMENTS[case]
    out = tmp_path / "out"
    with pytest.raises(surgery.SurgeryError) as caught:
        call(out)
    assert str(caught.value).startswith(says), str(caught.value)
    assert list(tmp_path.iterdir()) == []  # no run folder, no output: the same call again meets the same line


def test_numpy_scalars_in_a_spec_dict_are_the_numbers_they_hold(keras):
    import numpy as np

    spec = {**SMALL, "seed": np.int32(1), "steps": [*SMALL["steps"][:3]]}
    spec["steps"].append({"op": "append", "layer": "Dense", "config": {"units": np.int64(7), "use_bias": np.bool_(0)}})
    model = surgery.build(spec)
    assert model.output.shape[-1] == 7 and not model.layers[-1].use_bias
    assert type(spec["seed"]) is np.int32  # the caller's dict is read, not changed


@pytest.mark.parametrize(
    "where, value, says",
    [
        (("steps", 3, "config", "units"), {2}, "<dict>: steps[3].config.units: set is not a JSON type"),
        (("name",), b"small", "<dict>: name: bytes is not a JSON type"),
        (("steps", 3, "config"), {1: "x"}, "<dict>: steps[3].config: the key 1 is a int; JSON keys are strings"),
        (("steps", 3, "config", "units"), float("nan"), "<dict>: steps[3].config.units: nan is not a number JSON"),
    ],
    ids=["set", "bytes", "int key", "nan"],
)
def test_a_value_json_cannot_hold_is_refused_naming_its_key(where, value, says):
    import copy

    spec = copy.deepcopy(SMALL)
    target = spec
    for key in where[:-1]:
        target = target[key]
    target[where[-1]] = value
    with pytest.raises(surgery.SpecError) as caught:
        surgery.load(spec)
    assert str(caught.value).startswith(says), str(caught.value)


def _elements(kind):
    import numpy as np
    import tensorflow as tf

    x, y = np.zeros((6, 16, 16, 3), "float32"), np.arange(6) % 3
    pairs = {
        "triples with weights": (x, y, np.ones(6, "float32")),
        "string labels": (x, np.array(["a", "b", "c"] * 2)),
        "dicts": {"image": x, "label": y},
        "one-hot labels": (x, np.eye(3, dtype="int64")[y]),
        "float labels": (x, y.astype("float32")),
        "images alone": x,
        "images of another size": (np.zeros((6, 20, 20, 3), "float32"), y),
        "a label beyond any class count": (x, y * 2**40),
    }[kind]
    return tf.data.Dataset.from_tensor_slices(pairs).batch(2)


DATASET_ELEMENTS = {
    "triples with weights": "--data: the dataset's elements hold 3 values, not (image, integer label) (sample "
    "weights are not taken: give class_weight)",
    "string labels": "--data: the dataset's labels are string; give class indices 0, 1, 2, ...",
    "dicts": "--data: the dataset's elements are dicts (keys image, label); map them to (image, integer label) pairs",
    "one-hot labels": "--data: the dataset's labels have shape (None, 3) for images of shape (None, 16, 16, 3) "
    "(one-hot rows?); give one class index per image",
    "float labels": "--data: the dataset's labels are float32; give class indices",
    "images alone": "--data: the dataset's elements hold 1 value, not (image, integer label)",
    "images of another size": "<--data dataset>: the dataset's images have shape (20, 20, 3) but the model's "
    "input is (16, 16, 3)",
    "a label beyond any class count": "<--data dataset>: labels: y has label 2199023255552: more than 100,000 classes",
}


@pytest.mark.parametrize("kind", list(DATASET_ELEMENTS), ids=list(DATASET_ELEMENTS))
def test_a_dataset_of_other_elements_gets_the_line_arrays_get(tmp_path, backbone, kind):
    from helpers import tiny_spec

    spec = tiny_spec(backbone, [{"epochs": 1}], validation_split=0.0)
    with pytest.raises(surgery.SurgeryError) as caught:
        surgery.train(spec, _elements(kind), tmp_path / "run", echo=None, verbose=0)
    assert str(caught.value).startswith(DATASET_ELEMENTS[kind]), str(caught.value)


def test_a_png_plot_without_pillow_is_refused_before_the_build(tmp_path, monkeypatch, cli):
    """Pillow is what draws a PNG: without it, apply says so before building and writes nothing (not the
    .keras either); an .svg needs no Pillow."""
    import sys

    from helpers import assert_one_error_line, write_spec

    spec = write_spec(tmp_path, SMALL)
    monkeypatch.setitem(sys.modules, "PIL.ImageDraw", None)
    with pytest.raises(surgery.SpecError, match="writing a PNG needs Pillow"):
        surgery.apply(SMALL, output=str(tmp_path / "out"), plot=str(tmp_path / "m.png"), before_writing=pytest.fail)
    done = cli("apply", spec, "-o", tmp_path / "out", "--plot", tmp_path / "m.png")
    assert done.exit_code == 2, done.output
    assert_one_error_line(done.stderr, "--plot: writing a PNG needs Pillow (pip install pillow); or plot to a .svg")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spec.json"]
    done = surgery.apply(SMALL, output=str(tmp_path / "out"), plot=str(tmp_path / "m.svg"))
    assert done.plot.startswith("6 layers") and (tmp_path / "m.svg").read_text().startswith("<svg")


def test_the_picture_is_one_of_the_outputs_all_or_none(tmp_path, monkeypatch):
    """A picture that fails to draw leaves no model behind: it is placed with the other outputs or none is."""
    from surgery.report import plot

    def broken(lay):
        raise surgery.SpecError("the picture could not be drawn", where="--plot")

    monkeypatch.setattr(plot, "to_svg", broken)
    with pytest.raises(surgery.SpecError, match="could not be drawn"):
        surgery.apply(SMALL, output=str(tmp_path / "out"), onnx=None, plot=str(tmp_path / "m.svg"))
    assert not (tmp_path / "m.svg").exists()
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_load_refuses_what_validate_refuses(tmp_path, cli):
    """One check path: a train section that monitors a metric the run does not log."""
    from helpers import write_spec

    spec = {**SMALL, "train": {"monitor": "val_auc", "stages": [{"epochs": 1}]}}
    path = write_spec(tmp_path, spec)
    done = cli("validate", path)
    assert done.exit_code == 2, done.output
    with pytest.raises(surgery.SpecError) as caught:
        surgery.load(str(path))
    assert done.stderr.strip() == f"error: {caught.value}"
    assert 'train.monitor: "val_auc" is not logged by this run' in str(caught.value)
    spec["train"]["metrics"] = ["auc"]
    surgery.load(spec)  # with the metric logged, the same section passes


@pytest.fixture(scope="module")
def colour_run(tmp_path_factory, keras):
    """A model over 16x16 images whose three outputs are the mean red, green and blue, with a classes.json
    that names them out of alphabetical order; an .npz of 7 images in unequal classes."""
    import json

    import numpy as np

    folder = tmp_path_factory.mktemp("colour")
    inputs = keras.Input((16, 16, 3))
    pooled = keras.layers.GlobalAveragePooling2D(name="pooled")(inputs)
    head = keras.layers.Dense(3, activation="softmax", name="head")
    model = keras.Model(inputs, head(pooled))
    head.set_weights([np.eye(3, dtype="float32") * 0.05, np.zeros(3, "float32")])
    (folder / "run").mkdir()
    model.save(str(folder / "run" / "m.keras"))
    (folder / "run" / "classes.json").write_text(json.dumps({"class_names": ["red", "green", "blue"]}))
    rng = np.random.default_rng(3)
    y = np.array([2, 0, 0, 1, 2, 2, 2])
    x = (rng.uniform(0, 60, (7, 16, 16, 3)) + np.eye(3)[y][:, None, None, :] * 180).astype("float32")
    np.savez(folder / "data.npz", x=x, y=y, class_names=np.array(["red", "green", "blue"]))
    return folder, model, x, y


def test_features_from_python_are_the_models_outputs_in_the_datas_order(tmp_path, colour_run):
    import numpy as np

    folder, model, x, y = colour_run
    arrays = surgery.features(folder / "run" / "m.keras", folder / "data.npz", tmp_path / "f.npz", layer="pooled")
    np.testing.assert_allclose(arrays["features"], x.mean(axis=(1, 2)), rtol=1e-5)
    assert arrays["labels"].tolist() == y.tolist() and arrays["class_names"].tolist() == ["red", "green", "blue"]
    assert np.load(tmp_path / "f.npz")["features"].shape == (7, 3)
    with pytest.raises(surgery.SurgeryError, match="already exists"):
        surgery.features(folder / "run" / "m.keras", folder / "data.npz", tmp_path / "f.npz")


def test_predict_from_python_names_the_runs_classes(tmp_path, colour_run):
    import numpy as np
    from PIL import Image

    folder, model, x, y = colour_run
    for i in (0, 3):  # a blue image, then a green one
        Image.fromarray(x[i].astype("uint8")).save(tmp_path / f"{i}.png")
    found = surgery.predict(folder / "run" / "m.keras", [tmp_path / "0.png", tmp_path / "3.png"], top=2)
    assert found["names"].origin == "classes.json" and found["score"] == "probability"
    assert [r["top"][0]["name"] for r in found["results"]] == ["blue", "green"]
    want = model.predict(np.stack([x[0], x[3]]).astype("uint8").astype("float32"), verbose=0)
    got = [[e["probability"] for e in r["top"]] for r in found["results"]]
    np.testing.assert_allclose(got, np.sort(want, axis=1)[:, ::-1][:, :2], rtol=1e-5)
    with pytest.raises(surgery.SurgeryError, match="images must be a non-empty list of paths"):
        surgery.predict(folder / "run" / "m.keras", [])


def test_numpy_numbers_are_the_arguments_they_hold():
    """np.int64(3) is a count and np.bool_(True) a flag; a float or a bool is not a count."""
    import numpy as np

    from surgery.arguments import checked

    @checked(n="positive", flag="bool")
    def f(n, flag):
        return n, flag

    n, flag = f(np.int64(3), np.bool_(True))
    assert (n, flag) == (3, True) and type(n) is int and type(flag) is bool
    for bad in (np.float64(3.0), np.bool_(True), True):
        with pytest.raises(surgery.SpecError, match="n must be a whole number >= 1"):
            f(bad, False)
    with pytest.raises(surgery.SpecError, match="flag must be True or False"):
        f(3, np.int64(1))
