"""Where a run trains: one device, every local GPU, or several machines.

- ``default``: Keras' ``fit`` on one device (the GPU TensorFlow picks, else the CPU).
- ``mirrored``: ``tf.distribute.MirroredStrategy`` with ``fit``: one replica per local GPU, each batch split
  among them.
- ``multiworker``: ``tf.distribute.MultiWorkerMirroredStrategy`` over the machines ``TF_CONFIG`` lists,
  trained by ``loop.fit``, because Keras 3's ``fit`` fails under it (keras-team/keras#20585). Only the
  chief writes the run folder.

``TF_CONFIG`` is read and checked here without TensorFlow, so a bad one is one error line before anything
starts. TensorFlow lets collective ops be configured only before its runtime starts, so ``Runner.start``
must run before anything else touches TensorFlow (``train`` calls it first).
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass

from ..errors import SurgeryError

ENV = "TF_CONFIG"
EXAMPLE = '{"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", "index": 0}}'


class StrategyError(SurgeryError):
    """The strategy cannot be set up: no TF_CONFIG, a malformed one, or a runtime already started."""


class WorkerLost(SurgeryError):
    """Another worker stopped answering during multi-worker training (not bad input: exit 1)."""

    exit_code = 1


@dataclass(frozen=True)
class Worker:
    """This process's place in the cluster; a single process is the chief of a cluster of one."""

    task: str = "worker"
    index: int = 0
    count: int = 1
    is_chief: bool = True

    def describe(self) -> str:
        return f"{self.task} {self.index}{' (chief)' if self.is_chief else ''} of {self.count}"


def _bad(message: str) -> StrategyError:
    return StrategyError(f"{message}; expected for example {EXAMPLE}", where=ENV)


def _addresses(cluster: dict) -> None:
    seen = set()
    for task, addresses in cluster.items():
        if task not in ("chief", "worker"):
            why = (
                ("parameter-server training" if task == "ps" else "a separate evaluator")
                if task in ("ps", "evaluator")
                else "no task type surgery knows"
            )
            raise _bad(f'cluster has "{task}" tasks, which are for {why}; multiworker uses "chief" and "worker"')
        if not isinstance(addresses, list) or not addresses:
            raise _bad(f'cluster.{task} must be a non-empty list of "host:port" strings')
        if task == "chief" and len(addresses) != 1:
            raise _bad(f"cluster.chief lists {len(addresses)} addresses; a cluster has one chief")
        for address in addresses:
            host, _, port = address.rpartition(":") if isinstance(address, str) else ("", "", "")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise _bad(f'cluster.{task} has {json.dumps(address)}, not a "host:port" address')
            if address in seen:
                raise _bad(f"the address {address} is listed twice")
            seen.add(address)


def parse(raw: str) -> Worker:
    """TF_CONFIG's text -> this process's place in the cluster; anything malformed is a StrategyError."""
    try:
        config = json.loads(raw)
    except ValueError as e:
        raise _bad(f"not valid JSON ({e})") from None
    if (
        not isinstance(config, dict)
        or not isinstance(config.get("cluster"), dict)
        or not isinstance(config.get("task"), dict)
    ):
        raise _bad('needs a "cluster" object and a "task" object')
    cluster, task = config["cluster"], config["task"]
    _addresses(cluster)
    if "worker" not in cluster and "chief" not in cluster:
        raise _bad("cluster lists no workers")
    kind, index = task.get("type"), task.get("index", 0)
    if kind not in cluster:
        raise _bad(
            f"task.type is {json.dumps(kind)}, which is not a task type of the cluster ({', '.join(sorted(cluster))})"
        )
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(cluster[kind]):
        raise _bad(
            f"task.index is {json.dumps(index)}; cluster.{kind} has {len(cluster[kind])} "
            f"address{'es' * (len(cluster[kind]) != 1)} (0..{len(cluster[kind]) - 1})"
        )
    # TensorFlow's rule: the chief task if there is one, else worker 0.
    chief = kind == "chief" or (kind == "worker" and index == 0 and "chief" not in cluster)
    return Worker(kind, index, sum(len(a) for a in cluster.values()), chief)


def worker(strategy: str, environ=None) -> Worker:
    """This process's place: from TF_CONFIG for multiworker (which needs it), a cluster of one otherwise."""
    environ = os.environ if environ is None else environ
    if strategy != "multiworker":
        return Worker()
    raw = environ.get(ENV)
    if not raw:
        raise StrategyError(
            f"--strategy multiworker needs the {ENV} environment variable on every machine, "
            f"naming the cluster and this machine's task, e.g. {EXAMPLE} (see docs/training.md)",
            where="--strategy",
        )
    return parse(raw)


def ignored_config_note(strategy: str, environ=None) -> str | None:
    environ = os.environ if environ is None else environ
    if strategy != "multiworker" and environ.get(ENV):
        return f"note: {ENV} is set but the strategy is {strategy}: training on this machine only"
    return None


class Runner:
    """The strategy a run trains under, and which ``fit`` runs under it."""

    def __init__(self, name: str, worker: Worker, strategy=None):
        self.name, self.worker, self.strategy = name, worker, strategy

    @classmethod
    def start(cls, name: str, worker: Worker) -> Runner:
        if name == "default":
            return cls(name, worker)
        from ..keras_env import native_stderr_muted

        started = None
        with native_stderr_muted():
            import tensorflow as tf

            if name == "mirrored":
                started = tf.distribute.MirroredStrategy()
            else:
                try:
                    started = tf.distribute.MultiWorkerMirroredStrategy()
                except RuntimeError as e:
                    if "program startup" not in str(e):
                        raise
        if started is None:
            raise StrategyError(
                "multiworker training must run in a process of its own: TensorFlow's runtime "
                "has already started here, and its collective ops can only be set up before "
                "that; run `surgery train` as a command",
                where="--strategy",
            )
        return cls(name, worker, started)

    def scope(self):
        return self.strategy.scope() if self.strategy is not None else contextlib.nullcontext()

    def describe(self) -> str:
        if self.strategy is None:
            return ""
        replicas = self.strategy.num_replicas_in_sync
        where = f", {self.worker.describe()}" if self.name == "multiworker" else ""
        return f"strategy {self.name}: {replicas} replica{'s' * (replicas != 1)}{where}"

    def fit(
        self, model, sets, *, loss, metric, initial_epoch: int, epochs: int, callbacks: list, verbose, class_weight=None
    ) -> None:
        if self.name != "multiworker":
            model.fit(
                sets.train,
                validation_data=sets.validation,
                initial_epoch=initial_epoch,
                epochs=epochs,
                callbacks=callbacks,
                verbose=verbose,
                shuffle=False,
                class_weight=class_weight,
            )
            return
        import tensorflow as tf

        from . import loop

        try:
            loop.fit(
                model,
                sets,
                self.strategy,
                loss=loss,
                metric=metric,
                initial_epoch=initial_epoch,
                epochs=epochs,
                callbacks=callbacks,
                verbose=verbose,
                class_weight=class_weight,
            )
        except (
            tf.errors.UnavailableError,
            tf.errors.DeadlineExceededError,
            tf.errors.CancelledError,
            tf.errors.AbortedError,
        ) as e:
            # TensorFlow's message is a page of gRPC detail; --debug shows it.
            raise WorkerLost(
                f"lost contact with another worker ({type(e).__name__}); start every worker again, "
                "with --resume to go on from the chief's last checkpoint",
                where=self.worker.describe(),
            ) from e


def weights_digest(model) -> str:
    """A short hash of every weight's bytes, in order: equal on every worker whose replica is in sync."""
    import hashlib

    import numpy as np

    digest = hashlib.sha256()
    for weight in model.weights:
        digest.update(np.ascontiguousarray(weight.numpy()).tobytes())
    return digest.hexdigest()[:16]
