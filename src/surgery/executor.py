"""Running a validated spec's steps into a Keras model."""

from __future__ import annotations

from .errors import InternalError, SurgeryError
from .graph import make_model
from .keras_env import keras, native_stderr_muted
from .spec import Spec, StepContext, op_params
from .state import State


def run_steps(spec: Spec, registry) -> State:
    state = None
    keras()  # start TensorFlow (quietly) before the first op does
    for i, step in enumerate(spec.steps):
        op = step["op"]
        info = registry.ops[op]
        ctx = StepContext(spec, i, op, registry)
        params = op_params(step)
        try:
            with native_stderr_muted():
                state = info.apply(state, params, ctx)
        except SurgeryError as e:
            raise e.located(file=spec.file, where=ctx.where)
        except Exception as e:
            raise InternalError(
                f"plugin {info.plugin!r} failed: {type(e).__name__}: {e} (run with --debug for the traceback)",
                file=spec.file, where=ctx.where) from e
        if not isinstance(state, State):
            raise InternalError(f"plugin {info.plugin!r}: apply returned {type(state).__name__}, not a State",
                                file=spec.file, where=ctx.where)
        if "as" in step:
            try:
                state = state.evolve(tensors={**state.tensors, step["as"]: state.output})
            except SurgeryError as e:
                raise e.located(file=spec.file, where=ctx.where)
    return state.evolve(model=make_model(state.model.inputs, state.model.outputs, name=spec.name))
