"""``surgery plan``: what each step of a spec changes, built with random weights.

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
from pathlib import Path

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
        index, op, note,
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


def random_init(data: dict, registry: Registry) -> dict:
    """The spec with its backbone's weights set to null, where the backbone takes a ``weights`` option."""
    steps = data.get("steps") if isinstance(data, dict) else None
    if not steps or not isinstance(steps[0], dict) or steps[0].get("op") != "backbone":
        return data
    info = registry.backbones.get(str(steps[0].get("name", "")).lower())
    if info is None or "weights" not in info.options:
        return data
    return {**data, "steps": [{**steps[0], "weights": None}, *steps[1:]]}


def plan(source, plugins):
    """Build ``source`` (a path or a dict) with random weights; returns (list of StepChange, final State)."""
    from .executor import run_steps
    from .spec import read_spec_file, validate

    if isinstance(source, dict):
        data, name, base = source, "<dict>", None
    else:
        data, name = read_spec_file(source)
        base = Path(source).resolve().parent
    spec = validate(random_init(data, plugins.registry), plugins.registry, file=name, base=base,
                    broken_plugins=plugins.broken)
    snaps: list = []
    state = run_steps(spec, _recording(plugins.registry, snaps))
    changes, before = [], None
    for index, op, note, snap in snaps:
        changes.append(compare(index, op, note, before, snap))
        before = snap
    return changes, state


def _names(names: list, limit: int = 6) -> str:
    if len(names) <= limit:
        return ", ".join(names)
    return ", ".join(names[:limit - 1]) + f", ... ({len(names) - limit} more), {names[-1]}"


def render(changes: list, state) -> str:
    from .summary import totals

    lines = []
    for c in changes:
        note = c.note[len(c.op) + 2:] if c.note.startswith(f"{c.op}: ") else c.note
        lines.append(f"steps[{c.index}] {c.op}: {note}")
        for label, names in (("added", c.added), ("removed", c.removed), ("replaced", c.replaced),
                             ("frozen", c.frozen), ("unfrozen", c.unfrozen)):
            if names:
                lines.append(f"    {label} {len(names)}: {_names(names)}")
        (p0, p1), (t0, t1) = c.params, c.trainable
        lines.append(f"    params {p0:,} -> {p1:,}; trainable {t0:,} -> {t1:,}")
        lines.append(f"    output {', '.join(c.outputs)}")
    total, trainable, frozen = totals(state.model)
    lines.append(f'model "{state.model.name}": {len(state.model.layers)} layers, {total:,} params '
                 f"({trainable:,} trainable, {frozen:,} frozen); built with random weights")
    return "\n".join(lines)
