"""The command line as a user runs it: light commands stay light, apply prints and writes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import ROOT, SPECS, assert_one_error_line, load_spec_json, run_surgery, with_weights, write_spec

NO_TF = """
import sys
from surgery.cli import main
try:
    main({args!r}, standalone_mode=False)
except SystemExit:
    pass
loaded = sorted(m for m in ("tensorflow", "keras", "keras_hub") if m in sys.modules)
print("LOADED:" + ",".join(loaded))
"""


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["validate", str(SPECS / "vgg16_cut_extend.json")],
        ["validate", str(SPECS / "dinov2_linear_probe.json")],
        ["plugins"],
        ["ops"],
        ["backbones"],
        ["backbones", "mobile*", "--json"],
        ["backbones", "--presets", "dinov2*"],
        ["ops", "--json"],
        ["schema"],
        ["apply", "--help"],
    ],
)
def test_light_commands_do_not_import_tensorflow(args):
    out = subprocess.run([sys.executable, "-c", NO_TF.format(args=args)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "LOADED:"


def test_version(cli):
    out = cli("--version")
    assert out.exit_code == 0 and "surgery" in out.stdout


def test_validate_ok_and_says_what_it_left(cli):
    out = cli("validate", SPECS / "resnet50_cut.json")
    assert out.exit_code == 0, out.stderr
    assert out.stdout.startswith("ok: ")
    assert "not checked until" in out.stdout


def test_validate_counts_in_words(cli, tmp_path):
    one = write_spec(tmp_path, {"surgery": 1, "steps": [{"op": "backbone", "name": "vgg16", "weights": None}]})
    out = cli("validate", one)
    assert out.exit_code == 0, out.stderr
    assert f"ok: {one}: 1 step; checked" in out.stdout
    assert (
        f"{len(json.loads((SPECS / 'resnet50_cut.json').read_text())['steps'])} steps; checked"
        in cli("validate", SPECS / "resnet50_cut.json").stdout
    )


def _train_spec(**train):
    return {"surgery": 1, "steps": [{"op": "backbone", "name": "vgg16", "weights": None}], "train": train}


def test_validate_refuses_a_monitored_metric_the_run_does_not_log(cli, tmp_path):
    spec = write_spec(tmp_path, _train_spec(stages=[{"epochs": 2, "early_stopping": {"monitor": "val_acc"}}]))
    out = cli("validate", spec)
    assert out.exit_code == 2, out.stderr
    assert_one_error_line(out.stderr)
    assert "train.stages[0].early_stopping" in out.stderr
    assert '"val_acc" is not logged by this run; use one of loss, accuracy, val_loss, val_accuracy' in out.stderr
    # Without validation data nothing val_ is logged: the default monitor is then accuracy, and val_loss is refused.
    spec = write_spec(tmp_path, _train_spec(validation_split=0, monitor="val_loss"))
    out = cli("validate", spec)
    assert out.exit_code == 2 and '"val_loss" is not logged' in out.stderr and "train.monitor" in out.stderr


def test_validate_resolves_the_stages_as_train_does(cli, tmp_path):
    schedule = {"type": "cosine", "warmup_epochs": 3}
    spec = write_spec(tmp_path, _train_spec(stages=[{"epochs": 3, "schedule": schedule}]))
    out = cli("validate", spec)
    assert out.exit_code == 2, out.stderr
    assert_one_error_line(out.stderr, "train.stages[0].schedule", "warmup_epochs 3 leaves none of the stage's 3 epochs")


def test_validate_checks_training_options_without_tensorflow(tmp_path):
    spec = write_spec(
        tmp_path,
        _train_spec(
            data="photos", metrics=["auc"], stages=[{"epochs": 3, "reduce_lr_on_plateau": {"monitor": "val_auc"}}]
        ),
    )
    out = subprocess.run(
        [sys.executable, "-c", NO_TF.format(args=["validate", str(spec)])], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert "the training options and the metrics they monitor" in out.stdout
    assert out.stdout.strip().splitlines()[-1] == "LOADED:"


def test_every_example_spec_validates(cli):
    # digits_transfer.json needs a model trained first; test_own_saved_model_as_backbone validates it.
    for spec in sorted(set(SPECS.glob("*.json")) - {SPECS / "digits_transfer.json"}):
        out = cli("validate", spec)
        assert out.exit_code == 0, f"{spec.name}: {out.stderr}"


def test_apply_prints_table_and_writes(cli, tmp_path, vgg16_notop_weights):
    result = cli("apply", SPECS / "vgg16_cut_extend.json", "--weights", vgg16_notop_weights, "-o", tmp_path / "out")
    assert result.exit_code == 0, result.stderr
    text = result.stdout
    for fragment in (
        "block3_pool",
        "Total params: 1,852,514",
        "Trainable params: 555,328",
        "Non-trainable params: 1,297,186",
        "output shape",
        "trainable",
    ):
        assert fragment in text
    written = tmp_path / "out" / "vgg16_cut_extend.keras"
    assert written.exists() and f"wrote {written}" in text
    assert not [p for p in written.parent.iterdir() if p.name.startswith(".")]  # no temporary left over
    # an existing output is kept unless --force
    before = written.stat().st_mtime_ns
    again = cli("apply", SPECS / "vgg16_cut_extend.json", "--weights", "none", "-o", written)
    assert again.exit_code == 2
    assert_one_error_line(again.stderr, str(written), "already exists", "--force")
    assert written.stat().st_mtime_ns == before
    forced = cli("apply", SPECS / "vgg16_cut_extend.json", "--weights", "none", "-o", written, "--force")
    assert forced.exit_code == 0, forced.stderr
    assert written.stat().st_mtime_ns != before


def test_saved_model_loads_with_plain_keras(cli, tmp_path, keras):
    out = tmp_path / "m.keras"
    assert cli("apply", SPECS / "vgg16_cut_extend.json", "--weights", "none", "-o", out).exit_code == 0
    model = keras.saving.load_model(str(out), safe_mode=True)
    assert model.count_params() == 1_852_514
    assert sum(int(w.numpy().size) for w in model.trainable_weights) == 555_328


@pytest.mark.slow
def test_apply_is_quiet_and_fast_to_fail(tmp_path):
    """A normal run shows no TensorFlow start-up noise on stderr."""
    out = run_surgery("apply", SPECS / "vgg16_cut_extend.json", "--weights", "none", "-o", tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stderr.strip() == ""
    assert "Total params: 1,852,514" in out.stdout


def test_spec_outputs_resolve_against_spec_folder(cli, tmp_path):
    spec = with_weights(load_spec_json("vgg16_cut_extend.json"), None)
    spec["outputs"] = {"keras": "models/seed.keras"}
    (tmp_path / "models").mkdir()
    path = write_spec(tmp_path, spec)
    result = cli("apply", path)
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "models" / "seed.keras").exists()


@pytest.mark.slow
def test_own_saved_model_as_backbone(cli, tmp_path, keras):
    """specs/digits_transfer.json: the develop-a-model approach from a .keras file."""
    sys.path.insert(0, str(ROOT / "examples" / "digits"))
    try:
        from source_model import train_source
    finally:
        sys.path.pop(0)
    (tmp_path / "out" / "digits").mkdir(parents=True)
    (tmp_path / "specs").mkdir()
    source = train_source(tmp_path / "out" / "digits" / "source.keras", epochs=1)  # the path the spec names
    shutil.copy(SPECS / "digits_transfer.json", tmp_path / "specs")
    assert cli("validate", tmp_path / "specs" / "digits_transfer.json").exit_code == 0
    result = cli("apply", tmp_path / "specs" / "digits_transfer.json", "-o", tmp_path / "out" / "t.keras")
    assert result.exit_code == 0, result.stderr
    model = keras.saving.load_model(str(tmp_path / "out" / "t.keras"))
    assert [lay.name for lay in model.layers][-2:] == ["features", "digits_5_9"]
    assert tuple(model.output.shape) == (None, 5)
    src_w = source.get_layer("features").get_weights()
    for a, b in zip(model.get_layer("features").get_weights(), src_w):
        assert (a == b).all()
    trainable = [lay.name for lay in model.layers if lay.trainable_weights]
    assert trainable == ["digits_5_9"]


@pytest.mark.slow
def test_imagenet_offline_fails_fast_with_advice(tmp_path):
    spec = load_spec_json("vgg16_cut_extend.json")  # weights "imagenet"
    path = write_spec(tmp_path, spec)
    cache = tmp_path / "keras_home"
    # A proxy on a closed local port makes any download fail at once, network or not.
    env = {"KERAS_HOME": str(cache), "https_proxy": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9"}
    started = time.monotonic()
    out = run_surgery("apply", path, "-o", tmp_path / "m.keras", env=env)
    assert time.monotonic() - started < 60
    assert out.returncode == 2
    line = assert_one_error_line(
        out.stderr, "steps[0] (backbone)", "could not download the ImageNet weights", str(cache / "models"), '"weights"'
    )
    assert "local weights file" in line
    # Only the error: not Keras' "Downloading data from https://..." line before it.
    assert out.stdout == "", out.stdout
    assert not (tmp_path / "m.keras").exists()


def test_report_names_the_model_file_of_a_keras_file_backbone(cli, tmp_path, keras):
    inputs = keras.Input((8, 8, 1))
    keras.Model(inputs, keras.layers.Flatten(name="flat")(inputs)).save(str(tmp_path / "src.keras"))
    spec = write_spec(
        tmp_path, {"surgery": 1, "steps": [{"op": "backbone", "name": "keras_file", "path": "src.keras"}]}
    )
    result = cli("apply", spec, "-o", tmp_path / "m.keras")
    assert result.exit_code == 0, result.stderr
    assert "keras_file: 2 layers, 0 params (from src.keras)" in result.stdout


def test_trainable_column_counts_batchnorm_statistics_as_never_trainable(cli, tmp_path):
    spec = write_spec(
        tmp_path,
        {
            "surgery": 1,
            "steps": [
                {
                    "op": "backbone",
                    "name": "mobilenetv2",
                    "weights": None,
                    "include_top": False,
                    "input_shape": [32, 32, 3],
                },
                {"op": "freeze", "names": ["Conv1"]},
            ],
        },
    )
    result = cli("apply", spec, "-o", tmp_path / "m.keras")
    assert result.exit_code == 0, result.stderr
    rows = {line.split()[1]: line.split()[-1] for line in result.stdout.splitlines() if line[:4].strip().isdigit()}
    assert rows["Conv1"] == "no"
    assert rows["bn_Conv1"] == "yes"  # gamma and beta train; its moving statistics never do
    assert rows["Conv1_relu"] == "-"


def test_output_closed_early_is_not_an_error():
    """`surgery schema | head -1`: the reader goes away; no traceback, no internal error."""
    proc = subprocess.Popen([sys.executable, "-m", "surgery", "schema"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.readline()
    proc.stdout.close()
    _, err = proc.communicate(timeout=60)
    assert err.decode().strip() == ""
    assert proc.returncode == 0


def test_apply_passes_onnx_options_and_names_the_output_in_errors(cli, tmp_path):
    spec = write_spec(
        tmp_path,
        {
            "surgery": 1,
            "steps": [
                {"op": "backbone", "name": "vgg16", "weights": None, "include_top": False, "input_shape": [32, 32, 3]},
                {"op": "slice", "layers": ":4"},
            ],
        },
    )
    ok = cli("apply", spec, "-o", tmp_path / "a.keras", "--onnx", tmp_path / "a.onnx", "--opset", "13")
    assert ok.exit_code == 0, ok.stderr
    assert "opset 13" in ok.stdout
    bad = cli("apply", spec, "-o", tmp_path / "b.keras", "--onnx", tmp_path / "b.onnx", "--opset", "99")
    assert bad.exit_code == 2
    assert_one_error_line(bad.stderr, f"error: {tmp_path / 'b.onnx'}: output onnx: ")
    assert not (tmp_path / "b.onnx").exists()
    assert not (tmp_path / "b.keras").exists()  # all outputs or none


def test_onnx_may_go_into_the_folder_o_creates_but_no_other_new_folder(cli, tmp_path):
    spec = write_spec(
        tmp_path,
        {
            "surgery": 1,
            "name": "small",
            "steps": [
                {"op": "backbone", "name": "vgg16", "weights": None, "include_top": False, "input_shape": [32, 32, 3]},
                {"op": "slice", "layers": ":4"},
            ],
        },
    )
    typo = cli("apply", spec, "-o", tmp_path / "out", "--onnx", tmp_path / "ouy" / "small.onnx")
    assert typo.exit_code == 2
    assert_one_error_line(typo.stderr, f"the folder {tmp_path / 'ouy'} does not exist")
    assert not (tmp_path / "out").exists() and not (tmp_path / "ouy").exists()
    ok = cli("apply", spec, "-o", tmp_path / "out", "--onnx", tmp_path / "out" / "small.onnx")
    assert ok.exit_code == 0, ok.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["small.keras", "small.onnx"]


# specs/ with --weights none (issue 15): every spec builds offline. Timed in one process on 2 cores: these
# three take under a second each; the others 1.5-5.5 s (and write 35-540 MB), so they run in the full suite.
QUICK_SPECS = {"digits_transfer.json", "vgg16_cut_extend.json", "vgg16_grayscale.json"}
# Even their architecture comes from a KerasHub preset; test_hub.py runs them from a preset folder made there.
HUB_SPECS = {"dinov2_linear_probe.json", "siglip_vision_head.json", "vit_lora.json"}


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(p.name, marks=[] if p.name in QUICK_SPECS else [pytest.mark.slow])
        for p in sorted(SPECS.glob("*.json"))
        if p.name not in HUB_SPECS
    ],
)
def test_every_spec_applies_with_weights_none(cli, tmp_path, keras, name):
    spec = SPECS / name
    if name == "digits_transfer.json":
        # Its keras_file backbone reads the architecture from the file examples/digits/source_model.py writes,
        # named relative to the spec: a copy of the layout, with the source model untrained (no weights used).
        sys.path.insert(0, str(ROOT / "examples" / "digits"))
        try:
            from source_model import DEFAULT_PATH, build_source
        finally:
            sys.path.pop(0)
        (tmp_path / "specs").mkdir()
        spec = Path(shutil.copy(spec, tmp_path / "specs"))
        source = tmp_path / DEFAULT_PATH
        source.parent.mkdir(parents=True)
        build_source(keras).save(str(source))
        assert cli("validate", spec).exit_code == 0
    result = cli("apply", spec, "--weights", "none", "-o", tmp_path / "model.keras")
    assert result.exit_code == 0, result.stderr
    assert "(random init)" in result.stdout.splitlines()[0]
    assert (tmp_path / "model.keras").stat().st_size > 0
    (tmp_path / "model.keras").unlink()  # up to 540 MB


class _Pipeline:
    """Stands for what a failed command's frames hold: a training run's data pipeline and its threads."""


def _terminated():
    from surgery.errors import Terminated

    raise Terminated(15)


def _stopped_as_train_is():
    from surgery.training.result import Interrupted

    try:
        raise KeyboardInterrupt
    except KeyboardInterrupt:
        raise Interrupted("interrupted after 2 epochs; continue with --resume") from None


@pytest.mark.parametrize(
    ("raise_it", "code"),
    [
        (_terminated, 143),
        (_stopped_as_train_is, 130),
        (lambda: 1 / 0, 1),
    ],
    ids=["sigterm", "error-raised-in-a-handler", "bug"],
)
def test_a_failed_command_frees_its_frames_before_it_exits(raise_it, code):
    """An exit raised while the error is being handled keeps the error as its context, and with it every frame
    it passed through, until the interpreter shuts down: a terminated training run then hung there (TF's
    pipeline threads waiting for the finaliser). The command's frames must be gone when it exits."""
    import weakref

    import click

    from surgery.cli.common import guarded

    alive = []

    @click.command()
    @guarded
    def command():
        pipeline = _Pipeline()
        alive.append(weakref.ref(pipeline))
        raise_it()

    with pytest.raises(SystemExit) as exited:
        command.main([], standalone_mode=False)
    assert exited.value.code == code
    assert exited.value.__context__ is None
    assert alive[0]() is None, "the failed command's frames outlive its exit"
