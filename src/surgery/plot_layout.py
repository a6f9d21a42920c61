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

import bisect
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
    rank, indegree, children = [0] * n, [0] * n, [[] for _ in range(n)]
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
        sig = (tuple((rank[v] - a, boxes[v].kind, boxes[v].status, boxes[v].op, boxes[v].output) for v in nodes),
               tuple(sorted((local.get(s, port.get(s)), local[v]) for v in nodes for s in inbound[v])))
        named = [boxes[v].name for v in nodes if not boxes[v].op] or [""]
        # How narrow the split above is: boxes whose edges cross it, then how much the names either side share
        blocks.append((a, b, sig, nodes, (len(crossing[a]), len(_common(last, named[0])))))
        last = named[-1]
    return blocks


def _common(a: str, b: str) -> str:
    return a[:next((k for k, (p, q) in enumerate(zip(a, b)) if p != q), min(len(a), len(b)))]


def _prefix(names: list) -> str:
    """The longest stem every name continues with "_" (or ends at): "conv4_block3" for conv4_block3_*."""
    stem = _common(min(names), max(names))
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
    ids = {}
    sig = [ids.setdefault(b[2], len(ids)) for b in blocks]
    size = [0]
    for blk in blocks:
        size.append(size[-1] + len(blk[3]))
    fewest = 3 if keep_last else 2

    def names(i, p):
        return [boxes[v].name for blk in blocks[i:i + p] for v in blk[3] if not boxes[v].op]

    candidates = []
    for p in range(1, min(longest, len(sig) // fewest) + 1):
        run = 0
        for i in range(len(sig) - p - 1, -1, -1):
            run = run + 1 if sig[i] == sig[i + p] else 0
            m = 1 + run // p
            end = i + p * (m - 1 if keep_last else m)
            # A run starts where its blocks do: at the narrowest split of its period (before conv5_block2_1_conv,
            # not conv5_block1_out); and it saves at least ten boxes, or it is not worth hiding their names.
            if (m >= fewest and size[end] - size[i + p] >= 10
                    and blocks[i][4] == min(blk[4] for blk in blocks[i:i + p])):
                candidates.append((size[end] - size[i + p], len(_prefix(names(i, p))), i, p, m, end, i + p * m))
    # The set of runs that saves the most boxes (weighted interval scheduling), biggest run first; among equal
    # savings, the phase whose block names share the longest stem (conv4_block3, not conv4_block3_out..).
    candidates.sort(key=lambda c: c[-1])
    stops = [c[-1] for c in candidates]
    best = [(0, [])]
    for k, (saved, stem, i, *_) in enumerate(candidates):
        before = best[bisect.bisect_right(stops, i, 0, k)]
        take = (before[0] + saved * 100 + min(stem, 99), before[1] + [k])
        best.append(max(best[-1], take, key=lambda b: b[0]))
    chosen = sorted((candidates[k] for k in best[-1][1]), reverse=True)
    return [((blocks[i + p][0], blocks[end - 1][1]), (end - i - p) // p, names(i, p))
            for _, _, i, p, _, end, _ in chosen]


def collapse(boxes, edges, runs) -> tuple[list, list]:
    """Boxes and edges with the rows of each run replaced by one box."""
    rank = ranks(len(boxes), edges)
    rep, new = {}, []
    for (a, b), repeats, first in runs:
        inside = sorted((i for i in range(len(boxes)) if a <= rank[i] < b), key=lambda i: (rank[i], i))
        frozen = sum(boxes[i].frozen for i in inside)
        weighted = sum(boxes[i].weighted for i in inside)
        mixed = any(boxes[i].status == "partly" for i in inside)
        status = ("no weights" if not weighted else "frozen" if frozen == weighted else
                  "trainable" if not frozen and not mixed else "partly")
        names = [boxes[i].name for i in inside if not boxes[i].op] or [boxes[i].name for i in inside]
        per = max(1, len(names) // repeats)
        head, tail = _block_name(names[:per]), _block_name(names[-per:])
        if head == tail and repeats > 1:
            head, tail = names[0], names[-1]
        like = _block_name(first) if first else "the block above"
        more = f"{repeats} more blocks" if repeats > 1 else "1 more block"
        box = Box(head if head == tail else f"{head} .. {tail}", f"{more} like {like}", boxes[inside[-1]].shape,
                  status, [m for i in inside for m in boxes[i].members], repeats=repeats, frozen=frozen,
                  weighted=weighted, output=any(boxes[i].output for i in inside))
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
        row = sorted(rows[r], key=lambda i: (sum(slot[p] for p in parents[i]) / max(1, len(parents[i])),
                                             min((r - rank[p] for p in parents[i]), default=0), i))
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
    tags, tag_of = [], {}
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
        lanes, width = [], max([*right.values(), _place_tags(segs, boxes, tags, x0, bottom)])
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
    return [(x0, y0), (x0, y0 + GAP_Y / 3), (lane, y0 + GAP_Y / 3), (lane, y1 - GAP_Y / 3),
            (x1, y1 - GAP_Y / 3), (x1, y1)]


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
    kinship = [0] + [len(_common(name.get(b - 1, ""), name.get(b, ""))) for b in range(1, rows_n)]
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
