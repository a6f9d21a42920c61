"""The ``lora`` op: low-rank adapters through Keras' ``enable_lora``, everything else frozen."""

from __future__ import annotations

from typing import Any

from surgery import (
    SELECTOR_PROPERTIES,
    RegisterOp,
    State,
    StepContext,
    add_lora,
    counted,
    hookimpl,
    parse_slice,
    select_layers,
)

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "rank": {"type": "integer", "minimum": 1, "description": "the rank of the low-rank matrices"},
        "alpha": {
            "type": "number",
            "exclusiveMinimum": 0,
            "description": "scales the update as alpha / rank (Keras' lora_alpha); the rank unless given",
        },
        **SELECTOR_PROPERTIES,
    },
    "required": ["rank"],
    "additionalProperties": False,
}


def check(params: dict[str, Any], ctx: StepContext) -> None:
    if "layers" in params:
        parse_slice(params["layers"])


def apply(state: State, params: dict[str, Any], ctx: StepContext) -> State:
    model = state.model
    selectors = {k: v for k, v in params.items() if k in SELECTOR_PROPERTIES}
    picked = [model.layers[i] for i in select_layers(model.layers, selectors or {"layers": ":"})]
    rank, alpha = params["rank"], params.get("alpha", params["rank"])
    added = add_lora(model, picked, rank, alpha)
    holders = added.holders
    span = holders[0] if len(holders) == 1 else f"{holders[0]} .. {holders[-1]}"
    note = (
        f"lora: rank {rank}, alpha {alpha:g} on {counted(len(added.targets), 'layer')} in "
        f"{counted(len(holders), 'layer')} ({span}): {added.lora_params:,} LoRA params train, "
        f"{added.frozen_params:,} params frozen"
    )
    return state.evolve(note, model=model)


@hookimpl
def surgery_register_ops(register: RegisterOp) -> None:
    register(
        "lora",
        SCHEMA,
        apply,
        check=check,
        description="Low-rank adapters (Keras' enable_lora) on attention query/value or selected layers; the rest frozen",
        examples=[{"rank": 8, "alpha": 16}, {"rank": 4, "names": ["transformer_block_1*"]}],
    )
