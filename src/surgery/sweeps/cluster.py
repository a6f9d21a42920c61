"""``--ray ADDRESS``: the variants as tasks on an existing Ray cluster, with the same run folders and table.

Each variant is one Ray task that trains it exactly as a ``--jobs`` worker does (``train_in_worker``), into
its run folder under the sweep folder; the rows come back to this process, which writes the table. So the
nodes must see the sweep folder and the data at the same paths (a shared filesystem, as Ray's own storage
needs for several nodes) and run the same surgery: a task checks both before it trains and a variant whose
node fails either is a failed row that says which.

Ray schedules the tasks by the CPUs each asks for (``ray_cpus``); TensorFlow in a task uses that many
threads. Ctrl-C or SIGTERM cancels the tasks: Ray raises KeyboardInterrupt in each running one, which stops
its training as Ctrl-C stops ``surgery train`` (checkpoint kept), and this process waits for them before it
disconnects, so that ``--resume`` finds every checkpoint.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
from pathlib import Path
from typing import Any

from ..errors import SpecError, one_line, raise_if_stopped
from ..version import __version__
from .pool import train_in_worker
from .prepare import RECORD, Job

CONNECT_TIMEOUT = 5.0  # seconds: Ray itself retries an unreachable address for minutes
POLL = 0.5  # seconds between looks at the tasks, so that Ctrl-C and SIGTERM are handled at once


def _ray():
    try:
        import ray
    except ImportError:
        raise SpecError("--ray needs Ray: pip install 'surgery[ray]' (or pip install ray)", where="--ray") from None
    return ray


def check(address: str) -> None:
    """Before anything is built: Ray is installed and a Ray cluster answers at ``address`` (``HOST:PORT``,
    ``ray://HOST:PORT`` or ``auto``). Ray itself retries a wrong address for minutes, silent, so this looks
    first: something must listen there and speak gRPC, as Ray's GCS and client server do (a dashboard's or
    another service's port does not)."""
    _ray()
    if address == "auto":
        return  # Ray finds the cluster this machine started, and says at once when there is none
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not host or not port.isdigit():
        raise SpecError(f"{address!r} is not a Ray address: give HOST:PORT, ray://HOST:PORT or auto", where="--ray")
    try:
        answer = _http2_answer(host.strip("[]"), int(port))
    except OSError as e:
        reason = f"no answer in {CONNECT_TIMEOUT:g} s" if isinstance(e, TimeoutError) else e.strerror or str(e)
        answer = None
    else:
        reason = "it answers, but not as Ray does (gRPC); give the address `ray start --head` printed"
    if answer is None or len(answer) < 9 or answer[3] != HTTP2_SETTINGS:
        raise SpecError(
            f"cannot reach a Ray cluster at {address} ({reason}); start one with `ray start --head` and give the "
            "address it prints",
            where="--ray",
        )


HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
HTTP2_SETTINGS = 0x4  # the frame type a gRPC server sends first
EMPTY_SETTINGS = bytes([0, 0, 0, HTTP2_SETTINGS, 0, 0, 0, 0, 0])


def _http2_answer(host: str, port: int) -> bytes:
    """The first frame header (9 bytes) that ``host:port`` answers an HTTP/2 client's opening with."""
    with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT) as conn:
        conn.sendall(HTTP2_PREFACE + EMPTY_SETTINGS)
        answer = b""
        while len(answer) < 9:
            chunk = conn.recv(9 - len(answer))
            if not chunk:
                break
            answer += chunk
        return answer


def connect(address: str):
    ray = _ray()
    # Ray's core puts its own handler on SIGTERM, which prints a stack and exits 1: a sweep stops as train does.
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=True)
    except Exception as e:  # noqa: BLE001 (Ray's refusals have no common type: ConnectionError, version mismatch)
        raise SpecError(f"could not join the Ray cluster at {address}: {one_line(e)}", where="--ray") from None
    finally:
        for number, handler in handlers.items():
            if handler is not None:
                signal.signal(number, handler)
    return ray


def train_variant(job: Job, threads: int, cwd: str, version: str) -> tuple[str, Any]:
    """The Ray task: checks that this node sees the sweep and runs the same surgery, then trains the variant."""
    node = socket.gethostname()
    if version != __version__:
        return "failed", f"the Ray node {node} runs surgery {__version__}, this sweep {version}: install one version"
    if not os.path.isdir(cwd):
        return (
            "failed",
            f"the Ray node {node} has no folder {cwd}: --ray needs the sweep on a filesystem every node shares",
        )
    os.chdir(cwd)  # the job's paths are relative to where the sweep was started, as in the other workers
    if not (Path(job.folder).parent / RECORD).is_file():
        return (
            "failed",
            f"the Ray node {node} does not see the sweep folder {Path(job.folder).parent}: --ray needs the sweep "
            "folder and the data on a filesystem every node shares",
        )
    return train_in_worker(job, threads)


def run_on_ray(ray, jobs: list[Job], cpus: int, done, stopped) -> None:
    """Every job as a Ray task asking for ``cpus`` CPUs; ``done(row)`` and ``stopped(job, error)`` as the pool
    calls them."""
    task = ray.remote(num_cpus=cpus, max_retries=0)(train_variant)
    running = {task.remote(job, cpus, os.getcwd(), __version__): job for job in jobs}
    try:
        while running:
            ready, _ = ray.wait(list(running), num_returns=1, timeout=POLL)
            for ref in ready:
                job = running.pop(ref)
                try:
                    kind, found = ray.get(ref)
                except ray.exceptions.RayError as e:  # its worker died, its node left: not the variant's error
                    kind, found = "failed", f"its Ray task ended: {type(e).__name__}: {one_line(e)}"
                if kind == "row":
                    done(found)
                else:
                    stopped(job, found)
    except BaseException:
        for ref in running:
            ray.cancel(ref)
        for ref in running:  # a running task stops at its next step and keeps its checkpoint: wait for that
            try:
                ray.get(ref)
            except ray.exceptions.RayError:
                pass
        raise_if_stopped()  # Ray's wait turns a SIGTERM into a bare KeyboardInterrupt: say it was SIGTERM
        raise
