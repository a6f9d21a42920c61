"""A picture of a model's graph: SVG written here, PNG through Pillow; no graphviz.

``keras.utils.plot_model`` needs pydot and the graphviz binaries, which a
plain ``pip install`` does not bring, so a ``--plot`` that depends on them
fails on most machines. Layer graphs of backbones are narrow and deep, so a
simple layered drawing reads well: each layer is a box on the row of its
longest path from the input, in model order; an edge that skips rows (a
residual shortcut, a dense connection) runs down a lane to the right of the
rows it passes, so it never crosses a box.

Boxes are coloured by what trains: frozen layers grey with a dashed border
and a "frozen" tag, trainable ones blue, partly trainable ones yellow, layers
without weights white.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path

from .errors import SpecError

SUFFIXES = (".svg", ".png")
BOX_W, BOX_H, GAP_X, GAP_Y, MARGIN, LANE = 290, 40, 30, 26, 20, 8
LEGEND_H = 34
FILL = {"trainable": "#dbeafe", "frozen": "#d4d4d4", "partly": "#fef3c7", "no weights": "#ffffff"}


@dataclass
class Box:
    name: str
    kind: str
    shape: str
    status: str
    rank: int = 0
    x: float = 0
    y: float = 0


@dataclass
class Layout:
    title: str
    boxes: list
    edges: list  # (source index, target index, lane x or None)
    width: float = 0
    height: float = 0
    primitives: list = field(default_factory=list)


def layout(model) -> Layout:
    """Boxes on rows (longest path from an input) and edges; long edges get a lane on the right."""
    from .graph import model_nodes
    from .summary import layer_rows, trainable_status

    rows = layer_rows(model)
    index = {id(layer): i for i, layer in enumerate(model.layers)}
    boxes = [Box(name, kind, shape, trainable_status(layer)) for layer, (_, name, kind, shape, _, _) in zip(model.layers, rows)]
    edges = []
    for node in model_nodes(model):  # execution order, so every source's rank is final before it is read
        if node.operation is None or id(node.operation) not in index:
            continue
        target = index[id(node.operation)]
        for t in node.input_tensors:
            source = index.get(id(t._keras_history.operation))
            if source is not None and (source, target) not in edges:
                edges.append((source, target))
                boxes[target].rank = max(boxes[target].rank, boxes[source].rank + 1)
    by_rank: dict[int, list[int]] = {}
    for i, box in enumerate(boxes):
        by_rank.setdefault(box.rank, []).append(i)
    parents: dict[int, list[int]] = {}
    for s, t in edges:
        parents.setdefault(t, []).append(s)
    right = {}
    for rank in sorted(by_rank):
        # Order a row by where its parents sit, so branches stay in their columns.
        row = sorted(by_rank[rank], key=lambda i: (sum(boxes[p].x for p in parents.get(i, [])) /
                                                   max(1, len(parents.get(i, []))), i))
        for col, i in enumerate(row):
            boxes[i].x = MARGIN + col * (BOX_W + GAP_X)
            boxes[i].y = MARGIN + LEGEND_H + rank * (BOX_H + GAP_Y)
        right[rank] = boxes[row[-1]].x + BOX_W
    routed, lanes = [], []  # lanes: (first rank, last rank, x) of the long edges placed so far
    for s, t in edges:
        a, b = boxes[s].rank, boxes[t].rank
        if b - a <= 1:
            routed.append((s, t, None))
            continue
        x = max(right[r] for r in range(a + 1, b)) + GAP_X / 2
        while any(lo < b and a < hi and abs(lx - x) < LANE for lo, hi, lx in lanes):
            x += LANE
        lanes.append((a, b, x))
        routed.append((s, t, x))
    width = max([b.x + BOX_W for b in boxes] + [x for _, _, x in lanes]) + MARGIN + GAP_X
    height = max(b.y + BOX_H for b in boxes) + MARGIN
    return Layout(model.name, boxes, routed, width, height)


def _fit(text: str, chars: int) -> str:
    return text if len(text) <= chars else text[:chars - 1] + "~"


def primitives(lay: Layout) -> list:
    """What to draw, backend-neutral: ("rect", x, y, w, h, fill, dashed), ("line", points), ("arrow", x, y),
    ("text", x, y, text, size, bold)."""
    out = [("text", MARGIN, MARGIN + 12, f"{lay.title}: {len(lay.boxes)} layers", 13, True)]
    x = MARGIN + 230
    for status, fill in FILL.items():
        out.append(("rect", x, MARGIN, 14, 14, fill, status == "frozen"))
        out.append(("text", x + 20, MARGIN + 12, status, 11, False))
        x += 30 + 7 * len(status)
    for s, t, lane in lay.edges:
        src, dst = lay.boxes[s], lay.boxes[t]
        x0, y0 = src.x + BOX_W / 2, src.y + BOX_H
        x1, y1 = dst.x + BOX_W / 2, dst.y
        if lane is None:
            points = [(x0, y0), (x0, y0 + GAP_Y / 2), (x1, y0 + GAP_Y / 2), (x1, y1)] if x0 != x1 else [(x0, y0), (x1, y1)]
        else:
            points = [(x0, y0), (x0, y0 + GAP_Y / 3), (lane, y0 + GAP_Y / 3), (lane, y1 - GAP_Y / 3),
                      (x1, y1 - GAP_Y / 3), (x1, y1)]
        out.append(("line", points))
        out.append(("arrow", x1, y1))
    for box in lay.boxes:
        out.append(("rect", box.x, box.y, BOX_W, BOX_H, FILL[box.status], box.status == "frozen"))
        out.append(("text", box.x + 6, box.y + 16, _fit(box.name, 30), 12, True))
        out.append(("text", box.x + 6, box.y + 32, _fit(f"{box.kind}  {box.shape}", 42), 11, False))
        if box.status == "frozen":
            out.append(("text", box.x + BOX_W - 44, box.y + 16, "frozen", 10, False))
    return out


def to_svg(lay: Layout) -> str:
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{lay.width:.0f}" height="{lay.height:.0f}" '
             f'viewBox="0 0 {lay.width:.0f} {lay.height:.0f}" font-family="DejaVu Sans Mono, monospace">',
             f"<title>{html.escape(lay.title)}</title>",
             f'<rect width="{lay.width:.0f}" height="{lay.height:.0f}" fill="#ffffff"/>']
    for p in primitives(lay):
        if p[0] == "rect":
            _, x, y, w, h, fill, dashed = p
            dash = ' stroke-dasharray="4 3"' if dashed else ""
            parts.append(f'<rect x="{x:.0f}" y="{y:.0f}" width="{w}" height="{h}" rx="4" fill="{fill}" '
                         f'stroke="#404040"{dash}/>')
        elif p[0] == "line":
            pts = " ".join(f"{x:.0f},{y:.0f}" for x, y in p[1])
            parts.append(f'<polyline points="{pts}" fill="none" stroke="#606060"/>')
        elif p[0] == "arrow":
            _, x, y = p
            parts.append(f'<polygon points="{x - 4:.0f},{y - 7:.0f} {x + 4:.0f},{y - 7:.0f} {x:.0f},{y:.0f}" '
                         'fill="#606060"/>')
        else:
            _, x, y, text, size, bold = p
            weight = ' font-weight="bold"' if bold else ""
            parts.append(f'<text x="{x:.0f}" y="{y:.0f}" font-size="{size}"{weight}>{html.escape(text)}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def to_png(lay: Layout, path) -> None:
    try:
        from PIL import Image, ImageDraw, ImageFont
    except ImportError:
        raise SpecError("writing a PNG needs Pillow (pip install pillow); or plot to a .svg file",
                        where="--plot") from None
    image = Image.new("RGB", (int(lay.width), int(lay.height)), "white")
    draw = ImageDraw.Draw(image)
    fonts = {}

    def font(size):
        if size not in fonts:
            try:
                fonts[size] = ImageFont.load_default(size=size)
            except TypeError:  # Pillow < 10.1: one bitmap size
                fonts[size] = ImageFont.load_default()
        return fonts[size]

    for p in primitives(lay):
        if p[0] == "rect":
            _, x, y, w, h, fill, dashed = p
            # Pillow draws no dashes: a frozen box gets a heavier border (and its "frozen" tag) instead.
            draw.rectangle([x, y, x + w, y + h], fill=fill, outline="#404040", width=2 if dashed else 1)
        elif p[0] == "line":
            draw.line(p[1], fill="#606060", width=1)
        elif p[0] == "arrow":
            _, x, y = p
            draw.polygon([(x - 4, y - 7), (x + 4, y - 7), (x, y)], fill="#606060")
        else:
            _, x, y, text, size, bold = p
            draw.text((x, y - size), text, fill="black", font=font(size))
    image.save(str(path), format="PNG")


def check_target(path, force: bool = False) -> None:
    """Before any work: a suffix we draw, and a path that may be written (as for every output)."""
    from .writing import check_writable

    _check_suffix(path)
    check_writable(Path(path), force, "--plot")


def _check_suffix(path) -> None:
    if Path(path).suffix.lower() not in SUFFIXES:
        raise SpecError(f"cannot plot to {Path(path).name}: give a file ending in .svg or .png", where="--plot")


def write_plot(model, path) -> str:
    """Draw ``model`` to ``path`` (.svg, or .png with Pillow), atomically; returns a one-line report."""
    from .writing import atomic_output

    _check_suffix(path)
    lay = layout(model)
    with atomic_output(Path(path)) as tmp:
        if Path(path).suffix.lower() == ".svg":
            Path(tmp).write_text(to_svg(lay), encoding="utf-8")
        else:
            to_png(lay, tmp)
    frozen = sum(b.status == "frozen" for b in lay.boxes)
    return f"{len(lay.boxes)} layers, {frozen} frozen"
