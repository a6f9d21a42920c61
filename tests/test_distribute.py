"""`surgery train --strategy`: two worker processes on 127.0.0.1 train in step and match one process;
mirrored trains with fit; a missing or malformed TF_CONFIG is one error line."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import re
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from helpers import CLASSES, assert_one_error_line, save_tiny_backbone, tiny_spec, wait_for_epochs, write_spec

pytestmark = pytest.mark.slow  # builds many backbones or starts processes; the full suite runs it

# Two workers against one process on the same global batches: the sums run in another order (each
# worker's half, then the all-reduce), so weights agree to float32 rounding, not bit for bit. Measured:
# 1.2e-7 after these 5 epochs.
MATCH_ATOL = 1e-5
WORKER_TIMEOUT = 240  # seconds for both workers together: TensorFlow starts in each


@pytest.fixture(scope="module")
def backbone(tmp_path_factory, keras):
    return save_tiny_backbone(tmp_path_factory.mktemp("backbone") / "tiny.keras", keras)


@pytest.fixture(scope="module")
def npz(tmp_path_factory):
    """48 images of three colours: 36 train, 12 validate, batches of 8 (the last one 4, split 2 + 2)."""
    rng = np.random.default_rng(0)
    colours = np.array(list(CLASSES.values()))
    y = np.repeat(np.arange(3), 16)
    x = np.clip(colours[y][:, None, None, :] + rng.normal(0, 40, (len(y), 16, 16, 3)), 0, 255)
    path = tmp_path_factory.mktemp("data") / "colours.npz"
    np.savez(path, x=x.astype("float32"), y=y, class_names=np.array(list(CLASSES)))
    return path


def two_stage_spec(backbone):
    """Stage 1 trains the head on cached features; stage 2 trains every layer, with no cache possible."""
    spec = tiny_spec(
        backbone,
        [
            {"name": "head", "epochs": 3, "learning_rate": 0.05},
            {"name": "all", "epochs": 2, "learning_rate": 0.01, "unfreeze": {"layers": ":"}},
        ],
        validation_split=0.25,
    )
    spec["train"]["batch_size"] = 8
    return spec


def free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def tf_config(ports, index: int) -> str:
    return json.dumps(
        {"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]}, "task": {"type": "worker", "index": index}}
    )


@contextlib.contextmanager
def workers(tmp_path, args: list):
    """Two workers, each in its own empty folder and TMPDIR; killed on the way out if still running."""
    ports = free_ports(2)
    procs = []
    try:
        for i in range(2):
            for folder in (f"w{i}", f"tmp{i}"):
                (tmp_path / folder).mkdir()
            env = {**os.environ, "TF_CONFIG": tf_config(ports, i), "TMPDIR": str(tmp_path / f"tmp{i}")}
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "surgery", "train", *map(str, args)],
                    cwd=tmp_path / f"w{i}",
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            )
        yield procs
    finally:
        for proc in procs:  # a worker left waiting for its peer would wait for ever
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def finish(procs) -> list[tuple[int, str, str]]:
    deadline = time.monotonic() + WORKER_TIMEOUT
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
        results.append((proc.returncode, out, err))
    return results


def test_two_workers_train_in_step_and_match_one_process(cli, tmp_path, keras, backbone, npz):
    from surgery.training.distribute import weights_digest

    spec = write_spec(tmp_path, two_stage_spec(backbone))
    with workers(tmp_path, [spec, "--data", npz, "-o", "run", "--strategy", "multiworker"]) as procs:
        results = finish(procs)
    for i, (code, out, err) in enumerate(results):
        assert code == 0, f"worker {i} failed:\n{out}\n{err}"
    (_, chief_out, _), (_, worker_out, _) = results
    assert "strategy multiworker: 2 replicas, worker 0 (chief) of 2" in chief_out
    assert "feature cache: layers 0..8 (image .. pool) are frozen" in chief_out
    assert "feature cache: not used: conv1 (index 2) trains" in chief_out

    # Both replicas ended with the same weights, and the chief saved those.
    digests = [re.search(r"finished: weights ([0-9a-f]{16})", out).group(1) for out in (chief_out, worker_out)]
    assert digests[0] == digests[1]
    final = keras.saving.load_model(str(tmp_path / "w0" / "run" / "tiny.keras"))
    assert weights_digest(final) == digests[0]

    # Only the chief wrote: the other worker's folder and temporary folder are empty, and so is the chief's.
    assert sorted(p.name for p in (tmp_path / "w0").iterdir()) == ["run"]
    for folder in ("w1", "tmp0", "tmp1"):
        assert list((tmp_path / folder).iterdir()) == [], folder
    with (tmp_path / "w0" / "run" / "log.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4, 5]  # numbered from 1, as on the console
    assert float(rows[-1]["loss"]) < 0.8 * float(rows[0]["loss"])

    # One process on the same global batches (same seed, batch 8) ends where the two workers did.
    single = cli("train", spec, "--data", npz, "-o", tmp_path / "single")
    assert single.exit_code == 0, single.output
    alone = keras.saving.load_model(str(tmp_path / "single" / "tiny.keras"))
    for a, b in zip(final.weights, alone.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=0, atol=MATCH_ATOL, err_msg=a.path)
    with (tmp_path / "single" / "log.csv").open() as f:
        alone_rows = list(csv.DictReader(f))
    for a, b in zip(rows, alone_rows):
        assert float(a["loss"]) == pytest.approx(float(b["loss"]), abs=1e-5)
        assert float(a["val_accuracy"]) == pytest.approx(float(b["val_accuracy"]))


def test_a_worker_that_dies_stops_the_chief_with_one_line(tmp_path, backbone, npz):
    spec = two_stage_spec(backbone)
    spec["train"]["stages"][1]["epochs"] = 200  # still training when the worker is killed
    args = [write_spec(tmp_path, spec), "--data", npz, "-o", "run", "--strategy", "multiworker"]
    with workers(tmp_path, args) as procs:
        wait_for_epochs(tmp_path / "w0" / "run" / "checkpoints" / "state.json", 4, procs[0], WORKER_TIMEOUT)
        procs[1].kill()
        procs[1].wait()
        _, err = procs[0].communicate(timeout=WORKER_TIMEOUT)
    assert procs[0].returncode == 1
    assert_one_error_line(err, "worker 0 (chief) of 2: lost contact with another worker", "with --resume")


def test_mirrored_trains_with_fit(cli, tmp_path, keras, backbone, npz):
    """MirroredStrategy has one replica per local GPU (one on a CPU-only machine): the option works, fit trains.

    (Not compared with the default strategy: fit reads a distributed dataset through other iterators, so
    the shuffling order differs.)"""
    import surgery

    spec = write_spec(tmp_path, tiny_spec(backbone, [{"epochs": 2, "learning_rate": 0.05}], validation_split=0.25))
    initial = {w.path: w.numpy() for w in surgery.build(spec).weights}
    result = cli("train", spec, "--data", npz, "-o", tmp_path / "run", "--strategy", "mirrored", "--no-cache")
    assert result.exit_code == 0, result.output
    import tensorflow as tf

    replicas = len(tf.config.list_physical_devices("GPU")) or 1
    assert f"strategy mirrored: {replicas} replica" in result.output and "feature cache: off" in result.output
    final = keras.saving.load_model(str(tmp_path / "run" / "tiny.keras"))
    moved = {w.path for w in final.weights if not np.array_equal(w.numpy(), initial[w.path])}
    assert moved == {"head/kernel", "head/bias"}
    with (tmp_path / "run" / "log.csv").open() as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == [1, 2]


ADDRESSES = ["127.0.0.1:40001", "127.0.0.1:40002"]
BAD_TF_CONFIG = {
    "not set": (None, ["--strategy multiworker needs the TF_CONFIG environment variable"]),
    "not JSON": ("{cluster: 1}", ["TF_CONFIG: not valid JSON"]),
    "no task": (json.dumps({"cluster": {"worker": ADDRESSES}}), ['needs a "cluster" object and a "task" object']),
    "index out of range": (
        json.dumps({"cluster": {"worker": ADDRESSES}, "task": {"type": "worker", "index": 2}}),
        ["task.index is 2; cluster.worker has 2 addresses (0..1)"],
    ),
    "parameter servers": (
        json.dumps(
            {"cluster": {"worker": ADDRESSES, "ps": ["127.0.0.1:40003"]}, "task": {"type": "worker", "index": 0}}
        ),
        ['"ps" tasks, which are for parameter-server training'],
    ),
    "no port": (
        json.dumps({"cluster": {"worker": ["127.0.0.1"]}, "task": {"type": "worker", "index": 0}}),
        ['cluster.worker has "127.0.0.1", not a "host:port" address'],
    ),
}


@pytest.mark.parametrize("case", list(BAD_TF_CONFIG))
def test_bad_tf_config_is_one_error_line(cli, tmp_path, monkeypatch, backbone, npz, case):
    value, fragments = BAD_TF_CONFIG[case]
    if value is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", value)
    spec = write_spec(tmp_path, tiny_spec(backbone, [{"epochs": 1}]))
    result = cli("train", spec, "--data", npz, "-o", tmp_path / "run", "--strategy", "multiworker")
    assert result.exit_code == 2, result.output
    assert_one_error_line(result.stderr, *fragments)
    assert not (tmp_path / "run").exists()


def test_tf_config_names_the_chief():
    from surgery.training.distribute import parse

    cluster = {"chief": ["a:1"], "worker": ["b:1", "c:1"]}
    assert parse(json.dumps({"cluster": cluster, "task": {"type": "chief", "index": 0}})).is_chief
    worker0 = parse(json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 0}}))
    assert not worker0.is_chief and worker0.count == 3
    assert parse(json.dumps({"cluster": {"worker": ["b:1", "c:1"]}, "task": {"type": "worker", "index": 0}})).is_chief


def test_multiworker_needs_a_process_of_its_own(tmp_path, monkeypatch, keras, backbone, npz):
    """From Python, after TensorFlow has started, the strategy cannot be set up: say so, start nothing."""
    import tensorflow as tf

    from surgery import train as train_spec
    from surgery.errors import SurgeryError

    tf.constant(0)  # TensorFlow's runtime is running in this process
    monkeypatch.setenv("TF_CONFIG", tf_config(free_ports(2), 0))
    spec = write_spec(tmp_path, tiny_spec(backbone, [{"epochs": 1}]))
    with pytest.raises(SurgeryError, match="multiworker training must run in a process of its own"):
        train_spec(spec, str(npz), tmp_path / "run", strategy="multiworker", echo=lambda *_: None)
    assert not (tmp_path / "run").exists()
