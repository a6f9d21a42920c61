"""What the exporters share: the graph to export, its names, and the check that it computes what Keras does.

An exported file is only as good as its agreement with the Keras model, so
every exporter runs the written file on the same random batch as Keras and
fails (the host then removes the file) when they differ by more than
``atol``. Importing this module is cheap; Keras, TensorFlow, onnx and
onnxruntime are imported inside the functions that need them.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from ..errors import EXIT_INTERNAL, SpecError, SurgeryError, one_line

DEFAULT_ATOL = 1e-4
DEFAULT_INPUT_NAME = "image"
BATCH_DIM = "batch"
VERIFY_BATCH = 2
VERIFY_SEED = 0
# A model whose spatial dimensions are free (None) is checked at this side.
FREE_DIM_SIZE = 224
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")


class ExportError(SurgeryError):
    """The exported file does not compute what the Keras model computes, or could not be made."""

    exit_code = EXIT_INTERNAL


class TooStrictError(SurgeryError):
    """An export that passes the default tolerance fails only the tighter one the user asked for: bad input."""


@dataclass
class Target:
    """The model as it is exported: inference mode, outputs keyed by name, and what was changed."""

    model: Any  # keras.Model taking the inputs in `input_names` order, returning {name: tensor}
    input_names: list
    output_names: list
    input_shapes: list  # batch dimension first, None where free
    input_dtypes: list
    output_shapes: list
    notes: list = field(default_factory=list)

    def signature(self):
        """The tf.TensorSpec input signature Keras' export takes: batch free, named."""
        import tensorflow as tf

        specs = [
            tf.TensorSpec(shape, dtype, name=name)
            for name, shape, dtype in zip(self.input_names, self.input_shapes, self.input_dtypes)
        ]
        return [specs[0] if len(specs) == 1 else specs]

    def describe(self) -> str:
        """``image[batch,224,224,3] -> dense[batch,2]`` for the one-line report."""

        def one(name, shape):
            dims = [BATCH_DIM if i == 0 else ("?" if d is None else str(d)) for i, d in enumerate(shape)]
            return f"{name}[{','.join(dims)}]"

        inputs = ", ".join(one(n, s) for n, s in zip(self.input_names, self.input_shapes))
        return inputs + " -> " + ", ".join(one(n, s) for n, s in zip(self.output_names, self.output_shapes))


def read_options(options: dict | None, allowed: tuple, fmt: str) -> dict:
    """The exporter's options, with unknown keys refused (a typo must not be ignored)."""
    options = dict(options or {})
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise SpecError(f'the {fmt} exporter takes no option "{unknown[0]}"; it takes: ' + ", ".join(allowed))
    atol = options.get("atol", DEFAULT_ATOL)
    if isinstance(atol, bool) or not isinstance(atol, (int, float)) or not atol >= 0:
        raise SpecError(f"atol must be a number >= 0, got {atol!r}")
    options["atol"] = float(atol)
    return options


def _all_layers(model) -> list:
    # Keras' own recursive walk: nested models and layers inside layers too.
    return list(model._flatten_layers(include_self=False, recursive=True))


def _low_precision(model) -> str | None:
    """The name of the first non-float32 compute policy in the model (mixed_float16, ...), if any."""
    for layer in _all_layers(model):
        policy = getattr(layer, "dtype_policy", None)
        if policy is not None and policy.compute_dtype in ("float16", "bfloat16"):
            return policy.name
    return None


def _float32_config(value):
    """A layer config with every float16/bfloat16 (or mixed) dtype policy replaced by float32."""
    if isinstance(value, dict):
        # A serialized DTypePolicy holds its name as a string, which the last line below replaces.
        return {k: _float32_config(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_float32_config(v) for v in value]
    if value in ("mixed_float16", "mixed_bfloat16", "float16", "bfloat16"):
        return "float32"
    return value


def float32_twin(model):
    """The same graph and weights with float32 layers, so that it runs in onnxruntime on CPU."""
    from ..keras_env import keras

    k = keras()

    def rebuild(layer):
        return layer.__class__.from_config(_float32_config(layer.get_config()))

    try:
        twin = k.models.clone_model(model, clone_function=rebuild, recursive=True)
        twin.set_weights(model.get_weights())
    except Exception as e:  # noqa: BLE001 (whatever Keras raises, the user gets one line)
        raise ExportError(
            f"could not make a float32 copy of the mixed-precision model: {type(e).__name__}: {str(e)[:300]}"
        ) from None
    return twin


def _check_names(names, what: str) -> None:
    for name in names:
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise SpecError(
                f"{what} name {name!r} is not valid; use letters, digits, _ . - (starting with a letter or _)"
            )
    if len(set(names)) != len(names):
        raise SpecError(f"{what} names must be distinct, got {names}")


def _names(given, defaults: list, what: str) -> list:
    if given is None:
        names = list(defaults)
    else:
        names = list(given) if isinstance(given, (list, tuple)) else [given]  # one name, or a wrong type
        if len(names) != len(defaults):
            raise SpecError(f"the model has {len(defaults)} {what}s but {len(names)} {what} names were given")
    _check_names(names, what)
    return names


def _default_output_names(model, count: int) -> list:
    """Each output named after the layer that makes it; a layer with several outputs numbers them."""
    given = list(getattr(model, "output_names", None) or [f"output_{i}" for i in range(count)])
    seen: dict = {}
    names = []
    for name in given:
        seen[name] = seen.get(name, 0) + 1
        names.append(f"{name}_{seen[name] - 1}" if given.count(name) > 1 else name)
    return names


def prepare(model, options: dict, *, float32: bool) -> Target:
    """The inference graph to export, as a functional model over new inputs.

    Layers are called with ``training=False``: Keras' export traces the model
    with ``training`` unset, and the Random* augmentation layers default to
    training mode, so they would put random ops into the exported graph. In
    inference mode they are the identity and leave no trace. Outputs are
    returned as a dict because TensorFlow exporters name outputs by its keys.
    """
    from ..keras_env import keras

    k = keras()
    notes = []
    source = model
    policy = _low_precision(model) if float32 else None
    if policy:
        source = float32_twin(model)
        notes.append(f"float32 twin of a {policy} model")
    flat_inputs = k.tree.flatten(model.input)
    in_defaults = [DEFAULT_INPUT_NAME] if len(flat_inputs) == 1 else [t.name for t in flat_inputs]
    input_names = _names(options.get("input_name"), in_defaults, "input")
    shapes = [(None,) + tuple(t.shape[1:]) for t in flat_inputs]
    dtypes = ["float32" if policy and "float" in str(t.dtype) else str(t.dtype) for t in flat_inputs]
    new_inputs = [k.Input(batch_shape=s, dtype=d, name=n) for s, d, n in zip(shapes, dtypes, input_names)]
    outputs = k.tree.flatten(source(k.tree.pack_sequence_as(model.input, new_inputs), training=False))
    output_names = _names(options.get("output_name"), _default_output_names(model, len(outputs)), "output")
    clash = set(input_names) & set(output_names)
    if clash:
        raise SpecError(
            f'"{min(clash)}" names both an input and an output; give the output another '
            "name (option output_name, --output-name)"
        )
    wrapped = k.Model(
        new_inputs[0] if len(new_inputs) == 1 else new_inputs,
        dict(zip(output_names, outputs)),
        name=f"{model.name}_export",
    )
    return Target(wrapped, input_names, output_names, shapes, dtypes, [tuple(t.shape) for t in outputs], notes)


def random_inputs(target: Target, batch: int = VERIFY_BATCH, seed: int = VERIFY_SEED) -> dict:
    """A fixed random batch: standard normal floats (about the range of preprocessed images), small ints."""
    import numpy as np

    rng = np.random.default_rng(seed)
    batch_inputs = {}
    for name, shape, dtype in zip(target.input_names, target.input_shapes, target.input_dtypes):
        full = (batch,) + tuple(FREE_DIM_SIZE if d is None else d for d in shape[1:])
        if "int" in dtype:
            batch_inputs[name] = rng.integers(0, 10, size=full).astype(dtype)
        else:
            batch_inputs[name] = rng.standard_normal(full).astype(dtype)
    return batch_inputs


def keras_outputs(target: Target, inputs: dict) -> dict:
    import numpy as np

    flat = [inputs[n] for n in target.input_names]
    result = target.model(flat[0] if len(flat) == 1 else flat, training=False)
    return {name: np.asarray(result[name]) for name in target.output_names}


def max_abs_diff(expected: dict, actual: dict) -> float:
    """The largest |expected - actual| over all outputs; inf for NaN or a shape that differs."""
    import numpy as np

    worst = 0.0
    for name, want in expected.items():
        got = np.asarray(actual[name])
        if got.shape != want.shape:
            return float("inf")
        diff = np.abs(want.astype("float64") - got.astype("float64"))
        worst = max(worst, float(np.max(diff)) if diff.size else 0.0)
        if np.isnan(diff).any():
            return float("inf")
    return worst


def compare(target: Target, run, atol: float, what: str) -> float:
    """Run ``run(inputs) -> {name: array}`` and Keras on one random batch; fail above ``atol``."""
    inputs = random_inputs(target)
    expected = keras_outputs(target, inputs)
    try:
        actual = run(inputs)
    except Exception as e:  # noqa: BLE001 (a runtime's own error types; one line either way)
        raise ExportError(f"{what} could not run the exported model: {type(e).__name__}: {one_line(e)}") from None
    diff = max_abs_diff(expected, actual)
    if not diff <= atol:
        failed = (
            f"verification failed: {what} and Keras differ by up to {diff:.3g} on a random batch "
            f"of {VERIFY_BATCH} (seed {VERIFY_SEED}), more than atol {atol:g}; nothing was written"
        )
        if diff <= DEFAULT_ATOL:
            # The export is as good as any passes by default: the tolerance asked for is what fails it.
            raise TooStrictError(f"{failed} (the default atol {DEFAULT_ATOL:g} passes it)")
        raise ExportError(failed)
    return diff


@contextlib.contextmanager
def progress(message: str, stream=None, every: float = 10.0):
    """Say on a terminal what a long step is doing, and that it still is, every ``every`` seconds.

    Only on a terminal: captured stderr (CI logs, tests, pipes) stays exactly
    the one ``error:`` line the error model promises. Writes to a duplicate of
    the terminal's descriptor, because quiet mode points fd 2 elsewhere while
    TensorFlow works (keras_env.native_stderr_muted).
    """
    stream = stream or sys.stderr
    if not getattr(stream, "isatty", lambda: False)():
        yield
        return
    with contextlib.ExitStack() as stack:
        if hasattr(stream, "fileno"):
            stream.flush()
            stream = stack.enter_context(os.fdopen(os.dup(stream.fileno()), "w"))
        start = time.monotonic()
        stream.write(f"{message} ...\n")
        stream.flush()
        done = threading.Event()

        def beat():
            while not done.wait(every):
                stream.write(f"  still {message} ({time.monotonic() - start:.0f} s)\n")
                stream.flush()

        thread = threading.Thread(target=beat, daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join()


@contextlib.contextmanager
def converting(message: str, failure: str):
    """Progress while a conversion runs; whatever it raises becomes one ExportError line naming ``failure``.

    TensorFlow and tf2onnx fail in many ways (ValueError, ConverterError, KeyError, ...), none of
    them bad input the user can name, so one message shape serves them all.
    """
    with progress(message):
        try:
            yield
        except ExportError:
            raise
        except Exception as e:  # noqa: BLE001
            raise ExportError(f"{failure} failed: {type(e).__name__}: {one_line(e)}") from None
