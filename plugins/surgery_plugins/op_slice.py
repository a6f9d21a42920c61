"""The ``slice`` op: keep a contiguous range of ``model.layers``, cutting the graph at a tensor."""

from __future__ import annotations

from typing import Any

from surgery import (
    OpError,
    RegisterOp,
    State,
    StepContext,
    cut_map,
    did_you_mean,
    hookimpl,
    keras,
    make_model,
    output_tensor_of,
    parse_slice,
    retrace,
)

SCHEMA = {
    "type": "object",
    "properties": {
        "layers": {"type": "string", "description": 'Python slice text over model.layers: ":11" keeps layers[:11]'},
        "to": {"type": "string", "minLength": 1, "description": "keep everything up to and including this layer"},
    },
}


def check(params: dict[str, Any], ctx: StepContext) -> None:
    given = [k for k in ("layers", "to") if k in params]
    if len(given) != 1:
        raise OpError('give exactly one of "layers" (slice text such as ":11") or "to" (a layer name)')
    if "layers" in params:
        parse_slice(params["layers"])


def _bounds(params, layers) -> tuple[int, int]:
    n = len(layers)
    if "to" in params:
        names = [layer.name for layer in layers]
        if params["to"] not in names:
            raise OpError(f'no layer named "{params["to"]}"' + did_you_mean(params["to"], names))
        return 0, names.index(params["to"]) + 1
    s = parse_slice(params["layers"])
    for bound in (s.start, s.stop):
        if bound is not None and not -n <= bound <= n:
            raise OpError(f"layer index {bound} is out of range; the model has {n} layers (0..{n - 1})")
    start, stop, _ = s.indices(n)
    if stop <= start:
        raise OpError(
            f'layers "{params["layers"]}" keeps no layer (start {start}, stop {stop}); '
            f"the model has {n} layers (0..{n - 1})"
        )
    return start, stop


def _describe(layer, k) -> str:
    return f"{layer.name} (index {k})"


def apply(state: State, params: dict[str, Any], ctx: StepContext) -> State:
    model = state.model
    layers = model.layers
    start, stop = _bounds(params, layers)
    cuts = cut_map(model)
    last = stop - 1
    if stop < len(layers) and not cuts.is_cut(last):
        live = cuts.live_after[last]
        near = ", ".join(_describe(layers[k], k) for k in cuts.nearest_cuts(last)) or "none"
        raise OpError(
            f"cannot cut after {_describe(layers[last], last)}: {len(live)} tensors are live there "
            f"({', '.join(op.name for _, op in live[:4])}); nearest valid cut points: {near}"
        )
    targets = model.outputs if stop == len(layers) else [output_tensor_of(model, layers[last])]
    if start == 0:
        new = make_model(model.inputs, targets)
    else:
        if not cuts.is_cut(start - 1):
            near = ", ".join(_describe(layers[k + 1], k + 1) for k in cuts.nearest_cuts(start - 1)) or "none"
            raise OpError(
                f"cannot start at {_describe(layers[start], start)}: more than one tensor flows into "
                f"the kept range there; layers that can start a range: {near}"
            )
        entry = cuts.live_after[start - 1][0][0]
        new_input = keras().Input(shape=entry.shape[1:], dtype=entry.dtype, name=f"{layers[start].name}_input")
        outs = retrace(model, {id(entry): new_input}, targets)
        new = make_model(new_input, outs)
    shape = tuple(new.outputs[0].shape)
    note = (
        f"slice: kept layers {start}..{stop - 1} ({layers[start].name} .. {layers[last].name}) "
        f"of {len(layers)}; output {shape}"
    )
    return state.evolve(note, model=new)


@hookimpl
def surgery_register_ops(register: RegisterOp) -> None:
    register(
        "slice",
        SCHEMA,
        apply,
        check=check,
        description="Keep model.layers[start:stop] (Python slice text) or everything up to a named layer",
        examples=[{"layers": ":11"}, {"to": "block3_pool"}],
    )
