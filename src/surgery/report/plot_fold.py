"""Folding runs of repeated blocks into one stacked box, when a picture is still too large after wrapping.

Runs of identical blocks (same layer types, wiring and frozen status) become one box that names the first
and last block and counts the rest; the first and last block of a run stay drawn, and branches and
outputs are never folded in.
"""

from __future__ import annotations

import bisect
from itertools import pairwise

from .plot_layout import Box, common_prefix, ranks


def _blocks(boxes, edges, rank):
    """Split the rows where at most two boxes' edges cross: (first row, end row, signature, boxes, how narrow
    the split above it is) per block."""
    rows = max(rank) + 1
    crossing = [set() for _ in range(rows + 1)]  # crossing[b]: boxes with edges from rows before b to b or later
    for s, t in edges:
        for b in range(rank[s] + 1, rank[t] + 1):
            crossing[b].add(s)
    cuts = [0] + [b for b in range(1, rows) if len(crossing[b]) <= 2] + [rows]
    members = [[] for _ in range(rows)]
    for i in sorted(range(len(boxes)), key=lambda i: (rank[i], i)):
        members[rank[i]].append(i)
    inbound = [[] for _ in boxes]
    for s, t in edges:
        inbound[t].append(s)
    blocks, last = [], ""
    for a, b in pairwise(cuts):
        nodes = [i for r in range(a, b) for i in members[r]]
        local = {v: k for k, v in enumerate(nodes)}
        ports = sorted({s for v in nodes for s in inbound[v] if s not in local}, key=lambda s: (rank[s], s))
        port = {s: -1 - k for k, s in enumerate(ports)}
        sig = (
            tuple((rank[v] - a, boxes[v].kind, boxes[v].status, boxes[v].op, boxes[v].output) for v in nodes),
            tuple(sorted((local.get(s, port.get(s)), local[v]) for v in nodes for s in inbound[v])),
        )
        named = [boxes[v].name for v in nodes if not boxes[v].op] or [""]
        # How narrow the split above is: boxes whose edges cross it, then how much the names either side share
        blocks.append((a, b, sig, nodes, (len(crossing[a]), len(common_prefix(last, named[0])))))
        last = named[-1]
    return blocks


def _prefix(names: list) -> str:
    """The longest stem every name continues with "_" (or ends at): "conv4_block3" for conv4_block3_*."""
    stem = common_prefix(min(names), max(names))
    while stem and not all(n == stem or n.startswith(stem + "_") for n in names):
        stem = stem[:-1]
    return stem


def _block_name(names: list) -> str:
    return _prefix(names) or names[-1]


def repeated_runs(boxes, edges, rank, keep_last: bool = True, longest: int = 40) -> list:
    """Runs of equal blocks, the most boxes saved first, not overlapping.

    Each run is ((first row, end row) of the blocks to collapse, how many, names of one block). The first
    block of a run stays drawn, and with ``keep_last`` the last one too (runs of three or more).
    """
    blocks = _blocks(boxes, edges, rank)
    ids: dict = {}
    sig = [ids.setdefault(b[2], len(ids)) for b in blocks]
    size = [0]
    for blk in blocks:
        size.append(size[-1] + len(blk[3]))
    fewest = 3 if keep_last else 2

    def names(i, p):
        return [boxes[v].name for blk in blocks[i : i + p] for v in blk[3] if not boxes[v].op]

    candidates = []
    for p in range(1, min(longest, len(sig) // fewest) + 1):
        run = 0
        for i in range(len(sig) - p - 1, -1, -1):
            run = run + 1 if sig[i] == sig[i + p] else 0
            m = 1 + run // p
            end = i + p * (m - 1 if keep_last else m)
            # A run starts where its blocks do: at the narrowest split of its period (before conv5_block2_1_conv,
            # not conv5_block1_out); and it saves at least ten boxes, or it is not worth hiding their names.
            if (
                m >= fewest
                and size[end] - size[i + p] >= 10
                and blocks[i][4] == min(blk[4] for blk in blocks[i : i + p])
            ):
                candidates.append((size[end] - size[i + p], len(_prefix(names(i, p))), i, p, m, end, i + p * m))
    # The set of runs that saves the most boxes (weighted interval scheduling), biggest run first; among equal
    # savings, the phase whose block names share the longest stem (conv4_block3, not conv4_block3_out..).
    candidates.sort(key=lambda c: c[-1])
    stops = [c[-1] for c in candidates]
    best: list[tuple[int, list[int]]] = [(0, [])]
    for k, (saved, stem, i, *_) in enumerate(candidates):
        before = best[bisect.bisect_right(stops, i, 0, k)]
        take = (before[0] + saved * 100 + min(stem, 99), before[1] + [k])
        best.append(max(best[-1], take, key=lambda b: b[0]))
    chosen = sorted((candidates[k] for k in best[-1][1]), reverse=True)
    return [
        ((blocks[i + p][0], blocks[end - 1][1]), (end - i - p) // p, names(i, p)) for _, _, i, p, _, end, _ in chosen
    ]


def collapse(boxes, edges, runs) -> tuple[list, list]:
    """Boxes and edges with the rows of each run replaced by one box."""
    rank = ranks(len(boxes), edges)
    rep: dict = {}
    new: list = []
    for (a, b), repeats, first in runs:
        inside = sorted((i for i in range(len(boxes)) if a <= rank[i] < b), key=lambda i: (rank[i], i))
        frozen = sum(boxes[i].frozen for i in inside)
        weighted = sum(boxes[i].weighted for i in inside)
        mixed = any(boxes[i].status == "partly" for i in inside)
        status = (
            "no weights"
            if not weighted
            else "frozen"
            if frozen == weighted
            else "trainable"
            if not frozen and not mixed
            else "partly"
        )
        names = [boxes[i].name for i in inside if not boxes[i].op] or [boxes[i].name for i in inside]
        per = max(1, len(names) // repeats)
        head, tail = _block_name(names[:per]), _block_name(names[-per:])
        if head == tail and repeats > 1:
            head, tail = names[0], names[-1]
        like = _block_name(first) if first else "the block above"
        more = f"{repeats} more blocks" if repeats > 1 else "1 more block"
        box = Box(
            head if head == tail else f"{head} .. {tail}",
            f"{more} like {like}",
            boxes[inside[-1]].shape,
            status,
            [m for i in inside for m in boxes[i].members],
            repeats=repeats,
            frozen=frozen,
            weighted=weighted,
            output=any(boxes[i].output for i in inside),
        )
        for i in inside:
            rep[i] = len(boxes) + len(new)
        new.append(box)
    keep = [i for i in range(len(boxes)) if i not in rep]
    order = {old: k for k, old in enumerate(keep)}
    order.update({len(boxes) + k: len(keep) + k for k in range(len(new))})
    out_edges, seen = [], set()
    for s, t in edges:
        e = (order[rep.get(s, s)], order[rep.get(t, t)])
        if e[0] != e[1] and e not in seen:
            seen.add(e)
            out_edges.append(e)
    return [boxes[i] for i in keep] + new, out_edges
