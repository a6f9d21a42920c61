"""Running a validated spec's steps into a Keras model, with the names Keras gives as in a fresh process."""

from __future__ import annotations

import collections
import contextlib
import re

from .errors import InternalError, SpecError, SurgeryError, one_line
from .keras_env import keras, native_stderr_muted
from .model.graph import make_model
from .model.state import State
from .spec.loading import Spec, StepContext, op_params


def out_of_memory(e: Exception) -> str:
    detail = one_line(one_line(e, None).split(" [Op:")[0], 160)
    return (
        f"not enough memory to build this step ({type(e).__name__}: {detail}); a layer or option asks for "
        "more than this machine has (classes, units, input_shape)"
    )


_UIDS = "object_name_uids"  # keras.src.utils.naming's counters, per name prefix, in Keras' global state


@contextlib.contextmanager
def fresh_names():
    """Keras' automatic names (``input_layer``, ``conv2d_80``) as a fresh process gives them, whatever was built before.

    Keras 3 makes an automatic name unique with a counter per prefix, kept per thread in its global state
    (``keras.src.utils.naming.uniquify`` and ``get_uid``): a second build in a notebook would name its input
    ``input_layer_1``. The build gets empty counters. Afterwards the caller's come back, each raised to at
    least what the build used and past the names the body reports (the model's layers, which surgery names
    itself for new layers), so a layer the caller creates next is not named like one of the model's.
    """
    keras()
    try:
        from keras.src.backend.common import global_state
    except ImportError:  # a Keras that keeps them elsewhere: names as Keras gives them (tests/test_names.py fails)
        yield []
        return
    saved = global_state.get_global_attribute(_UIDS)
    fresh: collections.defaultdict = collections.defaultdict(int)
    global_state.set_global_attribute(_UIDS, fresh)
    used: list[str] = []
    try:
        yield used
    finally:
        merged = saved if saved is not None else collections.defaultdict(int)
        for prefix, count in [*fresh.items(), *map(_as_uid, used)]:
            merged[prefix] = max(merged.get(prefix, 0), count)
        global_state.set_global_attribute(_UIDS, merged)


def _as_uid(name: str) -> tuple[str, int]:
    """The counter that makes Keras' next automatic name avoid ``name``: "dense_2" -> ("dense", 3)."""
    m = re.fullmatch(r"(.+)_(\d+)", name)
    return (m.group(1), int(m.group(2)) + 1) if m else (name, 1)


def run_steps(spec: Spec, registry) -> State:
    """Run the spec's steps; the same spec gives the same layer names in any process (``fresh_names``)."""
    keras()  # start TensorFlow (quietly) before the first op does
    with fresh_names() as used:
        state = _run(spec, registry)
        used.extend(layer.name for layer in state.model.layers)
    return state


def _run(spec: Spec, registry) -> State:
    state = None
    for i, step in enumerate(spec.steps):
        op = step["op"]
        info = registry.ops[op]
        ctx = StepContext(spec, i, op, registry)
        params = op_params(step)
        try:
            with native_stderr_muted():
                state = info.apply(state, params, ctx)
        except SurgeryError as e:
            raise e.located(file=spec.file, where=ctx.where) from None
        except MemoryError as e:
            raise SpecError(out_of_memory(e), file=spec.file, where=ctx.where) from None
        except Exception as e:
            if type(e).__name__ == "ResourceExhaustedError":  # TensorFlow's out-of-memory, without importing it
                raise SpecError(out_of_memory(e), file=spec.file, where=ctx.where) from None
            raise InternalError(
                f"plugin {info.plugin!r} failed: {type(e).__name__}: {e} (run with --debug for the traceback)",
                file=spec.file,
                where=ctx.where,
            ) from e
        if not isinstance(state, State):
            raise InternalError(
                f"plugin {info.plugin!r}: apply returned {type(state).__name__}, not a State",
                file=spec.file,
                where=ctx.where,
            )
        if "as" in step:
            try:
                state = state.evolve(tensors={**state.tensors, step["as"]: state.output})
            except SurgeryError as e:
                raise e.located(file=spec.file, where=ctx.where) from None
    if state is None:  # validate() refuses a spec without steps
        raise InternalError("the spec has no steps", file=spec.file)
    return state.evolve(model=make_model(state.model.inputs, state.model.outputs, name=spec.name))
