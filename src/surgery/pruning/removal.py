"""A set of channel classes to remove, tied to the analysis of one model."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Removal:
    """Channels to remove: union-find classes of ``analysis`` (every element carrying them goes)."""

    analysis: Any
    classes: frozenset
    notes: tuple = field(default=())  # what selection had to decide (e.g. bn_scale fell back to l1)

    def __or__(self, other: Removal) -> Removal:
        if other.analysis is not self.analysis:
            raise ValueError("removals of different analyses cannot be combined")
        return Removal(self.analysis, self.classes | other.classes, self.notes + other.notes)

    def __len__(self) -> int:
        return len(self.classes)

    def removed_ids(self) -> np.ndarray:
        """A boolean per id of the analysis: True where the id's class is removed."""
        a = self.analysis
        if not self.classes:
            return np.zeros(len(a.root), dtype=bool)
        return np.isin(a.root, np.fromiter(self.classes, dtype=np.int64))

    def by_group(self) -> dict:
        """{group id: sorted positions (in the group's channel order) of the removed channels}."""
        a = self.analysis
        out: dict[int, list] = {}
        for r in self.classes:
            out.setdefault(a.class_group[r], []).append(a.class_index[r])
        return {g: sorted(v) for g, v in sorted(out.items())}

    def channels_of(self, layer: str) -> list:
        """The removed indices among ``layer``'s output channels."""
        rec = self.analysis.record(layer)
        if len(rec.out_ids) != 1:
            return []
        return np.flatnonzero(self.removed_ids()[rec.out_ids[0]]).tolist()

    def check(self, what: str = "this removal") -> None:
        """OpError if a group, or one producer's output, would lose every channel."""
        from .deps import OpError

        a = self.analysis
        for gid, removed in self.by_group().items():
            group = a.groups[gid]
            if len(removed) >= group.channels:
                raise OpError(
                    f"{what} would remove all {group.channels} channels of group {gid} "
                    f"({', '.join(group.producers[:3])}); keep at least one"
                )
        spaces = {s for r in self.classes for s in a.class_spaces[r]}
        for s in sorted(spaces):
            classes = a.space_classes[s]
            if all(r in self.classes for r in classes):
                raise OpError(
                    f"{what} would remove all {len(classes)} output channels of '{a.spaces[s]}' "
                    f"(group {a.space_group[s]}); keep at least one"
                )

    def as_dict(self) -> dict:
        a = self.analysis
        return {
            "groups": {
                str(g): {"channels": a.groups[g].channels, "removed": len(v), "indices": v}
                for g, v in self.by_group().items()
            },
            "removed": len(self.classes),
            "notes": list(self.notes),
        }


def short(idx: list) -> str:
    return str(idx) if len(idx) <= 8 else f"[{', '.join(map(str, idx[:8]))}, ...]"


def parse_indices(indices, layer: str) -> list:
    from .deps import OpError

    if isinstance(indices, (int, np.integer)):
        indices = [indices]
    try:
        out = [int(i) for i in indices]
    except (TypeError, ValueError):
        raise OpError(f"channels of '{layer}' must be a list of integers, not {indices!r}") from None
    if any(not isinstance(i, (int, np.integer)) or isinstance(i, bool) for i in indices):
        raise OpError(f"channels of '{layer}' must be a list of integers, not {indices!r}")
    return sorted(set(out))
