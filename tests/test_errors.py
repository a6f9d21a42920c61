"""Bad input: one line naming the file, the step and what would be valid; exit 2; no output file."""

from __future__ import annotations

import json
import zipfile

import pytest

from helpers import assert_one_error_line, load_spec_json, with_weights, write_spec


def seed_spec():
    return with_weights(load_spec_json("vgg16_cut_extend.json"), None)


def resnet_spec():
    return with_weights(load_spec_json("resnet50_cut.json"), None)


def _set(path, value):
    def mutate(spec):
        target = spec
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        return spec

    return mutate


CASES = {
    "unknown layer class": (
        seed_spec,
        _set(["steps", 2, "layer"], "Dense2"),
        ['steps[2] (append): unknown layer class "Dense2"; did you mean "Dense"?'],
    ),
    "slice out of range": (
        seed_spec,
        _set(["steps", 1, "layers"], ":40"),
        ["steps[1] (slice): layer index 40 is out of range; the model has 19 layers (0..18)"],
    ),
    "slice keeps nothing": (seed_spec, _set(["steps", 1, "layers"], "5:5"), ["steps[1] (slice)", "keeps no layer"]),
    "slice text not a slice": (
        seed_spec,
        _set(["steps", 1, "layers"], "first eleven"),
        ["steps[1] (slice)", "is not slice text", '":11"'],
    ),
    "slice with a step": (seed_spec, _set(["steps", 1, "layers"], "::2"), ["steps[1] (slice)", "only contiguous"]),
    "cut at unknown layer": (
        resnet_spec,
        _set(["steps", 1, "to"], "conv4_block6_outt"),
        ['steps[1] (slice): no layer named "conv4_block6_outt"; did you mean "conv4_block6_out"?'],
    ),
    "cut inside a residual block": (
        resnet_spec,
        _set(["steps", 1, "to"], "conv4_block6_2_conv"),
        [
            "steps[1] (slice): cannot cut after conv4_block6_2_conv",
            "tensors are live",
            "nearest valid cut points: conv4_block5_out (index 132), conv4_block6_add (index 141)",
        ],
    ),
    "bad layer config": (
        seed_spec,
        _set(["steps", 4, "config"], {"units": -1}),
        ["steps[4] (append): bad config for Dense"],
    ),
    "unknown activation": (
        seed_spec,
        _set(["steps", 4, "config"], {"units": 2, "activation": "relu2"}),
        ["steps[4] (append): bad config for Dense", "relu2"],
    ),
    "unknown config key": (
        seed_spec,
        _set(["steps", 4, "config"], {"units": 2, "unitz": 3}),
        ["steps[4] (append): bad config for Dense", "unitz"],
    ),
    "conv after a vector": (
        seed_spec,
        lambda s: {
            **s,
            "steps": s["steps"][:5] + [{"op": "append", "layer": "Conv2D", "config": {"filters": 4, "kernel_size": 3}}],
        },
        ["steps[5] (append): cannot append Conv2D to the output of shape (None, 2)"],
    ),
    "freeze matches nothing": (
        seed_spec,
        _set(["steps", 5], {"op": "freeze", "names": ["block9_*"]}),
        ['steps[5] (freeze): names: "block9_*" matches no layer'],
    ),
    "freeze unknown type": (
        seed_spec,
        _set(["steps", 5], {"op": "freeze", "types": ["BatchNormalization"]}),
        ['steps[5] (freeze): types: no layer of type "BatchNormalization"', "Conv2D"],
    ),
    "freeze without selector": (seed_spec, _set(["steps", 5], {"op": "freeze"}), ["steps[5] (freeze)"]),
    "weights file missing": (
        seed_spec,
        _set(["steps", 0, "weights"], "nope.weights.h5"),
        ['steps[0] (backbone): weights: file "nope.weights.h5" does not exist'],
    ),
    "unknown key in a step": (
        seed_spec,
        _set(["steps", 1, "layer"], ":11"),
        ['steps[1] (slice): unknown key "layer"; did you mean "layers"?'],
    ),
    "unknown backbone": (
        seed_spec,
        _set(["steps", 0, "name"], "vgg61"),
        ['steps[0] (backbone): unknown backbone "vgg61"; did you mean "vgg'],
    ),
    "unknown backbone option": (
        seed_spec,
        _set(["steps", 0, "pooling"], "mean"),
        ['steps[0] (backbone): pooling: "mean" is not one of null, "avg", "max"'],
    ),
    "first step not a backbone": (
        seed_spec,
        lambda s: {**s, "steps": s["steps"][1:]},
        ['steps[0] (slice): the first step must start a model (backbone), not "slice"'],
    ),
    "unknown op": (
        seed_spec,
        _set(["steps", 1, "op"], "slise"),
        ['steps[1]: unknown op "slise"; did you mean "slice"?'],
    ),
    "wrong format version": (seed_spec, _set(["surgery"], 2), ["surgery: format version 2 is not supported"]),
    "missing steps": (seed_spec, lambda s: {"surgery": 1}, ['missing required key "steps"']),
    "empty steps": (seed_spec, _set(["steps"], []), ["steps: must not be empty"]),
    "lambda refused": (
        seed_spec,
        _set(["steps", 3], {"op": "append", "layer": "Lambda", "config": {}}),
        ['steps[3] (append): layer "Lambda" is refused', "must not run code"],
    ),
    "input too small": (
        seed_spec,
        _set(["steps", 0, "input_shape"], [16, 16, 3]),
        ["steps[0] (backbone): input_shape [16, 16, 3]: vgg16 needs at least 32x32"],
    ),
    "string for a number": (seed_spec, _set(["seed"], "zero"), ['seed: expected integer, got string "zero"']),
    "number for a list": (
        seed_spec,
        _set(["steps", 0, "input_shape"], 224),
        ["steps[0] (backbone): input_shape: expected array, got integer 224"],
    ),
    "zero size": (
        seed_spec,
        _set(["steps", 0, "input_shape"], [224, 0, 3]),
        ["steps[0] (backbone): input_shape[1]: 0 is too small; the minimum is 1"],
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_spec(case, cli, tmp_path):
    make, mutate, fragments = CASES[case]
    path = write_spec(tmp_path, mutate(make()))
    out = tmp_path / "out"
    result = cli("apply", path, "-o", out)
    assert result.exit_code == 2, result.stdout + result.stderr
    line = assert_one_error_line(result.stderr, *fragments)
    assert line.startswith(f"error: {path}: ")
    assert not out.exists() or not any(out.iterdir())


def test_weights_file_of_another_backbone(cli, tmp_path, resnet50_notop_weights):
    path = write_spec(tmp_path, with_weights(load_spec_json("vgg16_cut_extend.json"), resnet50_notop_weights))
    result = cli("apply", path, "-o", tmp_path / "m.keras")
    assert result.exit_code == 2
    assert_one_error_line(result.stderr, "steps[0] (backbone)", "does not fit VGG16")
    assert not (tmp_path / "m.keras").exists()


def test_keras_file_that_is_not_a_model(cli, tmp_path):
    (tmp_path / "fake.keras").write_text("not a zip")
    spec = {"surgery": 1, "steps": [{"op": "backbone", "name": "keras_file", "path": "fake.keras"}]}
    result = cli("apply", write_spec(tmp_path, spec), "-o", tmp_path / "m.keras")
    assert result.exit_code == 2
    assert_one_error_line(result.stderr, "steps[0] (backbone)", "is not a Keras model file")


@pytest.mark.parametrize("command", ["apply", "validate"])
def test_keras_file_with_lambda_is_refused(cli, tmp_path, keras, command):
    """By surgery's own check of the file's config, before Keras sees it: validate, which never loads the
    model, refuses it too (Keras' safe mode alone would let validate print ok)."""
    inputs = keras.Input((4,))
    outputs = keras.layers.Lambda(lambda x: x * 2)(inputs)
    keras.Model(inputs, outputs).save(str(tmp_path / "lam.keras"))
    spec = {"surgery": 1, "steps": [{"op": "backbone", "name": "keras_file", "path": "lam.keras"}]}
    args = ["-o", tmp_path / "m.keras"] if command == "apply" else []
    result = cli(command, write_spec(tmp_path, spec), *args)
    assert result.exit_code == 2
    assert_one_error_line(result.stderr, "steps[0] (backbone)", "refused", "runs Python code", "safe_mode=True")
    assert not (tmp_path / "m.keras").exists()


@pytest.mark.parametrize(
    "content,fragment",
    [
        (b"", "file is empty"),
        (b"{not json", "not valid JSON: Expecting property name"),
        (b"[1, 2]", "the top level must be a JSON object, got array"),
        (b"\xff\xfe{}", "not UTF-8 text (byte 0xff at offset 0)"),
        (b"[" * 10000 + b"]" * 10000, "nested too deeply"),
    ],
)
def test_unreadable_specs(cli, tmp_path, content, fragment):
    path = tmp_path / "s.json"
    path.write_bytes(content)
    result = cli("validate", path)
    assert result.exit_code == 2
    assert_one_error_line(result.stderr, str(path), fragment)


def test_spec_that_is_a_directory(cli, tmp_path):
    result = cli("validate", tmp_path)
    assert result.exit_code == 2
    assert_one_error_line(result.stderr, "is a directory")


def test_huge_spec(cli, tmp_path):
    path = tmp_path / "big.json"
    path.write_text(json.dumps({"surgery": 1, "steps": [], "description": "x" * (50 << 20)}))
    result = cli("validate", path)
    assert result.exit_code == 2
    assert_one_error_line(result.stderr, "spec is 52.4 MB; the limit is 1024 KiB")


def test_output_folder_missing(cli, tmp_path):
    target = tmp_path / "no" / "such" / "m.keras"
    result = cli("apply", write_spec(tmp_path, seed_spec()), "-o", target)
    assert result.exit_code == 2
    assert_one_error_line(result.stderr, "does not exist")
    assert not target.parent.exists()


@pytest.mark.parametrize(
    "args,target,suffix",
    [
        (["export", "m.keras", "--to", "onnx"], "model.txt", ".onnx"),
        (["export", "m.keras", "--to", "saved_model"], "m.onnx", ".savedmodel"),
        (["apply", "spec.json"], "m.onnx", ".keras"),
    ],
)
def test_an_output_with_another_formats_suffix_is_refused_not_made_a_folder(
    cli, tmp_path, monkeypatch, args, target, suffix
):
    monkeypatch.chdir(tmp_path)
    write_spec(tmp_path, seed_spec())
    (tmp_path / "m.keras").write_bytes(b"never read: the path is refused first")
    result = cli(*args, "-o", target)
    assert result.exit_code == 2, result.stderr
    assert assert_one_error_line(result.stderr) == (
        f"error: {target}: -o: ends in {target[target.rindex('.') :]}, but this output ends in {suffix}: "
        f"give a path ending in {suffix}, or a folder to write it in"
    )
    assert not (tmp_path / target).exists()


def test_a_folder_with_a_dot_in_its_name_is_still_a_folder(tmp_path):
    from surgery.io.writing import output_path

    assert output_path(str(tmp_path / "v1.2"), "m", ".keras") == (tmp_path / "v1.2" / "m.keras", True)
    (tmp_path / "runs.old").mkdir()
    assert output_path(str(tmp_path / "runs.old"), "m", ".onnx") == (tmp_path / "runs.old" / "m.onnx", True)


def test_weights_override_bad_inputs(cli, tmp_path):
    not_a_backbone = write_spec(tmp_path, {"surgery": 1, "steps": [{"op": "slice", "layers": ":3"}]}, "a.json")
    result = cli("apply", not_a_backbone, "--weights", "none", "-o", tmp_path / "a.keras")
    assert result.exit_code == 2
    assert_one_error_line(
        result.stderr, "steps[0]", '--weights applies to a first step that starts a model (backbone), not "slice"'
    )
    missing = tmp_path / "missing.weights.h5"
    result = cli("apply", write_spec(tmp_path, seed_spec(), "b.json"), "--weights", missing, "-o", tmp_path / "b.keras")
    assert result.exit_code == 2
    assert_one_error_line(result.stderr, "steps[0] (backbone): weights: file", "does not exist")
    assert not (tmp_path / "a.keras").exists() and not (tmp_path / "b.keras").exists()


# --- bad input that used to be an internal error, or accepted: each its exact line -------------------


def test_a_spec_name_too_long_for_a_file(cli, tmp_path):
    data = {k: v for k, v in seed_spec().items() if k != "name"}
    long_spec = write_spec(tmp_path, data, "s" * 250 + ".json")
    result = cli("apply", long_spec, "-o", tmp_path)
    assert result.exit_code == 2
    line = assert_one_error_line(result.stderr)
    assert line == (
        f"error: {tmp_path / ('s' * 250 + '.keras')}: output keras: the file name is 256 bytes; "
        'file systems allow 255 (give the spec a shorter "name", or -o a shorter path)'
    )
    # A name that fits still leaves room for the temporary name beside it.
    fits = write_spec(tmp_path, {**data, "steps": data["steps"][:2]}, "s" * 240 + ".json")
    result = cli("apply", fits, "-o", tmp_path)
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / ("s" * 240 + ".keras")).is_file()


def test_weights_override_that_is_empty(cli, tmp_path):
    result = cli("apply", write_spec(tmp_path, seed_spec()), "--weights", "", "-o", tmp_path / "m.keras")
    assert result.exit_code == 2
    assert (
        assert_one_error_line(result.stderr)
        == 'error: --weights: is empty; give "imagenet", "none", or the path of a weights file'
    )


def test_a_model_with_an_unregistered_custom_class(cli, tmp_path, keras):
    @keras.saving.register_keras_serializable(package="private")
    class Doubler(keras.layers.Layer):
        def call(self, x):
            return x * 2

    inputs = keras.Input((4,))
    keras.Model(inputs, Doubler(name="double")(inputs)).save(str(tmp_path / "custom.keras"))
    keras.saving.get_custom_objects().clear()
    spec = write_spec(
        tmp_path, {"surgery": 1, "steps": [{"op": "backbone", "name": "keras_file", "path": "custom.keras"}]}
    )
    result = cli("apply", spec, "-o", tmp_path / "m.keras")
    assert result.exit_code == 2
    assert assert_one_error_line(result.stderr) == (
        f'error: {spec}: steps[0] (backbone): {tmp_path / "custom.keras"} holds a layer of class "private>Doubler" '
        "that is not registered in this Python (a custom class): install the package or plugin that registers it, "
        "or rebuild the model from built-in layers"
    )


def test_predict_on_things_that_are_not_models(cli, tmp_path):
    (tmp_path / "model.h5").write_text("not a model")
    (tmp_path / "image.png").write_bytes(b"")
    result = cli("predict", tmp_path / "model.h5", tmp_path / "image.png")
    assert result.exit_code == 2
    assert (
        assert_one_error_line(result.stderr)
        == f"error: {tmp_path / 'model.h5'}: is neither a Keras model (.keras) nor a spec (.json)"
    )
    result = cli("predict", tmp_path, tmp_path / "image.png")
    assert result.exit_code == 2
    assert assert_one_error_line(result.stderr) == (
        f"error: {tmp_path}: is a folder; give a .keras model file (a run folder's model is <name>.keras or "
        "best.keras in it) or a spec (.json)"
    )
    (tmp_path / "broken.keras").write_text("not a zip")
    result = cli("predict", tmp_path / "broken.keras", tmp_path / "image.png")
    assert result.exit_code == 2
    assert assert_one_error_line(result.stderr) == (
        f"error: {tmp_path / 'broken.keras'} is not a Keras model file (a .keras file is a zip archive, as "
        'model.save("name.keras") writes it)'
    )
    damaged = tmp_path / "damaged.keras"  # a zip whose config.json has one byte flipped after it was written
    with zipfile.ZipFile(damaged, "w") as archive:
        archive.writestr("config.json", json.dumps({"class_name": "Sequential", "config": {"layers": []}}))
    raw = bytearray(damaged.read_bytes())
    raw[raw.index(b"Sequential")] = ord("T")
    damaged.write_bytes(bytes(raw))
    for command in (("predict", damaged, tmp_path / "image.png"), ("export", damaged, "--to", "onnx")):
        result = cli(*command)
        assert result.exit_code == 2, result.output
        assert assert_one_error_line(result.stderr) == (
            f"error: {damaged}: its member config.json cannot be read: Bad CRC-32 for file 'config.json'"
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.keras", "damaged.keras", "image.png", "model.h5"]


def test_export_force_replaces_a_savedmodel_surgery_wrote_and_no_other_folder(cli, tmp_path, keras):
    inputs = keras.Input((4,))
    keras.Model(inputs, keras.layers.Dense(2, name="out")(inputs)).save(str(tmp_path / "m.keras"))
    target = tmp_path / "m.savedmodel"
    assert cli("export", tmp_path / "m.keras", "--to", "saved_model").exit_code == 0
    first = (target / "saved_model.pb").stat().st_mtime_ns
    result = cli("export", tmp_path / "m.keras", "--to", "saved_model")
    assert result.exit_code == 2
    assert (
        assert_one_error_line(result.stderr)
        == f"error: {target}: output saved_model: already exists; pass --force to overwrite it"
    )
    result = cli("export", tmp_path / "m.keras", "--to", "saved_model", "--force")
    assert result.exit_code == 0, result.stderr
    assert (target / "saved_model.pb").stat().st_mtime_ns != first
    foreign = tmp_path / "other.savedmodel"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    result = cli("export", tmp_path / "m.keras", "--to", "saved_model", "-o", foreign, "--force")
    assert result.exit_code == 2
    assert assert_one_error_line(result.stderr) == (
        f"error: {foreign}: output saved_model: is a folder that surgery did not write (no .surgery marker in it); "
        "surgery replaces only regular files and folders it wrote: remove it yourself or choose another path"
    )
    assert (foreign / "notes.txt").read_text() == "mine"


def _fsize_limited(limit_bytes: int):
    def set_limit():
        import resource
        import signal

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails with EFBIG instead of killing the process
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return set_limit


@pytest.mark.slow
def test_a_write_that_fails_for_lack_of_space_names_the_file(tmp_path):
    import subprocess
    import sys

    spec = write_spec(tmp_path, seed_spec())
    out = tmp_path / "m.keras"
    done = subprocess.run(
        [sys.executable, "-m", "surgery", "apply", str(spec), "-o", str(out)],
        capture_output=True,
        text=True,
        preexec_fn=_fsize_limited(1 << 20),
        timeout=300,
    )
    assert done.returncode == 2, done.stderr
    assert assert_one_error_line(done.stderr) == (
        f"error: {out}: cannot be written: the file is larger than this system allows; nothing was written"
    )
    assert list(tmp_path.iterdir()) == [spec]


@pytest.fixture(scope="module")
def interrupted_run(tmp_path_factory, images, backbone):
    """A run folder as a kill after epoch 1 of 2 leaves it, and the spec that made it."""
    from surgery import train as train_spec

    from helpers import tiny_spec

    root = tmp_path_factory.mktemp("interrupted")
    spec = write_spec(root, tiny_spec(backbone, [{"epochs": 1}, {"epochs": 1}], validation_split=0.0))
    train_spec(spec, str(images["train"]), root / "run", echo=lambda *_: None, verbose=0)
    state_file = root / "run" / "checkpoints" / "state.json"
    state = json.loads(state_file.read_text())
    state.update(finished=False, epochs_done=1, checkpoint="epoch-0001.keras")
    state_file.write_text(json.dumps(state))
    return spec, root / "run"


def _damage(run, relative, content):
    path = run / relative
    if content is None:
        path.unlink()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)


RESUME_DAMAGE = {
    "missing classes.json": (
        "classes.json",
        None,
        "{run}: --resume: classes.json is missing: this is not a complete surgery run",
    ),
    "classes.json not JSON": (
        "classes.json",
        "{",
        "{run}/classes.json: not valid JSON: Expecting property name enclosed in double quotes at line 1 column 2",
    ),
    "classes.json wrong types": (
        "classes.json",
        '{"class_names": "red"}',
        "{run}/classes.json: class_names must be a list of strings",
    ),
    "state.json wrong types": (
        "checkpoints/state.json",
        "STATE_WITH_STRING_EPOCHS",
        "{run}: --resume: checkpoints/state.json: epochs_done has the wrong type (str)",
    ),
    "state.json stage without epochs": (
        "checkpoints/state.json",
        "STATE_WITH_A_WORD_FOR_EPOCHS",
        "{run}: --resume: checkpoints/state.json: its stages must each hold an epoch count",
    ),
    "state.json not an object": (
        "checkpoints/state.json",
        "[1]",
        "{run}: --resume: checkpoints/state.json is not a surgery run state (not a JSON object)",
    ),
    "truncated checkpoint": (
        "checkpoints/epoch-0001.keras",
        b"PK\x03\x04truncated",
        "--resume: {run}/checkpoints/epoch-0001.keras is not a Keras model file (a .keras "
        'file is a zip archive, as model.save("name.keras") writes it)',
    ),
    "bad log.csv": (
        "log.csv",
        "epoch,loss\nfirst,1.0\n",
        "{run}/log.csv: --resume: log.csv is not the log of a surgery run (row 2 holds 'first,1.0': an "
        "epoch number and figures)",
    ),
    "log.csv of blank lines": (
        "log.csv",
        "\n\n\n",
        "{run}/log.csv: --resume: log.csv is not the log of a surgery run (its first row must be the header "
        "epoch,<metric>,..., not '')",
    ),
    "log.csv row of another width": (
        "log.csv",
        "epoch,loss,accuracy\n1,0.5\n",
        "{run}/log.csv: --resume: log.csv is not the log of a surgery run (row 2 has 2 columns, the header 3)",
    ),
}


@pytest.mark.parametrize("case", sorted(RESUME_DAMAGE))
def test_resume_on_a_damaged_run_folder(cli, tmp_path, images, interrupted_run, case):
    import shutil

    spec, original = interrupted_run
    run = tmp_path / "run"
    shutil.copytree(original, run)
    relative, content, expected = RESUME_DAMAGE[case]
    if content == "STATE_WITH_STRING_EPOCHS":
        content = json.dumps({**json.loads((run / relative).read_text()), "epochs_done": "1"})
    if content == "STATE_WITH_A_WORD_FOR_EPOCHS":
        state = json.loads((run / relative).read_text())
        state["fingerprint"]["train"]["stages"][1]["epochs"] = "two"
        content = json.dumps(state)
    _damage(run, relative, content)
    result = cli("train", spec, "--data", images["train"], "-o", run, "--resume")
    assert result.exit_code == 2, result.output
    assert assert_one_error_line(result.stderr) == "error: " + expected.format(run=run)


def test_resume_names_the_option_that_differs(cli, tmp_path, images, interrupted_run):
    import shutil

    spec, original = interrupted_run
    run = tmp_path / "run"
    shutil.copytree(original, run)
    result = cli("train", spec, "--data", images["train"], "-o", run, "--resume", "--batch-size", "2")
    assert result.exit_code == 2
    assert assert_one_error_line(result.stderr) == (
        f"error: {run}: --resume: batch_size differs from the run in this folder (4 then, 2 now); resume with the "
        "same batch_size, or start over with --force"
    )


def test_one_class_of_data(cli, tmp_path, backbone):
    from helpers import tiny_spec, write_pngs

    data = write_pngs(tmp_path / "one", 2, classes={"red": (200, 40, 40)})
    spec = write_spec(tmp_path, tiny_spec(backbone, [{"epochs": 1}], units=1, validation_split=0.0))
    result = cli("train", spec, "--data", data, "-o", tmp_path / "run")
    assert result.exit_code == 2
    assert assert_one_error_line(result.stderr) == (
        f"error: {spec}: the data has 1 class (red); a classifier learns to tell classes apart, so give it at "
        "least 2 (one subfolder per class, or 2 distinct labels in y)"
    )


def _read_only_probe() -> bool:
    import subprocess

    probe = subprocess.run(
        ["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o ro tmpfs /mnt && ! touch /mnt/x"], capture_output=True
    )
    return probe.returncode == 0


def test_train_into_a_read_only_file_system(tmp_path, images, backbone, monkeypatch, cli):
    """In a private mount namespace with a read-only tmpfs where user namespaces allow it; else the same check
    against a folder whose file system reports read-only (statvfs and access patched)."""
    import subprocess
    import sys

    from helpers import tiny_spec

    spec = write_spec(tmp_path, tiny_spec(backbone, [{"epochs": 1}], validation_split=0.0))
    expected = "error: {ro}/run: -o: cannot create the run folder: {ro} is on a read-only file system"
    if _read_only_probe():
        script = (
            f"mkdir -p {tmp_path}/ro && mount -t tmpfs -o ro tmpfs {tmp_path}/ro && "
            f"{sys.executable} -m surgery train {spec} --data {images['train']} -o {tmp_path}/ro/run"
        )
        done = subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True, timeout=120)
        stderr, code = done.stderr, done.returncode
    else:
        import os

        ro = tmp_path / "ro"
        ro.mkdir()
        real_access, real_statvfs = os.access, os.statvfs
        monkeypatch.setattr(os, "access", lambda p, m, **k: False if str(p) == str(ro) else real_access(p, m, **k))
        monkeypatch.setattr(
            os, "statvfs", lambda p: type("S", (), {"f_flag": os.ST_RDONLY})() if str(p) == str(ro) else real_statvfs(p)
        )
        result = cli("train", spec, "--data", images["train"], "-o", ro / "run")
        stderr, code = result.stderr, result.exit_code
    assert code == 2, stderr
    assert assert_one_error_line(stderr) == expected.format(ro=tmp_path / "ro")


@pytest.mark.parametrize(
    "args,expected",
    [
        (["apply"], "error: Missing argument 'SPEC'. (see `surgery apply --help`)"),
        (["nope"], "error: No such command 'nope'. (see `surgery --help`)"),
        (
            ["train", "s.json", "--validation-split", "nan"],
            "error: Invalid value for '--validation-split': 'nan' is not a finite number (see `surgery train --help`)",
        ),
        (
            ["apply", "s.json", "--atol", "inf"],
            "error: Invalid value for '--atol': 'inf' is not a finite number (see `surgery apply --help`)",
        ),
        (
            ["export", "m.keras", "--to", "onnx", "--atol", "-1"],
            "error: Invalid value for '--atol': -1.0 is not in the range x>=0. (see `surgery export --help`)",
        ),
    ],
)
def test_usage_errors_are_one_line(cli, args, expected):
    done = cli(*args)
    assert done.exit_code == 2
    assert assert_one_error_line(done.stderr) == expected


@pytest.mark.slow  # a 1,200-layer model built, saved and loaded: the full suite runs it
def test_a_model_deeper_than_pythons_default_recursion_bound_builds_and_saves(cli, tmp_path, keras):
    # Keras walks a functional graph one frame per layer of depth; 1,200 is past Python's default 1,000.
    x = inputs = keras.Input((4,))
    for n in range(1200):
        x = keras.layers.Identity(name=f"id{n}")(x)
    keras.Model(inputs, x).save(tmp_path / "chain.keras")
    spec = {
        "surgery": 1,
        "name": "deep",
        "steps": [
            {"op": "backbone", "name": "keras_file", "path": str(tmp_path / "chain.keras")},
            {"op": "append", "layer": "Dense", "config": {"units": 3}, "name": "head"},
        ],
    }
    result = cli("apply", write_spec(tmp_path, spec), "-o", tmp_path / "deep.keras")
    assert result.exit_code == 0, result.stderr
    assert len(keras.saving.load_model(tmp_path / "deep.keras").layers) == 1202


def test_a_spec_over_the_step_limit_is_refused_before_tensorflow(cli, tmp_path):
    from surgery.spec.schema import MAX_STEPS

    spec = seed_spec()
    spec["steps"] += [{"op": "append", "layer": "Dense", "config": {"units": 2}}] * (MAX_STEPS + 1 - len(spec["steps"]))
    result = cli("validate", write_spec(tmp_path, spec))
    assert result.exit_code == 2
    assert assert_one_error_line(result.stderr) == (
        f"error: {tmp_path / 'spec.json'}: steps: has {MAX_STEPS + 1} items; expected at most {MAX_STEPS}"
    )
