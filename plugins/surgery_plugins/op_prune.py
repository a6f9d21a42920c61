"""The ``prune`` op: remove output channels structurally, by dependency group (``surgery.prune_channels``).

Two ways to say what goes:

- ``channels``: ``{"LAYER": [i, ...]}`` removes those output channels of LAYER and every
  channel coupled to them (BatchNormalization after a conv, every producer of a residual
  stream, a Concatenate's branches at their offsets, Flatten into Dense). LAYER may be any
  layer of the group.
- ``ratio``: that fraction of channels, least important first by ``criterion``, per group
  (``scope: local``) or across groups by normalised importance (``global``), in the groups
  whose producers the selectors pick (all prunable groups by default).

The model is rebuilt with the same layer names, configs and trainable flags, and weights
that are exact slices of the old ones. Named tensors (``"as"``) and heads set aside by a
branch are rebuilt with it: a named tensor that a later layer already reads may lose
channels, one that nothing reads yet keeps them, as an output does.
"""

from __future__ import annotations

from typing import Any, cast

from surgery import (
    SELECTOR_PROPERTIES,
    OpError,
    RegisterOp,
    State,
    StepContext,
    analyze_channels,
    hookimpl,
    make_model,
    model_nodes,
    parse_slice,
    prune_channels,
    pruning_criteria,
    select_channels,
    select_layers,
)


def _selector(key: str) -> dict:
    prop = cast(dict, SELECTOR_PROPERTIES[key])
    return {**prop, "description": f"{prop['description']}; with ratio: prune only the groups these layers make"}


RATIO_ONLY = ("criterion", "scope", "round_to", "min_channels", *SELECTOR_PROPERTIES)

SCHEMA = {
    "type": "object",
    "properties": {
        "channels": {
            "type": "object",
            "minProperties": 1,
            "additionalProperties": {
                "type": "array",
                "minItems": 1,
                "items": {"type": "integer", "minimum": 0},
                "description": "indices of the layer's output channels",
            },
            "description": '{"LAYER": [output channel indices]}: remove these and every channel coupled to them; '
            "LAYER may be any layer of the group",
        },
        "ratio": {
            "type": "number",
            "exclusiveMinimum": 0,
            "maximum": 1,
            "description": "the fraction of channels to remove, between 0 and 1 (exclusive), e.g. 0.3",
        },
        "criterion": {
            "enum": list(pruning_criteria),
            "default": "l1",
            "description": "channel importance: l1 or l2 norm of the group's weights, bn_scale (|gamma| of its "
            "BatchNormalization; l1 where a channel has none), random (seeded by the spec's seed)",
        },
        "scope": {
            "enum": ["local", "global"],
            "default": "local",
            "description": "local: the ratio of every group; global: the ratio of all chosen channels, "
            "least important first across groups (importance divided by the group's mean)",
        },
        **{key: _selector(key) for key in SELECTOR_PROPERTIES},
        "round_to": {
            "type": "integer",
            "minimum": 1,
            "default": 1,
            "description": "keep a multiple of this many channels in each group of at least that many "
            "(8 or 16 suit fast CPU and GPU kernels)",
        },
        "min_channels": {
            "type": "integer",
            "minimum": 1,
            "default": 1,
            "description": "keep at least this many channels in each group",
        },
    },
}


def check(params: dict[str, Any], ctx: StepContext) -> None:
    given = [k for k in ("channels", "ratio") if k in params]
    if len(given) != 1:
        raise OpError(
            'give exactly one of "channels" ({"LAYER": [output channel indices]}) or "ratio" '
            "(the fraction of channels to remove, e.g. 0.3)"
        )
    if "channels" in params:
        extra = [k for k in RATIO_ONLY if k in params]
        if extra:
            keys = ", ".join(f'"{k}"' for k in extra)
            raise OpError(
                f"{keys} {'applies' if len(extra) == 1 else 'apply'} to ratio pruning only; "
                '"channels" names the channels to remove itself'
            )
    elif params["ratio"] >= 1:
        raise OpError(f"ratio: {params['ratio']} would remove every channel; give a fraction below 1, e.g. 0.3")
    if "layers" in params:
        parse_slice(params["layers"])


def _workspace(state):
    """(one model over the outputs and the live named tensors, {name: its position}, positions that may lose channels)."""
    model, ws = state.model, state.workspace()
    positions = {}
    for name, t in state.tensors.items():
        hit = next((i for i, o in enumerate(ws.outputs) if o is t), None)
        if hit is not None:
            positions[name] = hit
    read = {id(t) for node in model_nodes(ws) for t in node.input_tensors}
    n = len(model.outputs)
    free = {i for i in positions.values() if i >= n and id(ws.outputs[i]) in read}
    return ws, positions, free


def _chosen_groups(state, analysis, params) -> list | None:
    """Group ids whose producers the selectors pick (None: every prunable group); OpError when none can go."""
    if not any(k in params for k in SELECTOR_PROPERTIES):
        if not analysis.prunable_groups:
            listed = analysis.as_dict()["unprunable"]
            why = f": group {listed[0]['id']} ({listed[0]['producers'][0]}): {listed[0]['reason']}" if listed else ""
            raise OpError("the model has no channel group that can be pruned" + why)
        return None
    layers = state.model.layers
    names = {layers[i].name for i in select_layers(layers, params)}
    groups = [g for g in analysis.groups if names.intersection(g.producers)]
    picked = sorted(names, key=[la.name for la in layers].index)
    shown = ", ".join(picked[:4]) + (f" and {len(picked) - 4} more" if len(picked) > 4 else "")
    if not groups:
        raise OpError(
            f"the selected layers ({shown}) make no channels of their own, so they choose no group; select "
            "producers (Conv, Dense, SeparableConv layers): `surgery plan` lists each group's producers"
        )
    prunable = [g.id for g in groups if g.prunable]
    if not prunable:
        g = groups[0]
        raise OpError(
            f"the selected layers ({shown}) are in {len(groups)} group(s), none of which can be pruned: "
            f"group {g.id}: {g.reason}"
        )
    return prunable


def _change(before, after) -> str:
    return f" ({after / before - 1:+.1%})" if before else ""


def _si(n: int) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f}{unit}"
    return str(n)


def _note(report, how: str, removed: int) -> str:
    d = report.as_dict()
    groups = d["groups_pruned"]
    note = f"prune: {groups} group{'s' * (groups != 1)} pruned ({how}), "
    note += f"{d['channels_before']:,} -> {d['channels_after']:,} channels; "
    note += f"params {d['params_before']:,} -> {d['params_after']:,}{_change(d['params_before'], d['params_after'])}; "
    if d["flops_before"] is None or d["flops_after"] is None:
        note += "FLOPs not counted (the input size is not fixed)"
    else:
        note += f"FLOPs {_si(d['flops_before'])} -> {_si(d['flops_after'])}"
        note += _change(d["flops_before"], d["flops_after"])
    if not removed:
        note += "; no channel removed (the groups are too small for this ratio, round_to and min_channels)"
    for extra in d["notes"]:
        note += f"; {extra}"
    if d["reused"]:
        note += f"; {len(d['reused'])} layer(s) that cannot be rebuilt from their config are shared, unchanged"
    return note


def apply(state: State, params: dict[str, Any], ctx: StepContext) -> State:
    check(params, ctx)
    ws, positions, free = _workspace(state)
    analysis = analyze_channels(ws, free_outputs=free, declared=ctx.registry.layer_rules())
    if "channels" in params:
        removal = analysis.removal(params["channels"])
        how = "channels of " + ", ".join(params["channels"])
    else:
        criterion, scope = params.get("criterion", "l1"), params.get("scope", "local")
        removal = select_channels(
            analysis,
            ws,
            params["ratio"],
            criterion=criterion,
            scope=scope,
            groups=_chosen_groups(state, analysis, params),
            round_to=params.get("round_to", 1),
            min_channels=params.get("min_channels", 1),
            seed=ctx.seed,
        )
        how = f"ratio {params['ratio']:g}, {criterion}, {scope}"
    pruned, report = prune_channels(ws, removal)
    n = len(state.model.outputs)
    model = make_model(pruned.inputs, pruned.outputs[:n], name=state.model.name)
    tensors = {**state.tensors, **{name: pruned.outputs[i] for name, i in positions.items()}}
    return state.evolve(_note(report, how, len(removal)), model=model, tensors=tensors)


@hookimpl
def surgery_register_ops(register: RegisterOp) -> None:
    register(
        "prune",
        SCHEMA,
        apply,
        check=check,
        description="Remove output channels by dependency group: named channels, or a ratio by importance",
        examples=[
            {"channels": {"block1_conv": [0, 2]}},
            {"ratio": 0.5},
            {"ratio": 0.3, "criterion": "bn_scale", "scope": "global", "names": ["block2_*", "block3_*"]},
            {"ratio": 0.5, "criterion": "random", "round_to": 2, "min_channels": 2},
        ],
    )
