"""Dependency analysis: which channels of a functional model must be removed together.

Representation. Every tensor's last (channel) axis carries an integer id per
element. A producer (Conv, Dense, SeparableConv) gives its output fresh ids;
per-channel layers pass ids through; Concatenate concatenates them; Flatten
tiles them; element-wise merges *unify* them (union-find). Removing a channel
means removing a union-find class: every element, in every tensor, whose id
is in that class. This one rule covers residual streams, concatenations at
their offsets, depthwise repeats and Flatten->Dense without special cases, and
the same id arrays tell the rebuild which slice of each weight to keep.

A group is a connected component of producers' id spaces (two producers are in
one group when any of their channels are unified); its channels are the
classes. A group is unprunable if any of its ids is blocked: the model's
input or output, a layer the analysis does not understand (unknown class,
nested model, shared layer, grouped conv), or normalisation across channels
(LayerNormalization, softmax), which makes removal inexact.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .deps import counted
from .rules import Rule
from .unionfind import UnionFind

if TYPE_CHECKING:
    from .removal import Removal


@dataclass
class Group:
    id: int
    producers: list  # layers whose fresh ids are in the group (the input, unknown layers included)
    members: list  # every layer or op whose inputs or outputs carry the group's channels
    classes: np.ndarray  # the union-find roots of the group's channels, in a fixed order
    reasons: list = field(default_factory=list)  # why it cannot be pruned; empty if prunable

    @property
    def channels(self) -> int:
        return len(self.classes)

    @property
    def prunable(self) -> bool:
        return not self.reasons

    @property
    def reason(self) -> str | None:
        if not self.reasons:
            return None
        more = len(self.reasons) - 2
        return "; ".join(self.reasons[:2]) + (f" (and {more} more)" if more > 0 else "")

    def as_dict(self, detail: bool = False) -> dict:
        d = {
            "id": self.id,
            "channels": self.channels,
            "producers": list(self.producers),
            "members": list(self.members) if detail else len(self.members),
            "prunable": self.prunable,
        }
        if not self.prunable:
            d["reason"] = self.reason
        return d


@dataclass
class Record:
    """One call node: its layer or op, the rule used, and the ids of its inputs and outputs."""

    name: str
    op: Any
    node: Any
    rule: Rule
    in_ids: list
    out_ids: list
    is_layer: bool


class Analysis:
    """The result of :func:`analyze`: groups, their channels, and the records the rebuild walks."""

    def __init__(self, model, records, uf, spaces, blocks, tensor_ids):
        self.model = model
        self.graph = model  # the functional graph walked: the model itself, or a Sequential's
        self.records = records
        self.tensor_ids = tensor_ids
        self.spaces = list(spaces)
        n = len(uf.parent)
        self.root = np.array([uf.find(i) for i in range(n)], dtype=np.int64)
        space = np.array(uf.space, dtype=np.int64)
        self._group_spaces(space)
        roots = np.unique(self.root)  # sorted: a class is named by its first id, so this is first-seen order
        root_group = self.id_group[roots]
        for g in self.groups:
            g.classes = roots[root_group == g.id]
        self.class_group = dict(zip(roots.tolist(), root_group.tolist()))
        # Which producers' outputs each class is in: a producer must keep at least one output channel.
        pairs = np.unique(np.stack([space, self.root]), axis=1) if n else np.zeros((2, 0), dtype=np.int64)
        self.space_classes: dict[int, list] = {}
        self.class_spaces: dict[int, list] = {}
        for s, r in zip(pairs[0].tolist(), pairs[1].tolist()):
            self.space_classes.setdefault(s, []).append(r)
            self.class_spaces.setdefault(r, []).append(s)
        self.class_index = {r: i for g in self.groups for i, r in enumerate(g.classes.tolist())}
        self._attach(blocks, records)

    def _group_spaces(self, space: np.ndarray) -> None:
        """Groups: the producer spaces whose channels were joined, numbered in the order they were made."""
        spaces_uf = UnionFind()
        spaces_uf.fresh(len(self.spaces), 0)
        for a, b in zip(space, space[self.root]):
            spaces_uf.union(a, b)
        space_group = [spaces_uf.find(i) for i in range(len(self.spaces))]
        order = {s: g for g, s in enumerate(sorted(set(space_group)))}
        self.space_group = [order[s] for s in space_group]
        self.id_group = np.array([self.space_group[s] for s in space], dtype=np.int64)
        self.groups: list[Group] = [Group(g, [], [], np.zeros(0, dtype=np.int64)) for g in range(len(order))]
        for s, name in enumerate(self.spaces):
            self.groups[self.space_group[s]].producers.append(name)

    def _attach(self, blocks, records) -> None:
        """Each group's reasons not to prune (from ``blocks``) and the layers it touches."""
        for ids, reason in blocks:
            for gid in np.unique(self.id_group[ids]).tolist():
                if reason not in self.groups[gid].reasons:
                    self.groups[gid].reasons.append(reason)
        for g in self.groups:
            if not g.channels and not g.reasons:
                g.reasons.append(f"'{g.producers[0]}' gives a tensor without a fixed channel axis")
        self._by_name: dict[str, list[Record]] = {}
        for rec in records:
            self._by_name.setdefault(rec.name, []).append(rec)
            touched = set()
            for ids in rec.in_ids + rec.out_ids:
                touched.update(np.unique(self.id_group[ids]).tolist())
            for gid in sorted(touched):
                self.groups[gid].members.append(rec.name)

    # --- looking things up -------------------------------------------------------

    @property
    def prunable_groups(self) -> list:
        return [g for g in self.groups if g.prunable]

    def record(self, layer: str) -> Record:
        from .deps import OpError, did_you_mean

        if not isinstance(layer, str):
            raise OpError(f"a layer is named by a string, not {layer!r}")
        recs = self._by_name.get(layer)
        if not recs:
            names = [r.name for r in self.records if r.is_layer]
            also = f"; the model has {len(set(names))} layers"
            raise OpError(f'no layer named "{layer}"' + did_you_mean(layer, names, most=3, otherwise=also))
        if len(recs) > 1:
            raise OpError(f"layer '{layer}' is called {len(recs)} times (shared); its channels cannot be pruned")
        return recs[0]

    def output_ids(self, layer: str) -> np.ndarray:
        """The ids of ``layer``'s output channels (OpError if it has none the pruner can name)."""
        from .deps import OpError

        rec = self.record(layer)
        if rec.rule.kind == "input":
            raise OpError(f"'{layer}' is the model's input; its channels are never pruned")
        if len(rec.out_ids) != 1 or len(rec.out_ids[0]) == 0:
            raise OpError(f"layer '{layer}' has no prunable output channels")
        ids = rec.out_ids[0]
        groups = [self.groups[g] for g in np.unique(self.id_group[ids]).tolist()]
        if not any(g.prunable for g in groups):
            raise OpError(
                f"layer '{layer}' has no prunable output channels: {groups[0].reason}; "
                "`surgery plan` lists the groups that can be pruned"
            )
        return ids

    def coupled(self, layer: str, indices) -> Removal:
        """The channels removed with ``indices`` of ``layer``'s output channels (any layer of a group)."""
        from .deps import OpError
        from .removal import Removal, parse_indices, short

        ids = self.output_ids(layer)
        n = len(ids)
        idx = parse_indices(indices, layer)
        bad = [i for i in idx if not 0 <= i < n]
        if bad:
            raise OpError(f"channel {bad[0]} is out of range for '{layer}': it has {n} output channels (0..{n - 1})")
        classes = np.unique(self.root[ids[idx]]) if idx else np.zeros(0, dtype=np.int64)
        for r in classes.tolist():
            group = self.groups[self.class_group[r]]
            if not group.prunable:
                chosen = [i for i in idx if self.root[ids[i]] == r]
                raise OpError(
                    f"channel {chosen[0]} of '{layer}' is in group {group.id}, which cannot be pruned: {group.reason}"
                )
        removal = Removal(self, frozenset(classes.tolist()))
        removal.check(f"channels {short(idx)} of '{layer}'")
        return removal

    def removal(self, channels: dict) -> Removal:
        """One removal for several layers: ``{layer name: [output channel indices]}``."""
        from .deps import OpError
        from .removal import Removal

        if not isinstance(channels, dict):
            raise OpError("channels must map layer names to lists of output channel indices")
        total = Removal(self, frozenset())
        for layer, indices in channels.items():
            total = total | self.coupled(layer, indices)
        total.check("these channels")
        return total

    # --- reporting ------------------------------------------------------------------

    def as_dict(self, detail: bool = False) -> dict:
        """Prunable and unprunable groups, JSON-able; ``detail`` lists every member layer (else a count)."""
        prunable = [g.as_dict(detail) for g in self.groups if g.prunable]
        blocked = [g.as_dict(detail) for g in self.groups if not g.prunable and _worth_listing(g)]
        return {
            "groups": len(self.groups),
            "prunable": prunable,
            "unprunable": blocked,
            "prunable_channels": int(sum(g.channels for g in self.groups if g.prunable)),
            "channels": int(sum(g.channels for g in self.groups)),
        }

    def describe(self, limit: int = 20, producers: int = 3) -> str:
        """Groups, ``limit`` of each kind, naming ``producers`` of each group's producers."""
        d = self.as_dict()
        lines = [
            (
                f"{counted(len(d['prunable']), 'prunable group')} ({d['prunable_channels']} of {d['channels']} channels), "
                f"{len(d['unprunable'])} unprunable"
            )
        ]
        for g in d["prunable"][:limit]:
            lines.append(f"  group {g['id']}: {counted(g['channels'], 'channel')}, {_names(g['producers'], producers)}")
        if len(d["prunable"]) > limit:
            lines.append(f"  ... {len(d['prunable']) - limit} more prunable groups")
        for g in d["unprunable"][:limit]:
            lines.append(
                f"  group {g['id']} (unprunable): {counted(g['channels'], 'channel')}, "
                f"{_names(g['producers'], producers)}: {g['reason']}"
            )
        if len(d["unprunable"]) > limit:
            lines.append(f"  ... {len(d['unprunable']) - limit} more unprunable groups")
        return "\n".join(lines)


def _worth_listing(group: Group) -> bool:
    """The input's own group is unprunable by definition; list it only if something else joined it."""
    if not group.channels:
        return False
    return not (len(group.producers) == 1 and len(group.reasons) == 1 and group.reasons[0].endswith("model's input"))


def _names(names: list, n: int = 3) -> str:
    return ", ".join(names[:n]) + (f" and {len(names) - n} more" if len(names) > n else "")
