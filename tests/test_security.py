"""A spec, a model file, a sidecar and a run folder are data: they never run code, read undeclared files,
or make surgery write outside where the user pointed. Each test fails if its fix is taken out."""

from __future__ import annotations

import inspect
import itertools
import json
import os
import shutil
import zipfile

import numpy as np
import pytest

from helpers import assert_one_error_line, run_surgery, tiny_spec, write_pngs, write_spec

ZEN = "Beautiful is better than ugly"


@pytest.fixture(scope="module")
def classifier(tmp_path_factory, keras):
    """A 3-class model on 16x16 images with a classes.json beside it, and one image to predict."""
    root = tmp_path_factory.mktemp("classifier")
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="head")(x)).save(str(root / "m.keras"))
    images = write_pngs(root / "images", 1)
    return root, images


def _with_sidecar(folder, source, preprocess):
    folder.mkdir()
    shutil.copy(source / "m.keras", folder / "m.keras")
    (folder / "classes.json").write_text(
        json.dumps({"class_names": ["blue", "green", "red"], "preprocess": preprocess})
    )
    return folder / "m.keras"


# --- a sidecar names preprocessing; it is never imported --------------------------------------


@pytest.mark.parametrize("name", ["this.s", "builtins.print", "evil.go", "os.system"])
def test_classes_json_cannot_import_code(tmp_path, classifier, name):
    source, images = classifier
    model = _with_sidecar(tmp_path / "run", source, name)
    # `python -m surgery` puts the working folder on sys.path: a module there would be importable.
    (tmp_path / "evil.py").write_text("open('PWNED', 'w').write('ran')\ndef go(x):\n    return x\n")
    for command in (
        ["predict", model, images / "red" / "0.png"],
        ["features", model, "--data", images, "-o", tmp_path / "f.npz"],
    ):
        done = run_surgery(*command, cwd=tmp_path)
        assert done.returncode == 2, done.stderr
        assert_one_error_line(
            done.stderr, "classes.json", f'preprocess "{name}" is not a registered backbone', "never imports"
        )
        assert ZEN not in done.stdout + done.stderr
    assert not (tmp_path / "PWNED").exists()
    assert not (tmp_path / "f.npz").exists()


def test_a_registered_preprocess_input_path_resolves_through_the_registry(cli, tmp_path, classifier):
    """A sidecar from an earlier surgery names the backbone's function by its dotted path: it is matched against
    what the registry holds, not imported, and works."""
    source, images = classifier
    model = _with_sidecar(tmp_path / "run", source, "keras.applications.vgg16.preprocess_input")
    result = cli("predict", model, images / "red" / "0.png", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.output)["classes"] == "classes.json"


def test_resume_reads_the_run_folders_classes_json_as_data(cli, tmp_path, keras, images, backbone):
    spec = write_spec(tmp_path, tiny_spec(backbone, [{"epochs": 1}, {"epochs": 1}], validation_split=0.0))
    run = tmp_path / "run"
    assert cli("train", spec, "--data", images["train"], "-o", run).exit_code == 0
    state = json.loads((run / "checkpoints" / "state.json").read_text())
    state.update(finished=False, epochs_done=1, checkpoint=None)
    (run / "checkpoints" / "state.json").write_text(json.dumps(state))
    sidecar = json.loads((run / "classes.json").read_text())
    (run / "classes.json").write_text(json.dumps({**sidecar, "preprocess": "builtins.print"}))
    result = cli("train", spec, "--data", images["train"], "-o", run, "--resume")
    assert result.exit_code == 2
    assert_one_error_line(result.stderr, "classes.json", 'preprocess "builtins.print" is not a registered backbone')


# --- a spec names files only in its path fields ---------------------------------------------


def _canary(folder, token, name=None):
    """A file whose content (not its name) holds ``token``: seeing the token means the file was read."""
    path = folder / f"{name or 'file_' + token[::-1]}.txt"
    path.write_text(f"{token}\n{token}b\n1\n2\n")
    os.utime(path, (1000, 2000))  # atime before mtime: relatime records a read
    return path


def _reads(path) -> bool:
    return os.stat(path).st_atime != 1000


def _leaking_arguments(keras, folder) -> set:
    """Every (class, argument) of keras.layers that reads a file given as a string: a fresh canary file per try
    (TensorFlow caches lookup tables by file name), detected by the token appearing anywhere or the file's atime."""
    found = set()
    counter = itertools.count()
    inputs = [
        np.zeros((2, 8, 8, 3), "float32"),
        np.zeros((2, 4), "float32"),
        np.array([["a"], ["b"]]),
        np.array([[1], [2]]),
    ]
    for name in sorted(n for n in dir(keras.layers) if n[:1].isupper()):
        cls = getattr(keras.layers, name)
        if not isinstance(cls, type) or name == "TFSMLayer":  # TFSMLayer loads a SavedModel: refused by name
            continue
        try:
            arguments = list(inspect.signature(cls.__init__).parameters)[1:]
        except (TypeError, ValueError):
            continue
        for argument in arguments:
            if argument in ("args", "kwargs", "name"):
                continue
            token = f"canary{next(counter):05d}x"
            path = _canary(folder, token)
            seen = ""
            try:
                layer = cls(**{argument: str(path)})
                seen += repr(layer.get_config())
                if hasattr(layer, "get_vocabulary"):
                    seen += repr(layer.get_vocabulary())
                for x in inputs:
                    try:
                        seen += repr(np.asarray(layer(x)).tolist())[:2000]
                    except Exception as e:  # noqa: BLE001 (most layers refuse most inputs)
                        seen += str(e)
            except Exception as e:  # noqa: BLE001
                seen += str(e)
            if token in seen or _reads(path):
                found.add((name, argument))
    return found


@pytest.mark.slow
def test_every_layer_argument_keras_reads_as_a_file_is_refused(cli, tmp_path, keras):
    from surgery.spec.layer_catalog import FILE_ARGUMENTS

    leaking = _leaking_arguments(keras, tmp_path)
    assert ("StringLookup", "vocabulary") in leaking, "the search finds nothing: it cannot be trusted"
    assert {argument for _, argument in leaking} <= set(FILE_ARGUMENTS), leaking
    for name, argument in sorted(leaking):
        canary = _canary(tmp_path, f"{name}{argument}")
        spec = write_spec(
            tmp_path,
            {
                "surgery": 1,
                "steps": [
                    {
                        "op": "backbone",
                        "name": "vgg16",
                        "weights": None,
                        "include_top": False,
                        "input_shape": [32, 32, 3],
                    },
                    {"op": "append", "layer": name, "config": {argument: str(canary)}},
                ],
            },
        )
        for command in ("validate", "apply"):
            result = cli(command, spec, "-o", tmp_path / "out.keras") if command == "apply" else cli(command, spec)
            assert result.exit_code == 2, (name, argument, result.output)
            line = assert_one_error_line(result.stderr, f"config.{argument} is a file path")
            assert canary.name not in line.split("is a file path")[0]  # names the field, not the content
        assert not _reads(canary), f"{name}.{argument} read the file"
    assert not (tmp_path / "out.keras").exists()


def test_a_lookup_layer_cannot_copy_a_file_into_the_model(cli, tmp_path):
    secret = _canary(tmp_path, "secret")
    for op in (
        {"op": "append", "layer": "StringLookup", "config": {"vocabulary": str(secret)}},
        {"op": "append", "layer": "IntegerLookup", "config": {"vocabulary": str(secret)}},
        {"op": "insert", "after": "block1_conv1", "layer": "StringLookup", "config": {"vocabulary": str(secret)}},
        {"op": "replace", "target": "block1_conv1", "config": {"vocabulary": str(secret)}},
    ):
        spec = write_spec(
            tmp_path,
            {
                "surgery": 1,
                "steps": [
                    {
                        "op": "backbone",
                        "name": "vgg16",
                        "weights": None,
                        "include_top": False,
                        "input_shape": [32, 32, 3],
                    },
                    op,
                ],
            },
        )
        result = cli("apply", spec, "-o", tmp_path / "m.keras")
        assert result.exit_code == 2
        assert "secret" not in result.stderr.replace(str(tmp_path), "")
        assert_one_error_line(result.stderr, "config.vocabulary is a file path")
    assert not _reads(secret)
    assert not (tmp_path / "m.keras").exists()


def _tamper(model_path, edit):
    """Rewrite a .keras file's config.json with ``edit(config)``."""
    with zipfile.ZipFile(model_path) as archive:
        members = {info.filename: archive.read(info) for info in archive.infolist()}
    config = json.loads(members["config.json"])
    edit(config)
    members["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(model_path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)


def _layer_configs(config):
    if isinstance(config, dict):
        if "class_name" in config and isinstance(config.get("config"), dict):
            yield config
        for value in config.values():
            yield from _layer_configs(value)
    elif isinstance(config, list):
        for value in config:
            yield from _layer_configs(value)


def test_a_model_file_cannot_make_surgery_read_a_file(cli, tmp_path, keras):
    secret = _canary(tmp_path, "secret")
    inputs = keras.Input((1,), dtype="string")
    model = keras.Model(inputs, keras.layers.StringLookup(vocabulary=["a", "b"], name="lookup")(inputs))
    path = tmp_path / "lookup.keras"
    model.save(str(path))

    def point_at_secret(config):
        for layer in _layer_configs(config):
            if layer["class_name"] == "StringLookup":
                layer["config"]["vocabulary"] = str(secret)

    _tamper(path, point_at_secret)
    spec = write_spec(
        tmp_path, {"surgery": 1, "steps": [{"op": "backbone", "name": "keras_file", "path": "lookup.keras"}]}
    )
    for command in (
        ["validate", spec],
        ["apply", spec, "-o", tmp_path / "out.keras"],
        ["export", path, "--to", "keras", "-o", tmp_path / "out.keras"],
        ["predict", path, tmp_path / "none.png"],
    ):
        result = cli(*command)
        assert result.exit_code == 2, command
        assert_one_error_line(result.stderr, "refused", "config.json", ".vocabulary names a file")
    assert not _reads(secret)


def test_a_weights_file_cannot_reach_another_file(cli, tmp_path, keras):
    import h5py

    keras.applications.VGG16(weights=None, include_top=False, input_shape=(32, 32, 3)).save_weights(
        str(tmp_path / "vgg.weights.h5")
    )
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["data"] = np.arange(3)
    with h5py.File(tmp_path / "vgg.weights.h5", "a") as f:
        f["outside"] = h5py.ExternalLink(str(tmp_path / "other.h5"), "/data")
    spec = write_spec(
        tmp_path,
        {
            "surgery": 1,
            "steps": [
                {
                    "op": "backbone",
                    "name": "vgg16",
                    "include_top": False,
                    "input_shape": [32, 32, 3],
                    "weights": "vgg.weights.h5",
                }
            ],
        },
    )
    result = cli("apply", spec, "-o", tmp_path / "m.keras")
    assert result.exit_code == 2
    assert_one_error_line(result.stderr, "steps[0] (backbone)", "reaches outside itself", "external link")
    assert not (tmp_path / "m.keras").exists()


# --- a run folder's paths stay inside it -------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    "checkpoint", ["../../outside.keras", "/tmp/outside.keras", "../best.keras", "epoch-0001.keras/../../x.keras"]
)
def test_resume_loads_no_checkpoint_outside_the_run_folder(cli, tmp_path, images, backbone, checkpoint):
    spec = write_spec(tmp_path, tiny_spec(backbone, [{"epochs": 2}], validation_split=0.0))
    run = tmp_path / "run"
    assert cli("train", spec, "--data", images["train"], "-o", run).exit_code == 0
    state = json.loads((run / "checkpoints" / "state.json").read_text())
    state.update(finished=False, epochs_done=1, checkpoint=checkpoint)
    (run / "checkpoints" / "state.json").write_text(json.dumps(state))
    result = cli("train", spec, "--data", images["train"], "-o", run, "--resume")
    assert result.exit_code == 2
    assert_one_error_line(result.stderr, "--resume", "not a checkpoint file name")


# --- outputs a spec names stay in its folder; the command line may go anywhere ------------------


@pytest.mark.parametrize(
    "target,why",
    [
        ("../victim/notes.keras", "leaves the spec's folder"),
        ("sub/../../victim/notes.keras", "leaves the spec's folder"),
        ("VICTIM_ABS", "must be a path relative to the spec's folder"),
        ("~/notes.keras", "must be a path relative to the spec's folder"),
        ("link/notes.keras", "through a symbolic link"),
        ("notes.txt", "must end in .keras"),
    ],
)
def test_spec_outputs_cannot_escape_or_overwrite(cli, tmp_path, target, why):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "notes.keras").write_text("my notes")
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "link").symlink_to(victim)
    target = target.replace("VICTIM_ABS", str(victim / "notes.keras"))
    spec = write_spec(
        tmp_path / "specs",
        {
            "surgery": 1,
            "steps": [
                {"op": "backbone", "name": "vgg16", "weights": None, "include_top": False, "input_shape": [32, 32, 3]}
            ],
            "outputs": {"keras": target},
        },
    )
    for command in ("validate", "apply"):
        result = cli(command, spec, "--force") if command == "apply" else cli(command, spec)
        assert result.exit_code == 2
        assert_one_error_line(result.stderr, "outputs.keras", why)
    assert (victim / "notes.keras").read_text() == "my notes"


def test_command_line_outputs_may_go_anywhere(cli, tmp_path):
    (tmp_path / "specs").mkdir()
    (tmp_path / "elsewhere").mkdir()
    spec = write_spec(
        tmp_path / "specs",
        {
            "surgery": 1,
            "name": "m",
            "steps": [
                {"op": "backbone", "name": "vgg16", "weights": None, "include_top": False, "input_shape": [32, 32, 3]},
                {"op": "slice", "layers": ":4"},
            ],
        },
    )
    result = cli("apply", spec, "-o", tmp_path / "elsewhere" / "m.keras")
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "elsewhere" / "m.keras").is_file()


@pytest.mark.parametrize(
    "output,why",
    [
        ({"path": "../victim/notes.onnx", "quantize": "int8", "calibration": "d.npz"}, "leaves the spec's folder"),
        ({"path": "m.onnx", "quantize": "int4", "calibration": "d.npz"}, "int4"),
        ({"path": "m.onnx", "quantize": "int8"}, "calibration"),
        ({"path": "m.onnx", "quantize": "int8", "calibration": "d.npz", "max_drop": -1}, "max_drop"),
        ({"path": "m.onnx", "quantize": "int8", "calibration": "d.npz", "script": "x.py"}, "script"),
    ],
)
def test_a_spec_quantized_output_is_checked_like_a_path(cli, tmp_path, output, why):
    (tmp_path / "specs").mkdir()
    steps = [{"op": "backbone", "name": "vgg16", "weights": None, "include_top": False, "input_shape": [32, 32, 3]}]
    spec = write_spec(tmp_path / "specs", {"surgery": 1, "steps": steps, "outputs": {"onnx": output}})
    result = cli("validate", spec)
    assert result.exit_code == 2
    assert_one_error_line(result.stderr, "outputs.onnx", why)
