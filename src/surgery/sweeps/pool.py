"""``--jobs N``: N variants at once on this machine, each in its own process with its share of the cores.

Not ``concurrent.futures``: on Ctrl-C or SIGTERM the running variants must be told to stop (SIGTERM, which a
run turns into a clean stop with its checkpoint kept), and an executor neither exposes its processes nor
stops a task that has started.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from multiprocessing import connection
from typing import Any

from ..errors import stop_on_signal
from .prepare import Job

START_METHOD = "spawn"  # a fork of a process whose TensorFlow has started its thread pools can hang
# Seconds between looks at the workers. The kernel may give a SIGTERM to any of this process's threads, and
# Python runs its handler only once the main thread is back in Python: a wait without a timeout would hold
# the stop until a variant finished.
POLL = 0.5


def threads_for(jobs: int) -> int:
    return max(1, (os.cpu_count() or 1) // jobs)


def train_in_worker(job: Job, threads: int) -> tuple[str, dict | None]:
    """One variant in a process of its own (a ``--jobs`` worker, a Ray task), trained as ``--jobs 1`` would,
    with ``threads`` threads: ``("row", row)``, or ``("interrupted", None)`` when it was stopped."""
    # Read by TensorFlow when it starts its thread pools, so they count only before its first use here.
    for name in ("TF_NUM_INTRAOP_THREADS", "OMP_NUM_THREADS"):
        os.environ[name] = str(threads)
    os.environ["TF_NUM_INTEROP_THREADS"] = "1"
    from ..keras_env import set_verbose
    from ..plugins.loading import load_plugins
    from ..training.result import Interrupted
    from .run import train_job

    set_verbose(False)
    plugins = load_plugins()
    try:
        return "row", train_job(job, plugins.registry, plugins, lambda line: print(f"[{job.id}] {line}", flush=True))
    except (Interrupted, KeyboardInterrupt):
        return "interrupted", None


def _work(job: Job, threads: int, conn) -> None:
    signal.signal(signal.SIGTERM, stop_on_signal)
    conn.send(train_in_worker(job, threads))
    conn.close()


def run_pool(jobs: list[Job], n: int, done, stopped) -> None:
    """Train ``jobs`` ``n`` at a time; ``done(row)`` for each row, ``stopped(job)`` for a variant stopped from
    outside (its process signalled, not the sweep)."""
    context: Any = multiprocessing.get_context(START_METHOD)
    threads = threads_for(n)
    pending, running = list(jobs), dict[Any, tuple[Any, Job]]()
    try:
        while pending or running:
            while pending and len(running) < n:
                job = pending.pop(0)
                receive, send = context.Pipe(duplex=False)
                process = context.Process(target=_work, args=(job, threads, send), name=f"surgery-sweep-{job.id}")
                process.start()
                send.close()
                running[receive] = (process, job)
            for ready in connection.wait(list(running), timeout=POLL):
                process, job = running.pop(ready)
                try:
                    kind, row = ready.recv()  # type: ignore[union-attr,call-arg]
                except EOFError:
                    kind, row = "died", None
                process.join()
                if kind == "row":
                    done(row)
                elif kind == "interrupted":
                    stopped(job, None)
                else:
                    stopped(job, f"its worker process ended with exit status {process.exitcode}")
    except BaseException:
        for process, _ in running.values():
            process.terminate()
        for process, _ in running.values():
            process.join()
        raise
