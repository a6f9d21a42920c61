"""Importing Keras (and so TensorFlow) only when a model is built, and quietly.

TensorFlow's C++ runtime writes start-up lines straight to file descriptor 2
(absl logs before its own log level applies, CUDA probing), so neither
TF_CPP_MIN_LOG_LEVEL nor Python's warnings filters silence them. In quiet
mode we point fd 2 at a temporary file while TensorFlow starts and give it
back afterwards; if the import fails, what it wrote is replayed.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import warnings
from typing import Any

from .errors import SurgeryError

_quiet = True
RECURSION_LIMIT = 5000  # see keras()


def set_verbose(verbose: bool) -> None:
    global _quiet
    _quiet = not verbose
    if _quiet:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def is_quiet() -> bool:
    """Whether library logs are to be hidden (no --verbose)."""
    return _quiet


@contextlib.contextmanager
def native_stderr_muted():
    """Send fd 2 to a temporary file for the duration; replay it if the body fails.

    Not for bad input (its one line says it all) nor for Ctrl-C or SIGTERM: only a
    failure of our own or a library's may be explained by what the libraries logged.
    """
    if not _quiet:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                yield
        except (SurgeryError, KeyboardInterrupt):
            raise
        except BaseException:
            os.dup2(saved, 2)
            sink.seek(0)
            sys.stderr.write(sink.read().decode("utf-8", "replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def keras() -> Any:
    """The keras module, imported quietly on first use (TensorFlow backend start-up included)."""
    if "keras" in sys.modules and "tensorflow" in sys.modules:
        return sys.modules["keras"]
    # Keras walks a functional graph recursively, one frame per layer of depth: the default bound (1000)
    # stops a deep backbone plus a long spec (RecursionError). Specs are bounded by MAX_STEPS, backbones by
    # their depth; 5000 frames stay well inside the 8 MiB C stack even on Python 3.10.
    sys.setrecursionlimit(max(sys.getrecursionlimit(), RECURSION_LIMIT))
    with native_stderr_muted():
        import keras as _keras
        import tensorflow as tf

        # Backend start-up (CUDA probing) logs on first use, so do that use here.
        tf.constant(0)
        if _quiet:
            tf.get_logger().setLevel("ERROR")
            import absl.logging

            absl.logging.set_verbosity(absl.logging.ERROR)
    if _quiet:
        warnings.filterwarnings("ignore", module=r"(keras|tensorflow|tf2onnx|onnx)(\.|$)")
    return _keras


def seeded(seed: int):
    """Make Keras' next random initialisations a function of ``seed`` alone."""
    keras().utils.set_random_seed(seed)


def keras_cache_dir():
    """Where keras.utils.get_file keeps downloads (KERAS_HOME, else ~/.keras): ImageNet weights, class index."""
    from pathlib import Path

    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(home) / "models"
