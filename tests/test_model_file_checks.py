"""model_files' checks of a ``.keras`` or weights file before Keras sees it, called directly on archives made
by hand (no TensorFlow): a config that runs code or names a file, each way an archive is not a model, and how
Keras' own load failures become one line. The commands' tests show the same lines end to end."""

from __future__ import annotations

import json
import struct
import zipfile

import numpy as np
import pytest

from surgery.io import files, model_files
from surgery.spec.layer_catalog import file_arguments

from helpers import CallersError


def _keras(path, config, *, metadata=b'{"keras_version": "3.5.0"}'):
    with zipfile.ZipFile(path, "w") as archive:
        if config is not None:
            archive.writestr("config.json", config if isinstance(config, bytes) else json.dumps(config))
        archive.writestr("metadata.json", metadata)
    return path


def _says(call, *args, **kwargs) -> str:
    with pytest.raises(CallersError) as refused:
        call(*args, error=CallersError, **kwargs)
    return str(refused.value)


def _layer(class_name, **config):
    return {"class_name": class_name, "config": {"name": class_name.lower(), **config}}


MODEL = {"class_name": "Functional", "config": {"layers": [_layer("InputLayer"), _layer("Dense", units=3)]}}
CODE = (
    "{}: refused: the model contains a layer that runs Python code stored in the file (e.g. a Lambda); surgery "
    "loads models with safe_mode=True, since a spec must not run code. Rebuild the model without it, or "
    "register the layer from a plugin"
)


@pytest.fixture
def here(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # paths inside the working folder are shown relative to it
    return tmp_path


def test_a_models_config_is_read_without_tensorflow(here):
    assert model_files.check_model_file(_keras(here / "m.keras", MODEL)) == MODEL


@pytest.mark.parametrize(
    ("config", "says"),
    [
        (None, "m.keras is not a Keras model file: the archive has no config.json"),
        (b"{not json", "m.keras is not a Keras model file: its config.json is not valid JSON"),
        (b'{"a": "\xff"}', "m.keras is not a Keras model file: its config.json is not valid JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "m.keras is not a Keras model file: its config.json is not valid JSON"),
        ([MODEL], "m.keras is not a Keras model file: its config.json is not an object"),
    ],
    ids=["no config", "syntax", "not utf-8", "too deep", "a list"],
)
def test_an_archive_that_is_not_a_model_is_one_line(here, config, says):
    assert _says(model_files.check_model_file, _keras(here / "m.keras", config)) == says


def test_a_file_that_is_no_archive_or_has_an_oversized_member_is_named(here):
    (here / "text.keras").write_text("not a zip")
    assert _says(model_files.check_model_file, here / "text.keras") == f"text.keras {model_files.NOT_A_MODEL}"
    big = _keras(here / "big.keras", MODEL, metadata=b"{}")
    raw = bytearray(big.read_bytes())
    at = raw.index(b"PK\x01\x02", raw.index(b"PK\x01\x02") + 4)  # metadata.json's central directory entry
    struct.pack_into("<I", raw, at + 24, files.MIB + 1)
    big.write_bytes(bytes(raw))
    assert _says(model_files.check_model_file, big) == (
        "big.keras: its member metadata.json declares 1.0 MiB; the limit is 1024 KiB"
    )
    assert _says(model_files.check_model_file, here / "gone.keras") == "gone.keras: no such file"


@pytest.mark.parametrize(
    "config",
    [
        {"class_name": "Sequential", "config": {"layers": [_layer("Dense"), _layer("Lambda", function="x")]}},
        _layer("TimeDistributed", layer=_layer("Bidirectional", layer=_layer("Lambda"))),  # three deep
        _layer("Dense", activation={"class_name": "__lambda__", "config": {"value": ["4wEA", None, None]}}),
    ],
    ids=["a layer", "wrapped twice", "a lambda activation"],
)
def test_a_layer_that_runs_stored_code_is_refused_wherever_it_is(here, config):
    assert _says(model_files.check_model_file, _keras(here / "m.keras", config)) == CODE.format("m.keras")


def test_a_name_like_a_code_layer_is_not_one(here):
    named = {"class_name": "Sequential", "config": {"name": "Lambda", "layers": [_layer("Dense", name="Lambda")]}}
    assert model_files.check_model_file(_keras(here / "m.keras", named)) == named


def test_a_layer_that_names_a_file_to_read_is_refused_by_where_it_names_it(here):
    lookup = {"class_name": "Sequential", "config": {"layers": [
        _layer("StringLookup", vocabulary=["a", "b"]),  # a list: data inside the model, fine
        _layer("TextVectorization", vocabulary="/etc/passwd", idf_weights="/etc/shadow"),
    ]}}  # fmt: skip
    assert _says(model_files.check_model_file, _keras(here / "m.keras", lookup)) == (
        "m.keras: refused: config.json.config.layers[1].config.vocabulary names a file for Keras to read (a lookup "
        "layer's vocabulary path); a model file may not make surgery read other files. Save the model with the "
        "vocabulary inside it (as a list)"
    )
    weights_only = _layer("IntegerLookup", idf_weights="w.npy")
    assert "config.json.config.idf_weights names a file" in _says(
        model_files.check_model_config, weights_only, "p.keras"
    )
    assert model_files.check_model_config(_layer("StringLookup", vocabulary=["a"]), "p.keras") is None
    # a spec's layer config is checked by the same search, its places named from "config"
    layer = {"vocabulary": "v.txt", "layers": [{"idf_weights": ["0.5"]}, {"idf_weights": "w.npy"}]}
    assert file_arguments(layer) == ["config.vocabulary", "config.layers[1].idf_weights"]


WEIGHTS = 'weights: "{}"'


def test_a_weights_file_is_checked_by_its_suffix_and_its_first_bytes(here):
    assert _says(model_files.check_weights_file, here / "w.npz") == (
        f"{WEIGHTS.format('w.npz')} is not a weights file Keras loads: the name must end in .weights.h5, .h5, "
        ".hdf5, .keras"
    )
    (here / "empty.h5").write_bytes(b"")
    assert (
        _says(model_files.check_weights_file, here / "empty.h5")
        == f"{WEIGHTS.format('empty.h5')}: the weights file is empty"
    )
    (here / "text.weights.h5").write_text("text")
    assert _says(model_files.check_weights_file, here / "text.weights.h5") == (
        f'{WEIGHTS.format("text.weights.h5")} is not an HDF5 weights file (as model.save_weights("x.weights.h5") '
        "writes)"
    )
    (here / "good.hdf5").write_bytes(files.HDF5_SIGNATURE + b"\0" * 8)
    assert model_files.check_weights_file(here / "good.hdf5") is None
    _keras(here / "model.keras", _layer("Lambda"))  # a .keras as weights: its config is checked as a model's
    assert _says(model_files.check_weights_file, here / "model.keras") == (
        f"{WEIGHTS.format('model.keras')}: {CODE.format('model.keras')}"
    )
    assert model_files.check_weights_file(_keras(here / "fine.keras", MODEL)) is None


def test_a_weights_files_content_is_checked_for_links_outside_it_and_a_keras_file_is_left_to_keras(here):
    import h5py  # a dependency of Keras: always installed, so never skipped

    with h5py.File(here / "other.h5", "w") as f:
        f["x"] = [1]
    with h5py.File(here / "w.h5", "w") as f:
        f["leak"] = h5py.ExternalLink("other.h5", "/x")
    assert _says(model_files.check_weights_content, here / "w.h5") == (
        f'{WEIGHTS.format("w.h5")}: refused: the weights file reaches outside itself: "/leak" is an external '
        "link to other.h5"
    )
    (here / "w.keras").write_text("not read here")
    assert model_files.check_weights_content(here / "w.keras") is None


@pytest.mark.parametrize(
    ("raised", "says"),
    [
        (ValueError("Requested the deserialization of a Lambda layer ... arbitrary code ..."), CODE.format("m.keras")),
        (ValueError("... pass `safe_mode=False` to allow it"), CODE.format("m.keras")),
        (ValueError("This is UNSAFE"), CODE.format("m.keras")),
        (
            TypeError(
                "Could not locate class 'Scale'. Make sure custom classes are decorated with "
                "`@keras.saving.register_keras_serializable()`. Full object config: {'module': None, "
                "'class_name': 'Scale', 'registered_name': 'my_pkg>Scale'}"
            ),
            'm.keras holds a layer of class "my_pkg>Scale" that is not registered in this Python (a custom class): '
            "install the package or plugin that registers it, or rebuild the model from built-in layers",
        ),
        (
            TypeError("Could not locate function 'swish2'. Make sure custom classes ..."),
            'm.keras holds a layer of class "swish2" that is not registered in this Python (a custom class): '
            "install the package or plugin that registers it, or rebuild the model from built-in layers",
        ),
        (
            OSError("Unable to open\n  object 'vars' " + "x" * 400),
            "m.keras is not a Keras model file: OSError: Unable to open object 'vars' " + "x" * 271,  # 300 characters
        ),
    ],
    ids=["arbitrary code", "safe_mode", "unsafe", "unregistered class", "unregistered function", "other"],
)
def test_a_load_that_keras_refuses_is_one_line_saying_why(here, raised, says):
    assert model_files._load_failure(here / "m.keras", raised) == says


def _saved(keras, path, compile=False):
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(2, name="head")(inputs))
    if compile:  # and trained a step, so the file holds the optimizer's built state, as a checkpoint does
        model.compile(optimizer="adam", loss="mse")
        model.fit(np.zeros((2, 4)), np.zeros((2, 2)), verbose=0)
    model.save(str(path))
    return path


def _storing_code(source, target):
    """``source`` with its Dense activation replaced by a Python lambda stored as bytecode (as Keras writes
    one): no Lambda layer, so surgery's own check passes it and Keras' safe mode must refuse it."""
    with zipfile.ZipFile(source) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    config = json.loads(members["config.json"])
    head = next(layer for layer in config["config"]["layers"] if layer["class_name"] == "Dense")
    head["config"]["activation"] = {"class_name": "__lambda__", "config": {"value": ["4wEA", None, None]}}
    members["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(target, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return target


def test_a_model_loads_uncompiled_unless_asked_and_keras_refusals_are_the_callers_error(here, keras):
    path = _saved(keras, here / "m.keras", compile=True)
    assert not model_files.load_model(path).compiled  # a checkpoint to resume asks for its optimizer
    assert model_files.load_model(path, compile=True).compiled
    assert _says(model_files.load_model, _storing_code(path, here / "code.keras")) == CODE.format("code.keras")
    _keras(here / "unknown.keras", _layer("NoSuchLayer"))
    assert _says(model_files.load_model, here / "unknown.keras") == (
        'unknown.keras holds a layer of class "NoSuchLayer" that is not registered in this Python (a custom class): '
        "install the package or plugin that registers it, or rebuild the model from built-in layers"
    )
    assert _says(model_files.load_model, here / "gone.keras") == "gone.keras: no such file"


def test_safe_mode_holds_when_other_code_turned_it_off_for_the_process(here, keras, monkeypatch):
    """A plugin or the user's own code may call keras.config.enable_unsafe_deserialization(); a spec's model
    must still not run stored code, so surgery asks for safe mode on every load rather than inheriting it."""
    from keras.src.backend.common import global_state  # no public API turns safe mode back on

    code = _storing_code(_saved(keras, here / "plain.keras"), here / "code.keras")
    monkeypatch.setattr(model_files, "CODE_CLASSES", ())  # surgery's own check off: Keras' safe mode alone
    keras.config.enable_unsafe_deserialization()
    try:
        assert _says(model_files.load_model, code) == CODE.format("code.keras")
    finally:
        global_state.set_global_attribute("safe_mode_saving", None)
