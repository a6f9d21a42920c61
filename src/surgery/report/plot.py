"""A picture of a model's graph: SVG written here, PNG through Pillow; no graphviz.

``keras.utils.plot_model`` needs pydot and the graphviz binaries, which a
plain ``pip install`` does not bring, so a ``--plot`` that depends on them
fails on most machines. One box per layer (and per operation that is not a
layer, such as ConvNeXt's ``x + y``), placed by ``plot_layout``: rows by path
length from the input, newspaper columns for deep graphs with "to A"/"from A"
tags where an edge goes on in the next column, lanes for edges that skip rows,
and runs of repeated blocks collapsed (with a count) when the picture would
still be over ``MAX_SIDE`` pixels.

Boxes are coloured by ``summary.trainable_status``, the one definition of
"frozen" used everywhere: a layer with weights none of which train. Frozen
layers are grey with a dashed border and a "frozen" tag, trainable ones blue,
partly trainable ones yellow, layers without weights (neither) white. The
model's outputs have a heavy border and an "output" tag. The title and legend
sit on their own rows above the graph, inside the canvas.
"""

from __future__ import annotations

import html
from pathlib import Path

from ..errors import SpecError
from .plot_fold import collapse, repeated_runs
from .plot_layout import (
    BOX_H,
    BOX_W,
    COL_GAP,
    GAP_X,
    MAX_SIDE,
    PITCH,
    TAG_H,
    TAG_W,
    TALL,
    Box,
    Layout,
    Tag,  # noqa: F401 (what a Layout's tags are)
    arrange,
    ranks,
)
from .shapes import SUFFIXES

MARGIN = 20
CHAR = 0.62  # a conservative width of one character, as a share of the font size
FILL = {"trainable": "#dbeafe", "frozen": "#d4d4d4", "partly": "#fef3c7", "no weights": "#ffffff"}
TAG_FILL, OUTPUT_STROKE = "#ffedd5", "#111111"
EXPLAIN = {"frozen": "(has weights, none train)", "partly": "(some weights train)"}


def text_width(text: str, size: float) -> float:
    return CHAR * size * len(text)


def _shape(tensors) -> str:
    shapes = [tuple(t.shape) for t in tensors]
    return ", ".join(str(s) for s in shapes) if len(shapes) == 1 else f"[{', '.join(str(s) for s in shapes)}]"


def graph(model) -> tuple[list, list]:
    """One Box per layer of ``model`` (in ``model.layers`` order), then one per operation that is not a layer
    (in execution order); a box's ``members`` is its own index. Edges (source, target) in execution order."""
    from ..model.graph import model_nodes
    from .summary import layer_rows, trainable_status

    boxes = []
    for i, (layer, (_, name, kind, shape, _, _)) in enumerate(zip(model.layers, layer_rows(model))):
        status = trainable_status(layer)
        boxes.append(
            Box(name, kind, shape, status, [i], frozen=int(status == "frozen"), weighted=int(status != "no weights"))
        )
    index = {id(layer): i for i, layer in enumerate(model.layers)}
    edges, seen = [], set()
    for node in model_nodes(model):  # execution order: every producer has its box before its consumers
        op = node.operation
        if op is None:
            continue
        if id(op) not in index:
            index[id(op)] = len(boxes)
            boxes.append(
                Box(
                    getattr(op, "name", "op"),
                    f"{type(op).__name__} (op)",
                    _shape(node.outputs),
                    "no weights",
                    [len(boxes)],
                    op=True,
                )
            )
        target = index[id(op)]
        for t in node.input_tensors:
            source = index.get(id(t._keras_history.operation))
            if source is not None and source != target and (source, target) not in seen:
                seen.add((source, target))
                edges.append((source, target))
    for t in model.outputs:
        source = index.get(id(t._keras_history.operation))
        if source is not None:
            boxes[source].output = True
    return boxes, edges


def layout(model, max_side: int = MAX_SIDE, tall: float = TALL) -> Layout:
    """Boxes, edges and their routes, title and legend, all inside ``width`` x ``height``."""
    boxes, edges = graph(model)
    layers = len(model.layers)
    return layout_graph(model.name, boxes, edges, layers, max_side, tall)


def layout_graph(title, boxes, edges, layers, max_side=MAX_SIDE, tall=TALL) -> Layout:
    frozen = sum(b.frozen for b in boxes)
    weighted = sum(b.weighted for b in boxes)
    # The graph gets what the margins and the title and legend rows (up to three) leave of max_side.
    boxes, edges, (width, height, paths, lanes, tags, columns) = fit(boxes, edges, max_side - 150, tall)
    runs = [b for b in boxes if b.repeats]
    heading = f"{title}: {layers} layers, {frozen} of {weighted} with weights frozen"
    if runs:
        heading += f"; {sum(len(b.members) for b in runs)} in {len(runs)} collapsed run{'s' * (len(runs) > 1)}"
    items = [(status, status, EXPLAIN.get(status)) for status in FILL]
    items.append(("output", "output", "(the model's result)"))
    if runs:
        items.append(("repeats", "collapsed", "(repeats of the block named, drawn once)"))
    if tags:
        items.append(("tag", "to A", '(the edge goes on at "from A")'))
    item_w = [28 + text_width(label, 11) + (6 + text_width(extra, 11) if extra else 0) for _, label, extra in items]
    canvas_w = max(width, text_width(heading, 13), max(item_w)) + 2 * MARGIN
    legend: list[tuple] = []
    x, y = float(MARGIN), MARGIN + 26
    for item, w in zip(items, item_w):
        if x > MARGIN and x + w > canvas_w - MARGIN:
            x, y = MARGIN, y + 22
        legend.append((x, y, *item))
        x += w + 18
    top = y + 14 + 24
    for box in boxes:
        box.x, box.y = box.x + MARGIN, box.y + top
    for tag in tags:
        tag.x, tag.y = tag.x + MARGIN, tag.y + top
    paths = [[[(px + MARGIN, py + top) for px, py in line] for line in lines] for lines in paths]
    lanes = [None if lane is None else lane + MARGIN for lane in lanes]
    return Layout(
        title,
        boxes,
        [(s, t, lane) for (s, t), lane in zip(edges, lanes)],
        canvas_w,
        top + height + MARGIN,
        paths,
        tags,
        columns,
        layers,
        frozen,
        weighted,
        heading,
        legend,
    )


def fit(boxes, edges, max_side: int = MAX_SIDE, tall: float = TALL):
    """Wrap; while a side is over ``max_side``, collapse more runs. Returns (boxes, edges, placed)."""
    placed = arrange(boxes, edges, tall, max_side)
    if max(placed[:2]) <= max_side:
        return boxes, edges, placed
    budget = max_side * max_side / tall
    fitted = boxes, edges, placed
    for keep_last in (True, False):  # runs of 3+ keeping their last block; else any run, keeping only the first
        runs = repeated_runs(boxes, edges, ranks(len(boxes), edges), keep_last)
        for j in range(1, len(runs) + 1):
            few, few_edges = collapse(boxes, edges, runs[:j])
            if j < len(runs) and _area(few, few_edges) > budget:
                continue
            fitted = few, few_edges, arrange(few, few_edges, tall, max_side)
            if max(fitted[2][:2]) <= max_side:
                return fitted
    return fitted


def _area(boxes, edges) -> float:
    """About the area the graph takes, wrapped."""
    rank = ranks(len(boxes), edges)
    per_row: dict[int, int] = {}
    for r in rank:
        per_row[r] = per_row.get(r, 0) + 1
    return sum((n * (BOX_W + GAP_X) + COL_GAP) * PITCH for n in per_row.values()) * 1.1


def _fit(text: str, room: float, size: float) -> str:
    """``text``, shortened in the middle (where "~" stands) to fit ``room`` pixels."""
    chars = int(room / (CHAR * size))
    if len(text) <= chars:
        return text
    head = max(1, (chars - 1) // 3)
    return text[:head] + "~" + text[len(text) - (chars - 1 - head) :]


def _box(out: list[tuple], x, y, status, border="box"):
    out.append(("rect", x, y, BOX_W, BOX_H, FILL[status], status == "frozen" and border != "sample", border))


def primitives(lay: Layout) -> list:
    """What to draw, backend-neutral: ("rect", x, y, w, h, fill, dashed, border), ("line", points),
    ("arrow", x, y), ("text", x, y (baseline), text, size, bold). border: "box", "output", "tag", "sample"."""
    out: list[tuple] = [("text", MARGIN, MARGIN + 13, lay.heading, 13, True)]
    for x, y, item, label, extra in lay.legend:
        if item in FILL:
            out.append(("rect", x, y, 14, 14, FILL[item], item == "frozen", "sample"))
        elif item == "output":
            out.append(("rect", x, y, 14, 14, "#ffffff", False, "output"))
        elif item == "repeats":
            out.append(("rect", x + 3, y + 3, 14, 11, "#ffffff", False, "sample"))
            out.append(("rect", x, y, 14, 11, "#ffffff", False, "sample"))
        else:
            out.append(("rect", x, y + 1, 14, 12, TAG_FILL, False, "tag"))
        out.append(("text", x + 20, y + 12, label, 11, item == "output"))
        if extra:
            out.append(("text", x + 26 + text_width(label, 11), y + 12, extra, 11, False))
    for lines in lay.paths:
        for points in lines:
            out.append(("line", points))
            out.append(("arrow", *points[-1]))
    for tag in lay.tags:
        out.append(("rect", tag.x, tag.y, TAG_W, TAG_H, TAG_FILL, False, "tag"))
        out.append(("text", tag.x + 5, tag.y + 13, _fit(f"{tag.side} {tag.label}", TAG_W - 8, 11), 11, False))
    for box in lay.boxes:
        marks = (["output"] if box.output else []) + (["frozen"] if box.status == "frozen" else [])
        if box.repeats:
            for d in (6, 3):  # a stack of boxes
                _box(out, box.x + d, box.y + d, box.status, "sample")
        _box(out, box.x, box.y, box.status, "output" if box.output else "box")
        right = box.x + BOX_W - 6
        for mark in reversed(marks):
            right -= text_width(mark, 10)
            out.append(("text", right, box.y + 15, mark, 10, mark == "output"))
            right -= 6
        out.append(("text", box.x + 6, box.y + 16, _fit(box.name, right - box.x - 8, 12), 12, True))
        if box.repeats:  # frozen or not as a count when the run is mixed (the fill says "partly")
            more = box.kind.split(" like ")[0]
            detail = box.kind if box.status != "partly" else f"{more}, {box.frozen} of {box.weighted} frozen"
        else:
            detail = f"{box.kind}  {box.shape}"
            if text_width(detail, 11) > BOX_W - 12:
                detail = f"{box.kind} {box.shape}"
        out.append(("text", box.x + 6, box.y + 32, _fit(detail, BOX_W - 12, 11), 11, False))
    return out


def to_svg(lay: Layout) -> str:
    parts = [
        (
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{lay.width:.0f}" height="{lay.height:.0f}" '
            f'viewBox="0 0 {lay.width:.0f} {lay.height:.0f}" font-family="DejaVu Sans Mono, monospace">'
        ),
        f"<title>{html.escape(lay.title)}</title>",
        f'<rect width="{lay.width:.0f}" height="{lay.height:.0f}" fill="#ffffff"/>',
    ]
    for p in primitives(lay):
        if p[0] == "rect":
            _, x, y, w, h, fill, dashed, border = p
            dash = ' stroke-dasharray="4 3"' if dashed else ""
            stroke = (
                f'stroke="{OUTPUT_STROKE}" stroke-width="3"'
                if border == "output"
                else 'stroke="#c2410c"'
                if border == "tag"
                else 'stroke="#404040"'
            )
            parts.append(
                f'<rect x="{x:.0f}" y="{y:.0f}" width="{w}" height="{h}" rx="4" fill="{fill}" {stroke}{dash}/>'
            )
        elif p[0] == "line":
            pts = " ".join(f"{x:.0f},{y:.0f}" for x, y in p[1])
            parts.append(f'<polyline points="{pts}" fill="none" stroke="#606060"/>')
        elif p[0] == "arrow":
            _, x, y = p
            parts.append(
                f'<polygon points="{x - 4:.0f},{y - 7:.0f} {x + 4:.0f},{y - 7:.0f} {x:.0f},{y:.0f}" fill="#606060"/>'
            )
        else:
            _, x, y, text, size, bold = p
            weight = ' font-weight="bold"' if bold else ""
            parts.append(f'<text x="{x:.0f}" y="{y:.0f}" font-size="{size}"{weight}>{html.escape(text)}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def to_png(lay: Layout, path) -> None:
    _check_pillow()
    from PIL import Image, ImageDraw, ImageFont

    image = Image.new("RGB", (int(lay.width), int(lay.height)), "white")
    draw = ImageDraw.Draw(image)
    fonts = {}

    def font(size, bold):
        if (size, bold) not in fonts:  # DejaVu Sans Mono where installed: the SVG's font, widths as estimated
            try:
                fonts[size, bold] = ImageFont.truetype(f"DejaVuSansMono{'-Bold' if bold else ''}.ttf", size)
            except OSError:
                try:
                    fonts[size, bold] = ImageFont.load_default(size=size)
                except TypeError:  # Pillow < 10.1: one bitmap size
                    fonts[size, bold] = ImageFont.load_default()
        return fonts[size, bold]

    for p in primitives(lay):
        if p[0] == "rect":
            _, x, y, w, h, fill, dashed, border = p
            # Pillow draws no dashes: a frozen box gets a heavier border (and its "frozen" tag) instead.
            outline, width = (
                (OUTPUT_STROKE, 3)
                if border == "output"
                else ("#c2410c", 1)
                if border == "tag"
                else ("#404040", 2 if dashed else 1)
            )
            draw.rectangle([x, y, x + w, y + h], fill=fill, outline=outline, width=width)
        elif p[0] == "line":
            draw.line(p[1], fill="#606060", width=1)
        elif p[0] == "arrow":
            _, x, y = p
            draw.polygon([(x - 4, y - 7), (x + 4, y - 7), (x, y)], fill="#606060")
        else:
            _, x, y, text, size, bold = p
            f = font(size, bold)
            if isinstance(f, ImageFont.FreeTypeFont):
                draw.text((x, y), text, fill="black", font=f, anchor="ls")
            else:
                draw.text((x, y - size), text, fill="black", font=f)
    image.save(str(path), format="PNG")


def check_target(path, force: bool = False) -> None:
    """Before any work: a suffix we draw, what drawing it needs, and a path that may be written (as for
    every output)."""
    from ..io.writing import check_output

    _check_suffix(path)
    if Path(path).suffix.lower() == ".png":
        _check_pillow()
    check_output(Path(path), force, "--plot")


def _check_suffix(path) -> None:
    if Path(path).suffix.lower() not in SUFFIXES:
        raise SpecError(f"cannot plot to {Path(path).name}: give a file ending in .svg or .png", where="--plot")


def _check_pillow() -> None:
    try:
        import PIL.ImageDraw  # noqa: F401 - only asked whether it is there
    except ImportError:
        raise SpecError(
            "writing a PNG needs Pillow (pip install pillow); or plot to a .svg file", where="--plot"
        ) from None


def report(lay: Layout) -> str:
    """ "14 layers, 4 of 7 with weights frozen" (summary.trainable_status's "frozen")."""
    return f"{lay.layers} layers, {lay.frozen} of {lay.weighted} with weights frozen"


def draw(model, path, tmp, max_side: int = MAX_SIDE) -> str:
    """Draw ``model`` into ``tmp`` in the format ``path``'s suffix names; returns a one-line report."""
    _check_suffix(path)
    lay = layout(model, max_side)
    if Path(path).suffix.lower() == ".svg":
        Path(tmp).write_text(to_svg(lay), encoding="utf-8")
    else:
        to_png(lay, tmp)
    return report(lay)


def write_plot(model, path, force: bool = False, max_side: int = MAX_SIDE) -> str:
    """Draw ``model`` to ``path`` (.svg, or .png with Pillow), atomically; returns a one-line report."""
    from ..io.writing import atomic_output

    _check_suffix(path)
    with atomic_output(Path(path), force) as tmp:
        return draw(model, path, tmp, max_side)
