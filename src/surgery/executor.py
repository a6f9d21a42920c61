"""Running a validated spec's steps into a Keras model."""

from __future__ import annotations

from .errors import InternalError, SpecError, SurgeryError, one_line
from .graph import make_model
from .keras_env import keras, native_stderr_muted
from .spec import Spec, StepContext, op_params
from .state import State


def out_of_memory(e: Exception) -> str:
    detail = one_line(one_line(e, None).split(" [Op:")[0], 160)
    return (
        f"not enough memory to build this step ({type(e).__name__}: {detail}); a layer or option asks for "
        "more than this machine has (classes, units, input_shape)"
    )


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
