"""What `surgery train` shows (no TensorFlow start-up log, line-based progress under NO_COLOR), `surgery
predict` over a folder (every file, the class names, plain Keras' scores), and `surgery features --layer`
at a tensor a spec named with "as"."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from helpers import save_tiny_backbone, tiny_spec, write_pngs, write_spec

# What TensorFlow, absl and CUDA probing write to stderr at start-up unless surgery mutes them.
START_UP = ("oneDNN", "cpu_feature_guard", "absl", "E0000", "W0000", "I0000", "cuda", "TF_ENABLE_ONEDNN_OPTS")
GLOG_LINE = re.compile(r"^[IWEF]\d{4} ")  # absl/glog's "I0000 00:00:..." format, whatever the date
ANSI = re.compile(r"\x1b\[")


@pytest.fixture(scope="module")
def setup(tmp_path_factory, keras):
    """Train/validation PNGs, the tiny backbone, a spec, and a model trained on them (with classes.json)."""
    import surgery

    root = tmp_path_factory.mktemp("extras")
    images = {"train": write_pngs(root / "train", 3), "val": write_pngs(root / "val", 1, seed=1)}
    backbone = save_tiny_backbone(root / "tiny.keras", keras)
    spec = write_spec(root, tiny_spec(backbone, [{"epochs": 2, "learning_rate": 0.05}]))
    surgery.train(spec, str(images["train"]), root / "run", validation_data=str(images["val"]), echo=None, verbose=0)
    return {"root": root, "images": images, "backbone": backbone, "spec": spec, "run": root / "run"}


def _environment(**extra):
    """The user's environment without the variables these tests are about."""
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "NO_COLOR", "TERM")}
    return {**env, **extra}


def _train_args(setup, out):
    return [
        "train",
        setup["spec"],
        "--data",
        setup["images"]["train"],
        "--validation-data",
        setup["images"]["val"],
        "--epochs",
        "2",
        "-o",
        out,
    ]


@pytest.mark.slow
def test_train_stderr_has_no_tensorflow_start_up_lines(tmp_path, setup):
    """A real `python -m surgery train` process (TF_CPP_MIN_LOG_LEVEL unset, as a user has it): it trains,
    and stderr holds none of TensorFlow's, absl's or CUDA probing's start-up lines."""
    result = subprocess.run(
        [sys.executable, "-m", "surgery", *map(str, _train_args(setup, tmp_path / "run"))],
        capture_output=True,
        text=True,
        env=_environment(),
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "Epoch 2/2" in result.stdout and (tmp_path / "run" / "tiny.keras").is_file()
    for line in result.stderr.splitlines():
        assert not any(word in line for word in START_UP), line
        assert not GLOG_LINE.match(line), line


def _run_on_terminals(runs, timeout=300) -> list[bytes]:
    """Run the CLI once per (args, env), each with stdout and stderr on a pseudo-terminal of its own (raw: no
    \\n -> \\r\\n translation), all at once so that their TensorFlow start-ups overlap; what each wrote."""
    import pty
    import select
    import tty

    procs = {}  # the terminal's reading end -> the process writing to it
    read_all = False
    try:
        for args, env in runs:
            master, slave = pty.openpty()
            tty.setraw(slave)
            procs[master] = subprocess.Popen(
                [sys.executable, "-m", "surgery", *map(str, args)],
                stdin=subprocess.DEVNULL,
                stdout=slave,
                stderr=slave,
                env=env,
            )
            os.close(slave)
        chunks: dict = {master: [] for master in procs}
        reading = set(procs)
        while reading:
            ready, _, _ = select.select(list(reading), [], [], timeout)
            if not ready:
                pytest.fail("a run wrote nothing for too long")
            for master in ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: every writer closed the terminal
                    chunk = b""
                if chunk:
                    chunks[master].append(chunk)
                else:
                    reading.discard(master)
        read_all = True
    finally:
        for master, proc in procs.items():
            if not read_all and proc.poll() is None:  # leaving early: stop what still runs
                proc.kill()
            proc.wait(timeout=timeout)
            os.close(master)
    written = [b"".join(chunks[master]) for master in procs]
    for proc, out in zip(procs.values(), written):
        assert proc.returncode == 0, out.decode(errors="replace")
    return written


@pytest.mark.slow
def test_no_color_makes_progress_line_based_even_on_a_terminal(tmp_path, setup):
    """On a terminal, Keras draws its progress bar with carriage returns and colour escapes; with NO_COLOR=1
    train writes whole lines: no "\\r", no ANSI escape sequence, one line per epoch."""
    drawn, plain = _run_on_terminals(
        [
            (_train_args(setup, tmp_path / "bar"), _environment(TERM="xterm")),
            (_train_args(setup, tmp_path / "lines"), _environment(TERM="xterm", NO_COLOR="1")),
        ]
    )
    # The terminal is real: without NO_COLOR the bar is drawn (else this test could not fail).
    assert b"\r" in drawn or ANSI.search(drawn.decode(errors="replace"))

    text = plain.decode()
    assert "\r" not in text and "\x1b" not in text and "\b" not in text
    lines = text.splitlines()
    assert "Epoch 1/2" in lines and "Epoch 2/2" in lines
    epoch_lines = [line for line in lines if " - accuracy: " in line and "val_accuracy" in line]
    assert len(epoch_lines) == 2, text  # "5/5 - 0s - ... - val_loss: ...": one per epoch


def _read_pngs(files, keras, side=16):
    """Plain Keras: the files as float32 pixels, resized bilinearly (no antialias) to the model's input."""
    from PIL import Image

    out = []
    for f in files:
        x = np.asarray(Image.open(f).convert("RGB"), dtype="float32")
        out.append(np.asarray(keras.ops.image.resize(x, (side, side), interpolation="bilinear", antialias=False)))
    return np.array(out)


def test_predict_on_a_folder_lists_every_image_with_keras_scores(cli, tmp_path, keras, setup):
    """A folder argument stands for every image under it (sorted, subfolders included, other files
    skipped); each gets the run's class names, and its top class and probability are plain Keras' output."""
    from PIL import Image

    photos = tmp_path / "photos"
    write_pngs(photos / "mixed", 2, seed=5)  # mixed/blue/0.png ... mixed/red/1.png
    (photos / "a.png").write_bytes((setup["images"]["val"] / "red" / "0.png").read_bytes())
    rng = np.random.default_rng(3)
    Image.fromarray(rng.integers(0, 256, (24, 20, 3), dtype="uint8")).save(photos / "b_large.png")  # resized
    (photos / "notes.txt").write_text("not an image")
    files = [photos / "a.png", photos / "b_large.png"] + [
        photos / "mixed" / c / f"{i}.png" for c in ("blue", "green", "red") for i in (0, 1)
    ]

    model = keras.saving.load_model(str(setup["run"] / "tiny.keras"))
    want = model.predict(_read_pngs(files, keras), verbose=0)
    names = json.loads((setup["run"] / "classes.json").read_text())["class_names"]
    assert names == ["blue", "green", "red"]

    found = cli("predict", setup["run"], photos, "--top", 3, "--json")
    assert found.exit_code == 0, found.output
    report = json.loads(found.stdout)
    assert report["classes"] == "classes.json" and report["score"] == "probability"
    assert [r["image"] for r in report["results"]] == [str(f) for f in files]
    for r, row in zip(report["results"], want):
        assert [t["name"] for t in r["top"]] == [names[i] for i in np.argsort(-row, kind="stable")]
        assert [t["probability"] for t in r["top"]] == pytest.approx(sorted(row, reverse=True), abs=1e-5)

    text = cli("predict", setup["run"], photos, "--top", 1)
    assert text.exit_code == 0, text.output
    lines = text.stdout.splitlines()
    assert lines[0::2] == [str(f) for f in files] and len(lines) == 2 * len(files)
    for line, row in zip(lines[1::2], want):
        rank, score, name = line.split()
        assert rank == "1." and name == names[int(np.argmax(row))]
        assert float(score) == pytest.approx(float(row.max()), abs=1e-4)


def _named_spec(backbone, extra_steps=()):
    """The tiny backbone cut after relu1, its pooled output named "pooled" (not a layer name), a head."""
    return {
        "surgery": 1,
        "name": "named",
        "seed": 0,
        "steps": [
            {"op": "backbone", "name": "keras_file", "path": str(backbone)},
            {"op": "slice", "to": "relu1"},
            {"op": "append", "layer": "GlobalAveragePooling2D", "as": "pooled"},
            *extra_steps,
            {"op": "append", "layer": "Dense", "config": {"units": 3, "activation": "softmax"}, "name": "head"},
        ],
    }


@pytest.mark.parametrize(
    "extra_steps,scale",
    [
        ([], None),
        # A later step that re-traces the graph with a new input: the named tensor must follow it.
        ([{"op": "preprocess", "mode": "tf"}], (1 / 127.5, -1.0)),
    ],
    ids=["plain", "retraced-by-preprocess"],
)
def test_features_at_a_tensor_named_with_as(cli, tmp_path, keras, setup, extra_steps, scale):
    """`features SPEC --layer pooled`, "pooled" being the name a step gave its output with "as", writes what a
    plain Keras sub-model of the source file gives: GlobalAveragePooling2D over relu1's output."""
    spec = write_spec(tmp_path, _named_spec(setup["backbone"], extra_steps))
    import surgery

    layers = [layer.name for layer in surgery.build(spec).layers]
    assert "pooled" not in layers  # a tensor name only, so --layer must look among the named tensors
    out = tmp_path / "f.npz"
    images = setup["images"]["train"]
    result = cli("features", spec, "--layer", "pooled", "--data", images, "-o", out)
    assert result.exit_code == 0, result.output
    assert f"wrote {out}: features (9, 4), labels (9,), 3 classes" in result.output
    got = np.load(out)

    source = keras.saving.load_model(str(setup["backbone"]))
    relu1 = keras.Model(source.inputs, source.get_layer("relu1").output)
    files = [images / c / f"{i}.png" for c in ("blue", "green", "red") for i in range(3)]
    x = _read_pngs(files, keras)
    if scale is not None:
        x = x * scale[0] + scale[1]
    expected = np.asarray(relu1.predict(x, verbose=0)).mean(axis=(1, 2))
    assert list(got["files"]) == [f"{c}/{i}.png" for c in ("blue", "green", "red") for i in range(3)]
    assert list(got["labels"]) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    np.testing.assert_allclose(got["features"], expected, rtol=1e-5, atol=1e-6)
    assert np.abs(expected).max() > 0
