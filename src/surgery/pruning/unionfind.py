"""Union-find over channel ids (the classes of channels that must be removed together)."""

from __future__ import annotations

import numpy as np


class UnionFind:
    """Channel ids: each knows the producer space that made it; unions keep the oldest id as the root."""

    def __init__(self):
        self.parent: list[int] = []
        self.space: list[int] = []  # id -> index of the producer space that made it

    def fresh(self, n: int, space: int) -> np.ndarray:
        start = len(self.parent)
        self.parent.extend(range(start, start + n))
        self.space.extend([space] * n)
        return np.arange(start, start + n, dtype=np.int64)

    def find(self, i: int) -> int:
        p = self.parent
        root = i
        while p[root] != root:
            root = p[root]
        while p[i] != root:
            p[i], i = root, p[i]
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(int(a)), self.find(int(b))
        if ra != rb:
            # The older id stays the root, so a class is named by its first id.
            self.parent[max(ra, rb)] = min(ra, rb)
