"""The ``freeze`` and ``unfreeze`` ops: choose which layers train (``surgery.freeze_layers``, ``unfreeze_layers``)."""

from __future__ import annotations

from typing import Any

from surgery import (
    FREEZE_SCHEMA,
    UNFREEZE_SCHEMA,
    RegisterOp,
    State,
    StepContext,
    freeze_layers,
    hookimpl,
    parse_slice,
    unfreeze_layers,
)


def check(params: dict[str, Any], ctx: StepContext) -> None:
    if "layers" in params:
        parse_slice(params["layers"])


def freeze(state: State, params: dict[str, Any], ctx: StepContext) -> State:
    return state.evolve(freeze_layers(state.model, params), model=state.model)


def unfreeze(state: State, params: dict[str, Any], ctx: StepContext) -> State:
    return state.evolve(unfreeze_layers(state.model, params), model=state.model)


@hookimpl
def surgery_register_ops(register: RegisterOp) -> None:
    register(
        "freeze",
        FREEZE_SCHEMA,
        freeze,
        check=check,
        description="Make layers non-trainable, by index range, names, globs or layer types",
        examples=[{"layers": "8:"}, {"names": ["block1_*"]}, {"types": ["BatchNormalization"]}],
    )
    register(
        "unfreeze",
        UNFREEZE_SCHEMA,
        unfreeze,
        check=check,
        description="Make layers trainable again (BatchNormalization stays frozen unless batchnorm=train)",
        examples=[{"layers": "-4:"}, {"names": ["conv5_*"], "batchnorm": "train"}],
    )
