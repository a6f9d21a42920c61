"""Inputs that would hang or exhaust memory are refused in seconds with one line: FIFOs, /dev/zero, zip bombs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest

from helpers import assert_one_error_line, tiny_spec, write_spec

QUICK = 30  # seconds: a hang is a test failure, not a stuck suite


class Hung(BaseException):
    """Raised by the alarm; a BaseException, so that no `except Exception` in the CLI can report it as an error."""


@pytest.fixture
def surgery(cli):
    """The CLI in this process, stopped by an alarm if it hangs (a blocked open() or read() returns to the
    interpreter on the signal, which then raises here)."""

    def run(*args):
        def hung(signum, frame):
            raise Hung

        previous = signal.signal(signal.SIGALRM, hung)
        signal.alarm(QUICK)
        start = time.monotonic()
        try:
            done = cli(*args)
        except Hung:
            pytest.fail(f"surgery {' '.join(map(str, args))} hung for {QUICK} s")
        finally:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, previous)
        return done, time.monotonic() - start

    return run


def fifo(path):
    os.mkfifo(path)
    return path


def keras_file_spec(folder, path):
    return write_spec(folder, {"surgery": 1, "steps": [{"op": "backbone", "name": "keras_file", "path": str(path)}]})


def test_a_fifo_spec_is_refused(surgery, tmp_path):
    for command in ("validate", "apply", "plan"):
        done, _ = surgery(command, fifo(tmp_path / f"{command}.json"))
        assert done.exit_code == 2
        assert_one_error_line(done.stderr, "is a FIFO (named pipe), not a regular file")


def test_dev_zero_as_a_spec_is_refused(surgery):
    done, _ = surgery("validate", "/dev/zero")
    assert done.exit_code == 2
    assert_one_error_line(done.stderr, "/dev/zero", "is a character device, not a regular file")


@pytest.mark.parametrize("where", ["fifo", "/dev/zero"])
def test_a_source_model_that_never_ends_is_refused(surgery, tmp_path, where):
    path = fifo(tmp_path / "m.keras") if where == "fifo" else "/dev/zero"
    done, seconds = surgery("validate", keras_file_spec(tmp_path, path))
    assert done.exit_code == 2
    assert_one_error_line(done.stderr, "steps[0] (backbone)", "not a regular file")


def test_a_fifo_weights_file_is_refused(surgery, tmp_path):
    fifo(tmp_path / "w.weights.h5")
    spec = write_spec(
        tmp_path,
        {
            "surgery": 1,
            "steps": [
                {
                    "op": "backbone",
                    "name": "vgg16",
                    "weights": "w.weights.h5",
                    "include_top": False,
                    "input_shape": [32, 32, 3],
                }
            ],
        },
    )
    done, _ = surgery("apply", spec, "-o", tmp_path / "m.keras")
    assert done.exit_code == 2
    assert_one_error_line(done.stderr, "steps[0] (backbone)", "weights", "is a FIFO")


def test_fifo_data_and_images_are_refused(surgery, tmp_path, backbone):
    fifo(tmp_path / "d.npz")
    done, _ = surgery("features", backbone, "--data", tmp_path / "d.npz", "-o", tmp_path / "f.npz")
    assert done.exit_code == 2
    assert_one_error_line(done.stderr, "d.npz", "is a FIFO")
    (tmp_path / "images" / "cat").mkdir(parents=True)
    fifo(tmp_path / "images" / "cat" / "0.png")
    done, _ = surgery("features", backbone, "--data", tmp_path / "images", "-o", tmp_path / "f.npz")
    assert done.exit_code == 2
    assert_one_error_line(done.stderr, "0.png", "is a FIFO")
    done, _ = surgery("predict", backbone, tmp_path / "images" / "cat" / "0.png")
    assert done.exit_code == 2
    assert_one_error_line(done.stderr, "0.png", "is a FIFO")
    assert not (tmp_path / "f.npz").exists()


def test_an_image_linked_from_outside_the_data_folder_is_refused(surgery, tmp_path, backbone):
    """A shared data folder whose cat/x.png is a link to a file elsewhere (a secret, a device): train, features
    and predict on the folder refuse it by name; a link to another image inside the folder is read."""
    from PIL import Image

    images = tmp_path / "images"
    for name in ("cat", "dog"):
        (images / name).mkdir(parents=True)
        Image.new("RGB", (16, 16), (200, 10, 10)).save(images / name / "0.png")
    os.symlink(images / "cat" / "0.png", images / "dog" / "inside.png")
    secret = tmp_path / "secret.png"
    secret.write_bytes((images / "cat" / "0.png").read_bytes())
    os.symlink(secret, images / "cat" / "x.png")
    says = f"is a symbolic link to {secret}, outside the data folder"
    spec = write_spec(tmp_path, tiny_spec(backbone, [{"epochs": 1}], units=2, validation_split=0.0))
    for args in (
        ("train", spec, "--data", images, "-o", tmp_path / "run"),
        ("features", backbone, "--data", images, "-o", tmp_path / "f.npz"),
        ("predict", backbone, images),
    ):
        done, _ = surgery(*args)
        assert done.exit_code == 2, (args, done.output)
        assert_one_error_line(done.stderr, "cat/x.png", says)
    assert not (tmp_path / "run").exists() and not (tmp_path / "f.npz").exists()
    os.unlink(images / "cat" / "x.png")
    done, _ = surgery("features", backbone, "--data", images, "-o", tmp_path / "f.npz")
    assert done.exit_code == 0, done.output
    assert list(np.load(tmp_path / "f.npz")["files"]) == ["cat/0.png", "dog/0.png", "dog/inside.png"]


def test_a_fifo_sidecar_and_run_state_are_refused(surgery, tmp_path, backbone):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "m.keras").write_bytes(backbone.read_bytes())
    fifo(tmp_path / "run" / "classes.json")
    done, _ = surgery("predict", tmp_path / "run" / "m.keras", "x.png")
    assert done.exit_code == 2
    assert_one_error_line(done.stderr, "classes.json", "is a FIFO")


def _peak_rss_mib(*args) -> tuple[subprocess.CompletedProcess, float]:
    """Run surgery in a child of a fresh interpreter, whose RUSAGE_CHILDREN then holds only that child's peak."""
    code = (
        "import resource, subprocess, sys\n"
        f"done = subprocess.run([sys.executable, '-m', 'surgery', *{[str(a) for a in args]!r}], "
        "capture_output=True, text=True)\n"
        "sys.stderr.write(done.stderr)\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
        "sys.exit(done.returncode)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    return done, int(done.stdout.strip().splitlines()[-1]) / 1024


@pytest.fixture(scope="module")
def zip_bomb(tmp_path_factory):
    """A .keras archive of about 0.3 MB whose config.json inflates to 300 MiB."""
    path = tmp_path_factory.mktemp("bomb") / "bomb.keras"
    chunk = b" " * (1 << 20)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        with archive.open("config.json", "w", force_zip64=True) as member:
            member.write(b'{"class_name": "Functional", "config": {"pad": "')
            for _ in range(300):
                member.write(chunk)
            member.write(b'"}}')
        archive.writestr("metadata.json", json.dumps({"keras_version": "3"}))
    assert path.stat().st_size < 2 << 20
    return path


@pytest.mark.slow  # the process's own peak memory is what is measured: each command starts one
def test_a_zip_bomb_model_is_refused_in_little_memory(tmp_path, zip_bomb):
    spec = keras_file_spec(tmp_path, zip_bomb)
    for args in (
        ["apply", spec, "-o", tmp_path / "m.keras"],
        ["export", zip_bomb, "--to", "onnx"],
        ["predict", zip_bomb, "x.png"],
    ):
        done, peak = _peak_rss_mib(*args)
        assert done.returncode == 2, done.stderr
        assert_one_error_line(done.stderr, "config.json declares 300.0 MiB; the limit is 64 MiB")
        assert peak < 250, f"{args[0]} peaked at {peak:.0f} MiB"
    assert not (tmp_path / "m.keras").exists()


def test_an_npz_bomb_member_is_refused(surgery, tmp_path, backbone):
    path = tmp_path / "d.npz"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        with archive.open("x.npy", "w", force_zip64=True) as member:
            for _ in range(300):
                member.write(bytes(1 << 20))
        buffer = __import__("io").BytesIO()
        np.save(buffer, np.array([0, 1]))
        archive.writestr("y.npy", buffer.getvalue())
    done, _ = surgery("features", backbone, "--data", path, "-o", tmp_path / "f.npz")
    assert done.exit_code == 2
    assert_one_error_line(done.stderr, "x.npy declares 300.0 MiB", "decompression bomb")


def _npz(path, **arrays):
    arrays.setdefault("x", np.zeros((3, 16, 16, 3), "float32"))
    np.savez(path, **arrays)
    return path


BAD_NPZ = {
    "label 2**40": (
        {"y": np.array([0, 1, 2**40])},
        "y has label 1099511627776: more than 100,000 classes is not a labelling surgery trains on",
    ),
    "uint64 label": (
        {"y": np.array([0, 1, 2**63 + 1], dtype="uint64")},
        "y has label 9223372036854775809: more than 100,000 classes",
    ),
    "duplicate class names": (
        {"y": np.array([0, 1, 2]), "class_names": np.array(["a", "a", "b"])},
        'class_names names "a" twice; each class needs a name of its own',
    ),
    "files of another length": (
        {"y": np.array([0, 1, 2]), "files": np.array(["a.png", "b.png"])},
        "files has shape (2,) but y has 3 labels; it needs one file name per image",
    ),
    "0-d x": (
        {"x": np.float32(3), "y": np.array([0])},
        "x must hold images, N x height x width x channels; got shape ()",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_NPZ))
def test_an_npz_that_lies_about_its_contents_is_refused_by_every_command(surgery, tmp_path, backbone, case):
    arrays, says = BAD_NPZ[case]
    data = _npz(tmp_path / "d.npz", **arrays)
    spec = write_spec(tmp_path, tiny_spec(backbone, [{"epochs": 1}], validation_split=0.0))
    for args in (
        ("train", spec, "--data", data, "-o", tmp_path / "run"),
        ("evaluate", backbone, "--data", data),
        ("features", backbone, "--data", data, "-o", tmp_path / "f.npz"),
    ):
        done, seconds = surgery(*args)
        assert done.exit_code == 2, (args, done.output)
        assert_one_error_line(done.stderr, f"{data}: --data: {says}")
        assert seconds < 10
    assert not (tmp_path / "run").exists() and not (tmp_path / "f.npz").exists()


def _liar(path):
    """An .npz whose x header claims (100000000, 32, 32, 3) float32 (1.2 TB) in a 400-byte member."""
    import io

    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f4", "fortran_order": False, "shape": (100000000, 32, 32, 3)}
    )
    labels = io.BytesIO()
    np.save(labels, np.array([0, 1]))
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("x.npy", header.getvalue() + b"\0" * 400)
        archive.writestr("y.npy", labels.getvalue())
    return path


MEMORY_CASES = {
    "huge label": (
        lambda p: _npz(p, y=np.array([0, 1, 2**40])),
        "y has label 1099511627776: more than 100,000 classes",
    ),
    "header that lies": (
        _liar,
        "its array x claims shape (100000000, 32, 32, 3) (1,228.8 GB) but holds 400 bytes: a broken or hostile file",
    ),
}


@pytest.mark.parametrize("case", sorted(MEMORY_CASES))
def test_data_that_would_exhaust_memory_is_refused_under_a_memory_limit(tmp_path, backbone, case):
    """max(y) + 1 class names, or the array an .npy header promises, would be allocated first: under a 2 GiB
    address-space limit the refusal must come before any allocation that size."""
    import resource

    make, says = MEMORY_CASES[case]
    data = make(tmp_path / "d.npz")

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))

    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "surgery",
            "features",
            str(backbone),
            "--data",
            str(data),
            "-o",
            str(tmp_path / "f.npz"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=limit,
    )
    assert done.returncode == 2, done.stderr
    assert_one_error_line(done.stderr, f"{data}: --data: {says}")


@pytest.mark.parametrize(
    "names, says",
    [
        (["a"], "names 1 classes but the model outputs 3; give the right names with --classes"),
        ([str(i) for i in range(5000)], "names 5000 classes but the model outputs 3"),
        (["a", "b", "a"], 'class_names names "a" twice; each class needs a name of its own'),
    ],
    ids=["one", "5000", "duplicate"],
)
def test_a_runs_classes_json_is_checked_as_classes_is(surgery, tmp_path, keras, names, says):
    """A colleague's classes.json for another model is refused, as --classes with the same names is; it is
    not ignored (which would print indices) or used (which would print wrong names)."""
    from PIL import Image

    inputs = keras.Input((16, 16, 3))
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(keras.layers.Flatten()(inputs)))
    (tmp_path / "run").mkdir()
    model.save(str(tmp_path / "run" / "m.keras"))
    Image.new("RGB", (16, 16)).save(tmp_path / "x.png")
    (tmp_path / "run" / "classes.json").write_text(json.dumps({"class_names": names}))
    done, _ = surgery("predict", tmp_path / "run" / "m.keras", tmp_path / "x.png")
    assert done.exit_code == 2, done.output
    assert_one_error_line(done.stderr, f"{tmp_path / 'run' / 'classes.json'}: {says}")
    (tmp_path / "names.json").write_text(json.dumps(names))
    (tmp_path / "run" / "classes.json").unlink()
    done, _ = surgery("predict", tmp_path / "run" / "m.keras", tmp_path / "x.png", "--classes", tmp_path / "names.json")
    assert done.exit_code == 2, done.output
    assert says.split(";")[0] in done.stderr


def _png_claiming(path, width, height):
    """A valid PNG signature and IHDR chunk for width x height 8-bit RGB, then a few bytes of image data:
    what a decompression bomb's first bytes look like (the pixels would come from a tiny compressed stream)."""
    import struct
    import zlib

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 1000)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize(
    "make, says",
    [
        (lambda p: _png_claiming(p, 12000, 9000), "its header says 12,000 x 9,000 pixels; an image may have at most"),
        (lambda p: _png_claiming(p, 60000, 60000), "its header says more than 178,956,970 pixels; an image may have"),
        (lambda p: os.truncate(p, 3 << 30) or p, "is 3,072 MiB; an image file may be at most 512 MiB"),
    ],
    ids=["over the limit", "decompression bomb", "sparse 3 GB file"],
)
def test_an_image_too_big_to_decode_is_refused_from_its_header_or_size(surgery, tmp_path, backbone, make, says):
    images = tmp_path / "images"
    for name in ("cat", "dog"):
        (images / name).mkdir(parents=True)
        _png_claiming(images / name / "0.png", 16, 16)
    bad = images / "cat" / "big.png"
    bad.touch()
    make(bad)
    spec = write_spec(tmp_path, tiny_spec(backbone, [{"epochs": 1}], units=2, validation_split=0.0))
    for args in (
        ("train", spec, "--data", images, "-o", tmp_path / "run"),
        ("features", backbone, "--data", images, "-o", tmp_path / "f.npz"),
        ("predict", backbone, images),
        ("predict", backbone, bad),
    ):
        done, seconds = surgery(*args)
        assert done.exit_code == 2, (args, done.output)
        assert_one_error_line(done.stderr, f"{bad}", says)
        assert seconds < 5, (args, seconds)
