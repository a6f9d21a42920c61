"""The ``preprocess`` op: the backbone's ``preprocess_input`` as layers at the model's input.

The ``.keras`` and ONNX files then take raw 0-255 pixels. The function is measured as a per-pixel affine
map and becomes one built-in layer (``surgery.preprocess_into_model``, which ``surgery train`` uses too),
so the file loads with ``safe_mode`` and no custom objects.
"""

from __future__ import annotations

from typing import Any

from surgery import (
    OpError,
    RegisterOp,
    State,
    StepContext,
    hookimpl,
    preprocess_function,
    preprocess_into_model,
    preprocess_modes,
)

MODES = preprocess_modes

SCHEMA = {
    "type": "object",
    "properties": {
        "backbone": {
            "type": "string",
            "minLength": 1,
            "description": "use this backbone's preprocess_input (default: the model's own backbone)",
        },
        "mode": {"enum": list(MODES), "description": "a keras.applications.imagenet_utils mode: caffe, tf, torch"},
    },
}


def check(params: dict[str, Any], ctx: StepContext) -> None:
    if "backbone" in params and "mode" in params:
        raise OpError('give "backbone" or "mode", not both')
    if "backbone" in params:
        _registered(params["backbone"], ctx)


def _registered(name: str, ctx):
    info = ctx.registry.backbone(name)
    if info.preprocess is None:
        raise OpError(f'backbone "{info.name}" registers no preprocess_input; give "mode"')
    return info


def _function(params, state, ctx):
    """(callable, its name for messages, the channel count it was written for)."""
    if "mode" in params:
        mode = params["mode"]
        return preprocess_function(mode, ctx.registry), f'mode "{mode}"', 3
    if "backbone" in params:
        info = _registered(params["backbone"], ctx)
    else:
        info = ctx.registry.backbones.get(state.backbone or "") if state.preprocess is not None else None
    if info is None or info.preprocess is None:
        raise OpError(
            "no preprocessing left to add: the backbone registers none, or an earlier step put it in "
            'the model; give "backbone" or "mode" to choose one'
        )
    channels = info.input_shape[-1] if info.input_shape else 3
    fn = info.preprocess
    name = fn if isinstance(fn, str) else getattr(fn, "__qualname__", repr(fn))
    return preprocess_function(info.name, ctx.registry), name, channels


def apply(state: State, params: dict[str, Any], ctx: StepContext) -> State:
    check(params, ctx)
    fn, fname, written_for = _function(params, state, ctx)
    return preprocess_into_model(state, fn, fname, written_for)


@hookimpl
def surgery_register_ops(register: RegisterOp) -> None:
    register(
        "preprocess",
        SCHEMA,
        apply,
        check=check,
        description="Put the backbone's preprocess_input into the model as built-in layers "
        "(it then takes raw 0-255 pixels)",
        examples=[{"mode": "tf"}, {"mode": "caffe"}, {"mode": "torch"}],
    )
