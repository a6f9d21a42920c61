"""``surgery plan``: what each step of a spec changes, built with random weights where the source allows.

The spec runs through the normal executor, with every op's ``apply`` wrapped to
take a snapshot of the model after it (which layers, their trainable flags,
parameter counts, output shapes). Snapshots, not the states themselves, are
compared: ``freeze`` changes flags on layer objects that earlier models share.
The backbone is built with ``weights: null``, so no weights file or download
is needed and the figures are those the real build gives.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from .registry import Registry
from .state import State


@dataclass
class Snapshot:
    layers: dict  # id(layer) -> (name, trainable)
    params: int
    trainable: int
    outputs: list  # shapes as text


@dataclass
class StepChange:
    index: int
    op: str
    note: str
    added: list = field(default_factory=list)
    removed: list = field(default_factory=list)
    replaced: list = field(default_factory=list)
    frozen: list = field(default_factory=list)
    unfrozen: list = field(default_factory=list)
    params: tuple = (0, 0)
    trainable: tuple = (0, 0)
    outputs: list = field(default_factory=list)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def snapshot(state) -> Snapshot:
    """Layers of every branch (a head set aside by a branch is not "removed"); counts of the model itself."""
    from .summary import totals

    total, trainable, _ = totals(state.model)
    layers = {id(layer): (layer.name, layer.trainable) for layer in state.workspace().layers}
    return Snapshot(layers, total, trainable, [str(tuple(t.shape)) for t in state.model.outputs])


def compare(index: int, op: str, note: str, before: Snapshot | None, after: Snapshot) -> StepChange:
    old = before.layers if before else {}
    added = [name for key, (name, _) in after.layers.items() if key not in old]
    removed = [name for key, (name, _) in old.items() if key not in after.layers]
    # A layer swapped for a new one of the same name (replace, adapt_input) is one change, not two.
    replaced = [name for name in added if name in removed]
    kept = [key for key in after.layers if key in old]
    return StepChange(
        index,
        op,
        note,
        added=[n for n in added if n not in replaced],
        removed=[n for n in removed if n not in replaced],
        replaced=replaced,
        frozen=[after.layers[k][0] for k in kept if old[k][1] and not after.layers[k][1]],
        unfrozen=[after.layers[k][0] for k in kept if not old[k][1] and after.layers[k][1]],
        params=(before.params if before else 0, after.params),
        trainable=(before.trainable if before else 0, after.trainable),
        outputs=after.outputs,
    )


def _recording(registry: Registry, snaps: list) -> Registry:
    """A copy of ``registry`` whose ops record a snapshot of the model after each apply."""

    def wrap(apply):
        def recorded(state, params, ctx):
            after = apply(state, params, ctx)
            if isinstance(after, State):  # anything else the executor reports as the plugin's error
                snaps.append((ctx.index, ctx.op, after.notes[-1] if after.notes else "", snapshot(after)))
            return after

        return recorded

    copy = Registry()
    copy.backbones, copy.exporters = dict(registry.backbones), dict(registry.exporters)
    copy.ops = {name: dataclasses.replace(info, apply=wrap(info.apply)) for name, info in registry.ops.items()}
    return copy


@dataclass
class Plan:
    changes: list  # StepChange per step
    state: State  # the final state
    random_init: bool  # whether the source step was built with random weights


def plan(source, plugins) -> Plan:
    """Build ``source`` (a path or a dict), with random weights where its source op allows it, recording each step."""
    from .executor import run_steps
    from .spec import WeightsNotApplicable, load_spec

    try:
        spec = load_spec(source, plugins.registry, plugins.broken, weights="none")
        random_init = True
    except WeightsNotApplicable:  # a source without a weights option builds as the spec says
        spec = load_spec(source, plugins.registry, plugins.broken)
        random_init = False
    snaps: list = []
    state = run_steps(spec, _recording(plugins.registry, snaps))
    changes, before = [], None
    for index, op, note, snap in snaps:
        changes.append(compare(index, op, note, before, snap))
        before = snap
    return Plan(changes, state, random_init)


def _names(names: list, limit: int = 6) -> str:
    if len(names) <= limit:
        return ", ".join(names)
    return ", ".join(names[: limit - 1]) + f", ... ({len(names) - limit} more), {names[-1]}"


def render(planned: Plan) -> str:
    from .summary import totals

    state = planned.state
    lines = []
    for c in planned.changes:
        note = c.note[len(c.op) + 2 :] if c.note.startswith(f"{c.op}: ") else c.note
        lines.append(f"steps[{c.index}] {c.op}: {note}")
        for label, names in (
            ("added", c.added),
            ("removed", c.removed),
            ("replaced", c.replaced),
            ("frozen", c.frozen),
            ("unfrozen", c.unfrozen),
        ):
            if names:
                lines.append(f"    {label} {len(names)}: {_names(names)}")
        (p0, p1), (t0, t1) = c.params, c.trainable
        lines.append(f"    params {p0:,} -> {p1:,}; trainable {t0:,} -> {t1:,}")
        lines.append(f"    output {', '.join(c.outputs)}")
    total, trainable, frozen = totals(state.model)
    lines.append(
        f'model "{state.model.name}": {len(state.model.layers)} layers, {total:,} params '
        f"({trainable:,} trainable, {frozen:,} frozen); built with "
        + ("random weights" if planned.random_init else "the weights the spec names")
    )
    return "\n".join(lines)
