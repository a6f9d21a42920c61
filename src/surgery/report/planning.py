"""``surgery plan``: what each step of a spec changes, built with random weights where the source allows.

The spec runs through the normal executor, with every op's ``apply`` wrapped to
take a snapshot of the model after it (which layers, their trainable flags,
parameter counts, output shapes). Snapshots, not the states themselves, are
compared: ``freeze`` changes flags on layer objects that earlier models share.
The backbone is built with ``weights: null``, so no weights file or download
is needed and the figures are those the real build gives.

A layer rebuilt as an exact copy (same class, config and weight shapes: what
``prune`` does to the layers that lose no channel) is not listed as replaced.
``Plan.groups()`` analyses the final model's channel groups (what a ``prune``
step could remove, and why the rest cannot go).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from ..model.state import State
from ..plugins.registry import Registry


@dataclass
class Snapshot:
    layers: dict  # id(layer) -> (name, frozen: trainable_status says "frozen")
    params: int
    trainable: int
    outputs: list  # shapes as text
    objects: dict = field(default_factory=dict)  # id(layer) -> the layer, to tell a copy from a change


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
    from ..spec.selectors import trainable_status
    from .summary import totals

    total, trainable, _ = totals(state.model)
    every = state.workspace().layers
    # Frozen as the freeze notes, the layer table and the plot count it: weightless layers are neither.
    layers = {id(layer): (layer.name, trainable_status(layer) == "frozen") for layer in every}
    objects = {id(layer): layer for layer in every}
    return Snapshot(layers, total, trainable, [str(tuple(t.shape)) for t in state.model.outputs], objects)


def _signature(layer):
    """What makes a rebuilt layer a copy: class, config (trainable aside, reported apart), weight shapes."""
    try:
        config = {k: v for k, v in layer.get_config().items() if k != "trainable"}
        return type(layer), repr(sorted(config.items())), [tuple(w.shape) for w in layer.weights]
    except Exception:  # noqa: BLE001 (a layer whose config cannot be read counts as changed, whatever it raises)
        return object()


def compare(index: int, op: str, note: str, before: Snapshot | None, after: Snapshot) -> StepChange:
    old = before.layers if before else {}
    added = [name for key, (name, _) in after.layers.items() if key not in old]
    removed = [name for key, (name, _) in old.items() if key not in after.layers]
    # A layer swapped for a new one of the same name (replace, adapt_input) is one change, not two; and
    # none at all when the new one is an exact copy (prune rebuilds every layer, most of them unchanged).
    replaced = [name for name in added if name in removed]
    copies = _copies(before, after, replaced) if before else set()
    kept = [key for key in after.layers if key in old]
    return StepChange(
        index,
        op,
        note,
        added=[n for n in added if n not in replaced],
        removed=[n for n in removed if n not in replaced],
        replaced=[n for n in replaced if n not in copies],
        frozen=[after.layers[k][0] for k in kept if not old[k][1] and after.layers[k][1]],
        unfrozen=[after.layers[k][0] for k in kept if old[k][1] and not after.layers[k][1]],
        params=(before.params if before else 0, after.params),
        trainable=(before.trainable if before else 0, after.trainable),
        outputs=after.outputs,
    )


def _copies(before: Snapshot, after: Snapshot, names: list) -> set:
    """The names among ``names`` whose new layer is an exact copy of the old one."""
    wanted = set(names)
    old = {name: before.objects.get(key) for key, (name, _) in before.layers.items() if name in wanted}
    new = {name: after.objects.get(key) for key, (name, _) in after.layers.items() if name in wanted}
    return {
        name
        for name in wanted
        if old.get(name) is not None and new.get(name) is not None and _signature(old[name]) == _signature(new[name])
    }


def _recording(registry: Registry, snaps: list) -> Registry:
    """A copy of ``registry`` whose ops record a snapshot of the model after each apply."""

    def wrap(apply):
        def recorded(state, params, ctx):
            after = apply(state, params, ctx)
            if isinstance(after, State):  # anything else the executor reports as the plugin's error
                snaps.append((ctx.index, ctx.op, after.notes[-1] if after.notes else "", snapshot(after)))
            return after

        return recorded

    copy = registry.copy()
    copy.ops = {name: dataclasses.replace(info, apply=wrap(info.apply)) for name, info in registry.ops.items()}
    return copy


@dataclass
class Plan:
    changes: list  # StepChange per step
    state: State  # the final state
    random_init: bool  # whether the source step was built with random weights
    layer_rules: dict = field(default_factory=dict)  # the plugins' channel rules (Registry.layer_rules)

    def groups(self):
        """The final model's channel groups (``surgery.pruning.Analysis``), or the one-line reason there are none."""
        from ..errors import OpError
        from ..pruning import analyze

        try:
            return analyze(self.state.model, declared=self.layer_rules)
        except OpError as e:
            return e.message


def plan(source, plugins) -> Plan:
    """Build ``source`` (a path or a dict), with random weights where its source op allows it, recording each step."""
    from ..executor import run_steps
    from ..spec.loading import WeightsNotApplicable, load_spec

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
    return Plan(changes, state, random_init, plugins.registry.layer_rules())


def _names(names: list, limit: int = 6) -> str:
    if len(names) <= limit:
        return ", ".join(names)
    return ", ".join(names[: limit - 1]) + f", ... ({len(names) - limit} more), {names[-1]}"


def render_groups(planned: Plan, limit: int | None = 10) -> str:
    """The final model's prunable and unprunable channel groups (``limit`` lines of each; None: all)."""
    analysis = planned.groups()
    if isinstance(analysis, str):
        return f"channel groups: not analysed: {analysis}"
    every = len(analysis.groups)
    shown = analysis.describe(limit or every, producers=3 if limit else every).splitlines()
    lines = [f"channel groups of the final model: {shown[0]}"] + shown[1:]
    if any(line.startswith("  ... ") for line in shown):
        lines.append("  (--groups lists them all)")
    return "\n".join(lines)


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
