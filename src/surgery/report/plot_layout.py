"""Where the boxes of a model's picture go: rows, columns, lanes, connector tags, collapsed repeats.

Each box sits on the row of its longest path from an input, moved down next to
its children where it can (a shortcut's projection beside the block's last conv).
A deep graph is cut into newspaper columns (left to right, each read top down),
at row boundaries that as few edges cross as possible, until the graph is at
most ``TALL`` times as high as wide (or no taller than ``SHORT``); an edge into
a later column ends at a "to A" tag under its column and starts again at a
"from A" tag above the next. An edge that skips rows runs down a lane to the
right of the rows it passes, so no edge crosses a box. When the wrapped graph
is still over ``MAX_SIDE`` pixels, runs of repeated blocks (same layer types,
wiring and trainable status) are collapsed, the runs that save the most boxes
first: the first and last block of a run stay drawn, the blocks between become
one box that counts them (only if that is not enough: all but the first).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import pairwise

BOX_W, BOX_H, GAP_X, GAP_Y, LANE = 290, 40, 30, 26, 8
COL_GAP, TAG_W, TAG_H = 40, 64, 18
PITCH = BOX_H + GAP_Y
TALL = 1.6  # wrap into columns until the graph is at most this many times as high as wide,
SHORT = 900  # unless it is no taller than this: one column that fits a screen reads best
MAX_SIDE = 4000  # then collapse repeated blocks, largest runs first, until no side is longer


@dataclass
class Box:
    name: str
    kind: str
    shape: str
    status: str  # summary.trainable_status, or the summary of a collapsed run's layers
    members: list = field(default_factory=list)  # graph nodes it stands for: model.layers, then operations
    op: bool = False  # a Keras operation that is not a layer (x + y in ConvNeXt)
    output: bool = False
    repeats: int = 0  # a collapsed run: how many blocks it stands for
    frozen: int = 0  # members with weights none of which train
    weighted: int = 0  # members with weights
    rank: int = 0
    column: int = 0
    x: float = 0
    y: float = 0


@dataclass
class Tag:
    """An edge's end at the bottom of a column ("to A") or its start at the top of a later one ("from A")."""

    label: str
    side: str  # "to" or "from"
    x: float = 0
    y: float = 0


@dataclass
class Layout:
    title: str
    boxes: list
    edges: list  # (source box, target box, x of the lane the edge runs down, or None)
    width: float = 0
    height: float = 0
    paths: list = field(default_factory=list)  # per edge: its polylines (two for an edge into a later column)
    tags: list = field(default_factory=list)
    columns: int = 1
    layers: int = 0  # layers of the model, whether drawn alone or counted in a collapsed box
    frozen: int = 0  # layers with weights none of which train (summary.trainable_status)
    weighted: int = 0  # layers with weights
    heading: str = ""
    legend: list = field(default_factory=list)  # (x, y, sample, label, explanation)


def ranks(n: int, edges: list) -> list[int]:
    """Each box's row: the longest path from a box without inputs, then as late as its children allow.

    The second pass keeps a side input (a shortcut's projection, a cell's adjusted input) next to the box
    that uses it, so blocks stay separate rows; a box without children stays where the first pass put it.
    """
    rank, indegree = [0] * n, [0] * n
    children: list[list[int]] = [[] for _ in range(n)]
    for s, t in edges:
        children[s].append(t)
        indegree[t] += 1
    ready, order = [i for i in range(n) if not indegree[i]], []
    while ready:
        s = ready.pop()
        order.append(s)
        for t in children[s]:
            rank[t] = max(rank[t], rank[s] + 1)
            indegree[t] -= 1
            if not indegree[t]:
                ready.append(t)
    for s in reversed(order):
        if children[s]:
            rank[s] = min(rank[t] for t in children[s]) - 1
    return rank


# ---- collapsing runs of repeated blocks -------------------------------------------------------


# ---- placing: rows, columns, lanes, tags ------------------------------------------------------


def _slots(n, edges, rank):
    """Order each row by where its parents sit, so branches keep their side; on a tie the box whose parent
    is on the row above goes first, so a chain stays straight and a shortcut goes beside it."""
    parents = [[] for _ in range(n)]
    for s, t in edges:
        parents[t].append(s)
    slot = [0] * n
    rows: dict[int, list[int]] = {}
    for i in range(n):
        rows.setdefault(rank[i], []).append(i)
    for r in sorted(rows):
        row = sorted(
            rows[r],
            key=lambda i: (
                sum(slot[p] for p in parents[i]) / max(1, len(parents[i])),
                min((r - rank[p] for p in parents[i]), default=0),
                i,
            ),
        )
        for k, i in enumerate(row):
            slot[i] = k
        rows[r] = row
    return rows


def _breaks(k, rows_n, crossing, kinship):
    """Row indices where columns 2..k start: near equal heights, where the fewest edges cross, between
    boxes whose names share the least (block_3_project_BN | block_4_expand rather than inside block_4)."""
    starts, prev = [], 0
    for c in range(1, k):
        ideal = prev + round((rows_n - prev) / (k - c + 1))
        window = max(1, rows_n // (k * 10))
        options = [b for b in range(max(prev + 1, ideal - window), min(rows_n - (k - c) + 1, ideal + window + 1))]
        if not options:
            return None
        prev = min(options, key=lambda b: (crossing[b], kinship[b], abs(b - ideal)))
        starts.append(prev)
    return starts


def place(boxes, edges, starts) -> tuple:
    """Coordinates from (0, 0) for columns starting at the rows in ``starts``.

    Returns (width, height, polylines per edge, lane x per edge or None, tags, columns)."""
    n = len(boxes)
    rank = ranks(n, edges)
    rows = _slots(n, edges, rank)
    bounds = [0] + list(starts) + [max(rank) + 1]
    column_of = [0] * (bounds[-1])
    for c, (a, b) in enumerate(pairwise(bounds)):
        for r in range(a, b):
            column_of[r] = c
    wrapped = len(bounds) > 2
    head = TAG_H + GAP_Y if wrapped else 0
    tags: list = []
    tag_of: dict = {}
    # Items per column: boxes and tags, each at a local row (-1: tags in, rows: tags out).
    routes = []  # per edge: list of (column, source item, target item)
    for s, t in edges:
        cs, ct = column_of[rank[s]], column_of[rank[t]]
        if cs == ct:
            routes.append([(cs, ("box", s), ("box", t))])
            continue
        key = (s, ct)
        if key not in tag_of:
            label = _label(len(tag_of))
            tag_of[key] = (len(tags), len(tags) + 1)
            tags += [Tag(label, "to"), Tag(label, "from")]
        out_tag, in_tag = tag_of[key]
        routes.append([(cs, ("box", s), ("tag", out_tag)), (ct, ("tag", in_tag), ("box", t))])
    x0, height, lanes_of = 0.0, 0.0, {}
    for c, (a, b) in enumerate(pairwise(bounds)):
        right = {}
        for r in range(a, b):
            for k, i in enumerate(rows[r]):
                boxes[i].rank, boxes[i].column = r, c
                boxes[i].x, boxes[i].y = x0 + k * (BOX_W + GAP_X), head + (r - a) * PITCH
            right[r - a] = x0 + len(rows[r]) * (BOX_W + GAP_X) - GAP_X
        bottom = head + (b - a) * PITCH
        segs = [seg for route in routes for seg in route if seg[0] == c]
        lanes: list = []
        width = max([*right.values(), _place_tags(segs, boxes, tags, x0, bottom)])
        for seg in segs:
            lo, hi = _local_row(seg[1], a, b, boxes, tags), _local_row(seg[2], a, b, boxes, tags)
            if hi - lo <= 1:
                continue
            x = max(right[r] for r in range(lo + 1, hi)) + GAP_X / 2
            while any(l0 < hi and lo < l1 and abs(lx - x) < LANE for l0, l1, lx in lanes):
                x += LANE
            lanes.append((lo, hi, x))
            lanes_of[id(seg)] = x
        width = max([width] + [x + GAP_X / 2 for _, _, x in lanes])
        height = max(height, bottom + (TAG_H if wrapped else -GAP_Y))
        x0 = width + COL_GAP
    paths, lane_x = [], []
    for route in routes:
        paths.append([_polyline(seg, boxes, tags, lanes_of.get(id(seg))) for seg in route])
        lane_x.append(lanes_of.get(id(route[0])))
    return x0 - COL_GAP, height, paths, lane_x, tags, len(bounds) - 1


def _label(k: int) -> str:
    """A, B, .., Z, AA, AB, .."""
    return _label(k // 26 - 1) + chr(65 + k % 26) if k >= 26 else chr(65 + k)


def _local_row(item, a, b, boxes, tags):
    kind, i = item
    return boxes[i].rank - a if kind == "box" else -1 if tags[i].side == "from" else b - a


def _place_tags(segs, boxes, tags, x0, bottom):
    """Tags under (to) and above (from) the column, each near the box it connects, left to right; returns
    the right edge of the last."""
    right = x0
    for side, y in (("to", bottom), ("from", 0.0)):
        wanted = {}
        for _, src, dst in segs:
            kind, i = src if side == "from" else dst
            other = dst if side == "from" else src
            if kind == "tag" and tags[i].side == side:
                box = boxes[other[1]]
                wanted[i] = min(wanted.get(i, box.x + BOX_W / 2), box.x + BOX_W / 2)
        edge = x0
        for i in sorted(wanted, key=lambda i: (wanted[i], i)):
            tags[i].x = max(edge, wanted[i] - TAG_W / 2)
            tags[i].y = y
            edge = tags[i].x + TAG_W + GAP_X / 2
            right = max(right, tags[i].x + TAG_W)
    return right


def _ends(item, boxes, tags):
    kind, i = item
    if kind == "box":
        return boxes[i].x + BOX_W / 2, boxes[i].y, boxes[i].y + BOX_H
    return tags[i].x + TAG_W / 2, tags[i].y, tags[i].y + TAG_H


def _polyline(seg, boxes, tags, lane):
    x0, _, y0 = _ends(seg[1], boxes, tags)
    x1, y1, _ = _ends(seg[2], boxes, tags)
    if lane is None:
        mid = y1 - GAP_Y / 2
        return [(x0, y0), (x1, y1)] if x0 == x1 else [(x0, y0), (x0, mid), (x1, mid), (x1, y1)]
    return [
        (x0, y0),
        (x0, y0 + GAP_Y / 3),
        (lane, y0 + GAP_Y / 3),
        (lane, y1 - GAP_Y / 3),
        (x1, y1 - GAP_Y / 3),
        (x1, y1),
    ]


def arrange(boxes, edges, tall: float = TALL, max_side: int = MAX_SIDE):
    """``place`` with the fewest columns that make the graph at most ``tall`` times as high as wide, and
    more while that shortens a side over ``max_side``."""
    rank = ranks(len(boxes), edges)
    rows_n = max(rank) + 1
    crossing = [0] * (rows_n + 1)  # crossing[b]: edges from a row before b to row b or later
    for s, t in edges:
        crossing[rank[s] + 1] += 1
        crossing[rank[t] + 1] -= 1
    for b in range(1, rows_n + 1):
        crossing[b] += crossing[b - 1]
    name = {}
    for i in reversed(range(len(boxes))):
        if not boxes[i].op:
            name[rank[i]] = boxes[i].name
    kinship = [0] + [len(common_prefix(name.get(b - 1, ""), name.get(b, ""))) for b in range(1, rows_n)]
    best = best_starts = placed = None
    for k in range(1, rows_n + 1):
        starts = _breaks(k, rows_n, crossing, kinship) if k > 1 else []
        if starts is None:
            break
        placed = place(boxes, edges, starts)
        width, height = placed[:2]
        if best and best[1] <= tall * best[0] and max(width, height) >= max(best[:2]):
            break  # as tall as wanted, and one more column would not shorten the longer side
        best, best_starts = placed, starts
        if (height <= tall * width or height <= SHORT) and max(width, height) <= max_side:
            break
    return best if best is placed else place(boxes, edges, best_starts)


def common_prefix(a: str, b: str) -> str:
    return a[: next((k for k, (p, q) in enumerate(zip(a, b)) if p != q), min(len(a), len(b)))]
