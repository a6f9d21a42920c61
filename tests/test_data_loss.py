"""surgery destroys nothing it did not create: --force replaces only its own files, an output is never one of the
command's inputs, two runs cannot both write one output, and a signal leaves nothing half-written behind."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from fault_plugins import Hold

from surgery.errors import SurgeryError
from surgery.io.writing import atomic_output

from helpers import SPECS, assert_one_error_line, tiny_spec, wait_for_epochs, write_spec

VGG_SMALL = {"op": "backbone", "name": "vgg16", "weights": None, "include_top": False, "input_shape": [32, 32, 3]}


def small_spec(folder, **extra):
    return write_spec(
        folder, {"surgery": 1, "name": "m", "steps": [VGG_SMALL, {"op": "slice", "layers": ":4"}], **extra}
    )


# --- train --force ---------------------------------------------------------------------------------


def test_train_force_leaves_a_folder_surgery_did_not_make_alone(cli, tmp_path, images, backbone):
    run = tmp_path / "mine"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "important.ckpt").write_text("my weights")
    (run / "tensorboard").mkdir()
    (run / "log.csv").write_text("epoch,loss\n0,1.0\n")
    spec = write_spec(tmp_path, tiny_spec(backbone, [{"epochs": 1}], validation_split=0.0))
    result = cli("train", spec, "--data", images["train"], "-o", run, "--force")
    assert result.exit_code == 2
    assert_one_error_line(result.stderr, "surgery did not make this folder", "--force removes only")
    assert (run / "checkpoints" / "important.ckpt").read_text() == "my weights"
    assert (run / "log.csv").read_text() == "epoch,loss\n0,1.0\n"
    assert (run / "tensorboard").is_dir()


@pytest.mark.slow
def test_train_force_on_a_run_removes_only_the_runs_files(cli, tmp_path, images, backbone):
    spec = write_spec(tmp_path, tiny_spec(backbone, [{"epochs": 1}], validation_split=0.0))
    run = tmp_path / "run"
    assert cli("train", spec, "--data", images["train"], "-o", run).exit_code == 0
    (run / "notes.txt").write_text("mine")
    (run / "checkpoints" / "keep.me").write_text("mine too")
    (run / "tensorboard" / "my_plot.png").write_bytes(b"png")
    first = sorted(p.name for p in (run / "tensorboard").rglob("events.out.tfevents.*"))
    assert first
    result = cli("train", spec, "--data", images["train"], "-o", run, "--force")
    assert result.exit_code == 0, result.stderr
    assert (run / "notes.txt").read_text() == "mine"
    assert (run / "checkpoints" / "keep.me").read_text() == "mine too"
    assert (run / "tensorboard" / "my_plot.png").read_bytes() == b"png"
    assert not set(first) & {p.name for p in (run / "tensorboard").rglob("events.out.tfevents.*")}
    assert (run / "tiny.keras").is_file() and (run / ".surgery").is_file()


# --- --force replaces regular files only -----------------------------------------------------------


def _special_targets(tmp_path):
    fifo = tmp_path / "pipe.keras"
    os.mkfifo(fifo)
    link = tmp_path / "link.keras"
    (tmp_path / "real.keras").write_text("the link's target")
    link.symlink_to(tmp_path / "real.keras")
    folder = tmp_path / "folder.keras"
    folder.mkdir()
    (folder / "inside.txt").write_text("someone's folder")
    targets = {fifo: "is a FIFO", link: "is a symbolic link", folder: "surgery did not write"}
    if os.geteuid() == 0:  # only root may make a device node; /dev itself is never a target of a test
        device = tmp_path / "null.keras"
        os.mknod(device, stat.S_IFCHR | 0o666, os.makedev(1, 3))
        targets[device] = "is a character device"
    return targets


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, images, backbone):
    """A finished one-epoch run of the tiny spec (named "tiny"), copied by the tests that change it."""
    from surgery import train

    root = tmp_path_factory.mktemp("finished")
    spec = write_spec(root, tiny_spec(backbone, [{"epochs": 1}], validation_split=0.0))
    train(spec, str(images["train"]), root / "run", echo=None, verbose=0)
    return spec, root / "run"


def _copy_run(finished_run, tmp_path):
    import shutil

    spec, run = finished_run
    return spec, Path(shutil.copytree(run, tmp_path / "run", symlinks=True))


def _tree(folder):
    return sorted((str(p.relative_to(folder)), p.is_symlink()) for p in folder.rglob("*"))


@pytest.mark.parametrize(
    "link",
    ["checkpoints", "log.csv", "checkpoints/epoch-0001.keras", "tensorboard", "tiny.keras", "classes.json"],
)
@pytest.mark.parametrize("mode", ["--force", "--resume"])
def test_a_link_in_a_run_folder_is_refused_and_what_it_points_to_survives(
    cli, tmp_path, images, finished_run, link, mode
):
    """A colleague's run folder with a link in it: --force would follow checkpoints/ out of the folder and
    delete a checkpoint there that surgery never wrote; a resume would write through it. Refused before
    anything is removed or written, on either side of the link."""
    spec, run = _copy_run(finished_run, tmp_path)
    outside = tmp_path / "elsewhere"
    original = run / link
    if original.is_dir():
        os.rename(original, outside)
    else:
        outside.mkdir()
        os.rename(original, outside / original.name)
        outside = outside / original.name
    (outside if outside.is_dir() else outside.parent).joinpath("epoch-0007.keras").write_bytes(b"not surgery's")
    os.symlink(outside, original)
    before_run, before_outside = _tree(run), _tree(outside.parent)
    result = cli(
        "train", spec, "--data", images["train"], "-o", run, mode, *(["--epochs", "2"] if mode == "--resume" else [])
    )
    assert result.exit_code == 2, result.output
    assert_one_error_line(result.stderr, f"{link} is a symbolic link; nothing in a run folder may point out of it")
    assert _tree(run) == before_run and _tree(outside.parent) == before_outside
    assert (outside if outside.is_dir() else outside.parent).joinpath(
        "epoch-0007.keras"
    ).read_bytes() == b"not surgery's"


def test_a_folder_where_the_run_writes_its_model_is_refused_before_training(cli, tmp_path, images, finished_run):
    spec, run = _copy_run(finished_run, tmp_path)
    (run / "tiny.keras").unlink()
    (run / "tiny.keras").mkdir()
    result = cli("train", spec, "--data", images["train"], "-o", run, "--force")
    assert result.exit_code == 2
    assert_one_error_line(result.stderr, "tiny.keras is a folder, where a run writes a file")
    assert "Epoch" not in result.output and (run / "checkpoints" / "epoch-0001.keras").is_file()


def test_train_does_not_overwrite_the_model_it_starts_from(cli, tmp_path, images, finished_run):
    """A spec named "tiny" built from run/tiny.keras, trained into run/ again: the final model would replace
    the source model."""
    spec_file, run = _copy_run(finished_run, tmp_path)
    source = json.loads(Path(spec_file).read_text())
    source["steps"][0] = {"op": "backbone", "name": "keras_file", "path": str(run / "tiny.keras")}
    source["steps"] = source["steps"][:1]
    spec = write_spec(tmp_path, source, "again.json")
    before = (run / "tiny.keras").read_bytes()
    result = cli("train", spec, "--data", images["train"], "-o", run, "--force")
    assert result.exit_code == 2
    assert_one_error_line(result.stderr, "tiny.keras", "is also an input of this command")
    assert (run / "tiny.keras").read_bytes() == before


def test_force_with_a_renamed_spec_keeps_the_users_file_of_that_name(cli, tmp_path, images, finished_run):
    """The marker says the run wrote tiny.keras; other.keras is the user's, and a spec named "other" would
    replace it."""
    spec_file, run = _copy_run(finished_run, tmp_path)
    (run / "other.keras").write_bytes(b"my own model")
    renamed = {**json.loads(Path(spec_file).read_text()), "name": "other"}
    spec = write_spec(tmp_path, renamed, "other.json")
    result = cli("train", spec, "--data", images["train"], "-o", run, "--force")
    assert result.exit_code == 2
    assert_one_error_line(
        result.stderr, "holds other.keras, which the run in this folder did not write (its model is tiny.keras)"
    )
    assert (run / "other.keras").read_bytes() == b"my own model" and (run / "tiny.keras").is_file()


@pytest.mark.parametrize("inside", [".", "runs/new"])
def test_a_run_inside_its_data_folder_is_refused(cli, tmp_path, images, backbone, inside):
    import shutil

    data = Path(shutil.copytree(images["train"], tmp_path / "data"))
    spec = write_spec(tmp_path, tiny_spec(backbone, [{"epochs": 1}], validation_split=0.0))
    result = cli("train", spec, "--data", data, "-o", data / inside)
    assert result.exit_code == 2
    assert_one_error_line(result.stderr, f"is inside the data folder {data}, whose subfolders are its classes")
    assert sorted(p.name for p in data.iterdir()) == ["blue", "green", "red"]


def test_force_replaces_no_fifo_device_link_or_foreign_folder(cli, tmp_path):
    spec = small_spec(tmp_path)
    for target, why in _special_targets(tmp_path).items():
        kind = os.lstat(target).st_mode
        result = cli("apply", spec, "-o", target, "--force")
        assert result.exit_code == 2, (target, result.output)
        assert_one_error_line(result.stderr, why)
        assert os.lstat(target).st_mode == kind
    os.mkfifo(tmp_path / "m.onnx")
    result = cli("apply", spec, "-o", tmp_path / "m.keras", "--onnx", tmp_path / "m.onnx", "--force")
    assert result.exit_code == 2
    assert_one_error_line(result.stderr, "output onnx", "is a FIFO")
    assert stat.S_ISFIFO(os.lstat(tmp_path / "m.onnx").st_mode)
    assert (tmp_path / "real.keras").read_text() == "the link's target"
    assert (tmp_path / "folder.keras" / "inside.txt").read_text() == "someone's folder"
    assert not (tmp_path / "m.keras").exists()


def test_force_replaces_a_regular_file(cli, tmp_path):
    spec = small_spec(tmp_path)
    (tmp_path / "m.keras").write_text("old")
    result = cli("apply", spec, "-o", tmp_path / "m.keras", "--force")
    assert result.exit_code == 0, result.stderr
    assert zipfile.is_zipfile(tmp_path / "m.keras")


# --- an output is never an input ------------------------------------------------------------------


def test_apply_does_not_overwrite_its_source_model(cli, tmp_path, backbone):
    source = tmp_path / "source.keras"
    source.write_bytes(backbone.read_bytes())
    spec = write_spec(
        tmp_path, {"surgery": 1, "steps": [{"op": "backbone", "name": "keras_file", "path": "source.keras"}]}
    )
    before = source.read_bytes()
    for args in (["-o", source], ["-o", tmp_path / "linked.keras"]):
        if args[-1].name == "linked.keras":
            os.link(source, args[-1])  # another name for the same file
        result = cli("apply", spec, *args, "--force")
        assert result.exit_code == 2
        assert_one_error_line(result.stderr, "is also an input of this command")
    assert source.read_bytes() == before


def test_features_does_not_overwrite_its_dataset(cli, tmp_path, backbone):
    x = np.zeros((4, 16, 16, 3), "float32")
    np.savez(tmp_path / "d.npz", x=x, y=np.array([0, 1, 0, 1]))
    before = (tmp_path / "d.npz").read_bytes()
    result = cli("features", backbone, "--data", tmp_path / "d.npz", "-o", tmp_path / "d.npz", "--force")
    assert result.exit_code == 2
    assert_one_error_line(result.stderr, "is also an input of this command")
    assert (tmp_path / "d.npz").read_bytes() == before


# --- placement: one rename, never a copy; no clobbering without --force -----------------------------


def test_the_final_placement_is_a_rename_of_the_written_file(tmp_path):
    target = tmp_path / "out.keras"
    with atomic_output(target) as tmp:
        Path(tmp).write_bytes(os.urandom(1 << 20))
        inode = os.stat(tmp).st_ino
    assert os.stat(target).st_ino == inode  # a copy would be another inode
    assert not [p for p in tmp_path.iterdir() if p != target]


def test_a_second_writer_does_not_clobber_the_first(tmp_path):
    target = tmp_path / "out.keras"
    with pytest.raises(SurgeryError, match="already exists"):
        with atomic_output(target) as slow:
            Path(slow).write_text("slow")
            with atomic_output(target) as fast:  # starts later, finishes first
                Path(fast).write_text("fast")
    assert target.read_text() == "fast"
    assert [p.name for p in tmp_path.iterdir()] == ["out.keras"]
    with atomic_output(target, force=True) as tmp:
        Path(tmp).write_text("forced")
    assert target.read_text() == "forced"


@pytest.mark.slow
def test_two_runs_to_one_output_do_not_both_succeed(tmp_path):
    out = tmp_path / "m.keras"
    cmd = [
        sys.executable,
        "-m",
        "surgery",
        "apply",
        str(SPECS / "vgg16_cut_extend.json"),
        "--weights",
        "none",
        "-o",
        str(out),
    ]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.wait(timeout=300), p.stdout.read(), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _, _ in results)
    assert codes == [0, 2], results
    loser = next(err for code, _, err in results if code == 2)
    assert_one_error_line(loser, "already exists")
    with zipfile.ZipFile(out) as archive:
        assert archive.testzip() is None
    assert [p.name for p in tmp_path.iterdir()] == ["m.keras"]


# --- signals -----------------------------------------------------------------------------------------


def _wait_for(predicate, proc, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if predicate():
            return True
        time.sleep(0.005)
    return False


@pytest.mark.slow
@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_a_signal_during_the_save_leaves_nothing_behind(tmp_path, sig, code):
    """The signal lands while the second output is half written (the .keras one is already whole)."""
    hold = Hold(tmp_path / "hold")
    out = tmp_path / "out"
    out.mkdir()
    spec = write_spec(
        tmp_path,
        {
            "surgery": 1,
            "name": "m",
            "steps": [VGG_SMALL, {"op": "slice", "layers": ":4"}],
            "outputs": {"keras": "out/m.keras", "hold": "out/m.hold"},
        },
    )
    proc = hold.start("apply", spec, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        hold.held(proc)
        assert sorted(p.suffix for p in out.iterdir()) == [".hold", ".keras"]  # both partial files exist
        proc.send_signal(sig)
        assert proc.wait(timeout=60) == code
    finally:
        hold.release()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert_one_error_line(proc.stderr.read(), "terminated; no output was written")
    assert list(out.iterdir()) == []


@pytest.mark.slow
def test_sigterm_during_training_removes_the_feature_cache(tmp_path, images, backbone):
    cache_root = tmp_path / "tmp"
    cache_root.mkdir()
    spec = write_spec(
        tmp_path, tiny_spec(backbone, [{"epochs": 5000}], validation_split=0.0, feature_cache_memory_mb=0)
    )
    run = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "surgery", "train", str(spec), "--data", str(images["train"]), "-o", str(run)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "TMPDIR": str(cache_root)},
    )
    wait_for_epochs(run / "checkpoints" / "state.json", 2, proc)
    assert any(cache_root.iterdir()), "the run kept its features in memory; the test needs the disk cache"
    proc.send_signal(signal.SIGTERM)
    # communicate, not wait: the run's output must be read while it stops, or a full pipe could hold it.
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143
    assert_one_error_line(stderr, "terminated after", "--resume")
    assert list(cache_root.iterdir()) == []
    state = json.loads((run / "checkpoints" / "state.json").read_text())
    assert not state["finished"] and state["epochs_done"] >= 2


@pytest.mark.slow
def test_resume_after_sigterm_continues(cli, tmp_path, images, backbone):
    spec = write_spec(tmp_path, tiny_spec(backbone, [{"epochs": 60}], validation_split=0.0))
    run = tmp_path / "run"
    args = ["train", spec, "--data", images["train"], "-o", run]
    proc = subprocess.Popen(
        [sys.executable, "-m", "surgery", *map(str, args)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        wait_for_epochs(run / "checkpoints" / "state.json", 2, proc)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    finally:  # a run that does not stop must not outlive the test
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 143, stderr
    done = cli(*args, "--resume")
    assert done.exit_code == 0, done.stderr
    assert json.loads((run / "checkpoints" / "state.json").read_text())["finished"]


def _strict(text):
    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


@pytest.mark.slow
def test_a_diverged_run_writes_strict_json_and_resumes(cli, tmp_path, images, backbone):
    """A rate of 1e38 (within float32) makes the loss inf: it is never the best, state.json stays JSON (no
    NaN or Infinity in it) and the run resumes."""
    stage = {"epochs": 2, "learning_rate": 1e38, "optimizer": "sgd"}
    spec = write_spec(tmp_path, tiny_spec(backbone, [stage], validation_split=0.0))
    run = tmp_path / "run"
    first = cli("train", spec, "--data", images["train"], "-o", run, "--monitor", "loss")
    assert first.exit_code == 0, first.output
    state = _strict((run / "checkpoints" / "state.json").read_text())
    assert state["best"] is None and state["best_epoch"] is None
    more = cli("train", spec, "--data", images["train"], "-o", run, "--monitor", "loss", "--resume", "--epochs", "3")
    assert more.exit_code == 0, more.output
    assert _strict((run / "checkpoints" / "state.json").read_text())["epochs_done"] == 3


def test_predict_and_evaluate_json_of_a_nan_model_is_strict_json(cli, tmp_path, keras, images):
    inputs = keras.Input((16, 16, 3))
    head = keras.layers.Dense(3, activation="softmax", name="head")
    model = keras.Model(inputs, head(keras.layers.GlobalAveragePooling2D()(inputs)))
    head.set_weights([np.full((3, 3), np.nan, "float32"), np.zeros(3, "float32")])
    model.save(str(tmp_path / "nan.keras"))
    predicted = cli("predict", tmp_path / "nan.keras", images["train"] / "red" / "0.png", "--json")
    assert predicted.exit_code == 0, predicted.output
    assert _strict(predicted.stdout)["results"][0]["top"][0]["probability"] is None
    evaluated = cli("evaluate", tmp_path / "nan.keras", "--data", images["val"], "--json")
    assert evaluated.exit_code == 0, evaluated.output
    assert _strict(evaluated.stdout)["metrics"]["loss"] is None
