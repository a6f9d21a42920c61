"""The --plot picture: everything inside the canvas, bounded aspect, no overlaps, every layer and edge drawn.

The geometry is checked on ``plot.primitives`` (what both the SVG and the PNG draw), with text widths
estimated conservatively (0.62 x font size per character), for a few backbones here and for all 40
keras.applications backbones in the slow test.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import defaultdict
from itertools import pairwise

import numpy as np
import pytest

CHAR = 0.62
MAX_ASPECT, MAX_SIDE = 3.0, 6000


def _nodes(model):
    """The graph as the picture should show it: model.layers, then operations that are not layers (x + y),
    in execution order; edges between their indices."""
    from surgery.model.graph import model_nodes

    index = {id(layer): i for i, layer in enumerate(model.layers)}
    edges = set()
    for node in model_nodes(model):
        if node.operation is None:
            continue
        index.setdefault(id(node.operation), len(index))
        for t in node.input_tensors:
            edges.add((index[id(t._keras_history.operation)], index[id(node.operation)]))
    outputs = {index[id(t._keras_history.operation)] for t in model.outputs}
    return len(index), edges, outputs


def _rects(items, w, h):
    return np.array([(i.x, i.y, i.x + w, i.y + h) for i in items], dtype=float).reshape(-1, 4)


def _lanes(lay):
    """Every lane drawn: (x, top, bottom, column, what it carries), read off the polylines alone. A lane is
    a line running down inside a polyline (not its first or last piece, the stubs at the boxes' middles)."""
    found = []
    for (s, t, lane), lines in zip(lay.edges, lay.paths):
        src, dst = lay.boxes[s], lay.boxes[t]
        for part, (points, column) in enumerate(zip(lines, [src.column, dst.column][-len(lines) :])):
            runs = [(ax, min(ay, by), max(ay, by)) for (ax, ay), (bx, by) in pairwise(points[1:-1]) if ax == bx]
            assert len(runs) <= 1, points  # one lane per polyline at most
            if part == 0:  # the lane x the edge reports is the one its (first) polyline runs down
                assert [x for x, _, _ in runs] == ([] if lane is None else [lane]), (src.name, dst.name, lane, points)
            where = " (to its tag)" if len(lines) == 2 and part == 0 else " (from its tag)" if part else ""
            found += [(*run, column, f"{src.name} -> {dst.name}{where}") for run in runs]
    return found


def _check_lanes(lay):
    """What the layout promises of lanes (plot_layout's docstring): an edge that skips rows runs down a lane
    to the right of the rows it passes; and no two lanes are drawn as one line: any two that share some
    height are at least LANE apart (asked of the whole picture: lanes of two columns are farther apart)."""
    from surgery.report.plot_layout import BOX_H, BOX_W, LANE

    lanes = _lanes(lay)
    if not lanes:
        return
    x, top, bottom = (np.array([lane[k] for lane in lanes], dtype=float) for k in range(3))
    bx, by, bcol = (np.array([getattr(b, a) for b in lay.boxes], dtype=float) for a in ("x", "y", "column"))
    for lx, lo, hi, c, what in lanes:
        passed = (bcol == c) & (by < hi) & (by + BOX_H > lo)
        left = [lay.boxes[i].name for i in np.flatnonzero(passed & (bx + BOX_W >= lx))]
        assert not left, f"the lane of {what} at x={lx:g} runs left of boxes of the rows it passes: {left[:3]}"
    close = (np.abs(x[:, None] - x[None]) < LANE) & (top[:, None] < bottom[None]) & (top[None] < bottom[:, None])
    pairs = np.argwhere(np.triu(close, 1))
    shown = [
        f"{lanes[i][4]} at x={x[i]:g} y={top[i]:.0f}..{bottom[i]:.0f} and {lanes[j][4]} at x={x[j]:g} "
        f"y={top[j]:.0f}..{bottom[j]:.0f}"
        for i, j in pairs[:3]
    ]
    assert not len(pairs), f"{len(pairs)} pairs of lanes closer than LANE={LANE}, drawn as one line: {'; '.join(shown)}"


def check_picture(model, lay, max_side=MAX_SIDE):
    from surgery.report.plot import BOX_H, BOX_W, TAG_H, TAG_W, primitives, report
    from surgery.report.summary import trainable_status

    W, H = lay.width, lay.height
    assert W <= max_side and H <= max_side, (W, H)
    assert H / W <= MAX_ASPECT and W / H <= MAX_ASPECT, (W, H)
    prims = primitives(lay)

    # Everything inside the canvas, the legend's text included.
    for p in prims:
        if p[0] == "rect":
            _, x, y, w, h = p[:5]
            assert 0 <= x and x + w <= W and 0 <= y and y + h <= H, p
        elif p[0] == "line":
            assert all(0 <= x <= W and 0 <= y <= H for x, y in p[1]), p
        elif p[0] == "text":
            _, x, y, text, size, _ = p
            assert 0 <= x and x + CHAR * size * len(text) <= W and 0 <= y - size and y + 0.3 * size <= H, p
    title, legend = prims[0], [p for p in prims if p[0] == "text" and p[2] < min(b.y for b in lay.boxes)]
    assert title[3].startswith(f"{model.name}: {len(model.layers)} layers") and len(legend) > 4
    for word in ("trainable", "frozen", "(has weights, none train)", "partly", "no weights", "output"):
        assert word in [p[3] for p in legend]

    # No box (or connector tag) overlaps another, and no line runs through one.
    boxes = np.vstack([_rects(lay.boxes, BOX_W, BOX_H), _rects(lay.tags, TAG_W, TAG_H)])
    x0, y0, x1, y1 = boxes.T
    overlap = (x0[:, None] < x1[None]) & (x0[None] < x1[:, None]) & (y0[:, None] < y1[None]) & (y0[None] < y1[:, None])
    np.fill_diagonal(overlap, False)
    assert not overlap.any(), [lay.boxes[i].name for i in np.argwhere(overlap)[0] if i < len(lay.boxes)]
    for lines in lay.paths:
        for points in lines:
            for (ax, ay), (bx, by) in pairwise(points):
                assert ax == bx or ay == by, points  # lines run across and down only
                through = (
                    (np.minimum(ax, bx) < x1)
                    & (np.maximum(ax, bx) > x0)
                    & (np.minimum(ay, by) < y1)
                    & (np.maximum(ay, by) > y0)
                )
                assert not through.any(), (points, boxes[through][:1])
    _check_lanes(lay)
    # Text written in a box stays in it.
    for p in prims:
        if p[0] == "text":
            _, x, y, text, size, _ = p
            inside = (x0 <= x) & (x < x1) & (y0 < y) & (y <= y1)
            for bx0, _, bx1, _ in boxes[inside]:
                assert x + CHAR * size * len(text) <= bx1, (text, bx0, bx1)

    # Every layer (and operation) drawn once, alone or counted in a collapsed box.
    n, edges, outputs = _nodes(model)
    layers = model.layers  # a new list at each read: once, not once per box
    owner = {}
    for k, box in enumerate(lay.boxes):
        for m in box.members:
            assert m not in owner, m
            owner[m] = k
        if not box.repeats:
            assert len(box.members) == 1
            if box.members[0] < len(layers):
                assert box.name == layers[box.members[0]].name
    assert sorted(owner) == list(range(n))
    # Every edge drawn: into the box it ends at, through a "to X" / "from X" pair where it changes column.
    drawn = {(s, t): lines for (s, t, _), lines in zip(lay.edges, lay.paths)}
    assert len(drawn) == len(lay.edges)
    wanted = {(owner[s], owner[t]) for s, t in edges if owner[s] != owner[t]}
    assert set(drawn) == wanted
    tags = {(tag.side, tag.label): tag for tag in lay.tags}
    for (s, t), lines in drawn.items():
        src, dst = lay.boxes[s], lay.boxes[t]
        assert lines[0][0] == (src.x + BOX_W / 2, src.y + BOX_H)
        assert lines[-1][-1] == (dst.x + BOX_W / 2, dst.y)
        if len(lines) == 2:
            ends = [tag for tag in lay.tags if lines[0][-1] == (tag.x + TAG_W / 2, tag.y) and tag.side == "to"]
            assert len(ends) == 1
            start = tags["from", ends[0].label]
            assert lines[1][0] == (start.x + TAG_W / 2, start.y + TAG_H)
            assert src.column < dst.column
        else:
            assert src.column == dst.column and len(lines) == 1
    texts = [p for p in prims if p[0] == "text"]
    by_text = defaultdict(list)  # the texts by what they say: each box below looks up its own, not all
    for p in texts:
        by_text[p[3]].append(p)
    for tag in lay.tags:
        assert any(tag.x <= p[1] <= tag.x + TAG_W for p in by_text[f"{tag.side} {tag.label}"])

    # The outputs: a heavy border and an "output" tag.
    marked = {k for k, box in enumerate(lay.boxes) if box.output}
    assert marked == {owner[o] for o in outputs}
    for k in marked:
        box = lay.boxes[k]
        assert ("rect", box.x, box.y, BOX_W, BOX_H) in [p[:5] for p in prims if p[0] == "rect" and p[7] == "output"]
        assert any(box.x < p[1] < box.x + BOX_W and box.y < p[2] < box.y + BOX_H for p in by_text["output"])

    # Frozen as summary.trainable_status says, per box and in the counts.
    status = [trainable_status(layer) for layer in model.layers]
    assert lay.frozen == status.count("frozen") and lay.weighted == len(status) - status.count("no weights")
    assert report(lay) == f"{len(model.layers)} layers, {lay.frozen} of {lay.weighted} with weights frozen"
    for box in lay.boxes:
        mine = [status[m] for m in box.members if m < len(status)]
        assert box.frozen == mine.count("frozen") and box.weighted == len(mine) - mine.count("no weights")
        if not box.repeats and mine:
            assert box.status == mine[0]
        tagged = any(box.x < p[1] < box.x + BOX_W and box.y < p[2] < box.y + BOX_H for p in by_text["frozen"])
        assert tagged == (box.status == "frozen"), box.name
        if box.repeats and box.status == "partly":
            assert any(f"{box.frozen} of {box.weighted} frozen" in p[3] for p in texts)
    return prims


def _backbone(keras, name, side=32, frozen_share=0.4):
    # A picture needs the graph, not the weights: in a StatelessScope that does not initialize them on exit,
    # Keras never draws the variables' random initial values, three quarters of the build time of the
    # largest backbones (EfficientNetV2L at 32 px: 7.8 s with the values drawn, 2.0 s without).
    with keras.StatelessScope(initialize_variables=False):
        model = getattr(keras.applications, name)(weights=None, include_top=False, input_shape=(side, side, 3))
    for layer in model.layers[: int(len(model.layers) * frozen_share)]:
        layer.trainable = False
    return model


@pytest.mark.parametrize("name", ["VGG16", "MobileNetV2", "ResNet50"])
def test_backbone_pictures_fit_and_show_everything(keras, name):
    from surgery.report.plot import layout

    model = _backbone(keras, name)
    lay = layout(model)
    check_picture(model, lay)
    assert lay.columns > 1 and lay.tags  # wrapped, with connectors: a single column would be over 3:1


def test_collapsing_repeated_blocks_keeps_counts_and_the_runs_ends(keras):
    """Forced to a small picture, ResNet50 collapses runs of equal blocks and keeps their first and last."""
    from surgery.report.plot import layout

    model = _backbone(keras, "ResNet50", frozen_share=0)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False  # frozen BN in every block: the collapsed runs are partly frozen
    lay = layout(model, max_side=3000)
    check_picture(model, lay, max_side=3000)
    runs = [box for box in lay.boxes if box.repeats]
    assert runs and all(box.status == "partly" for box in runs)
    names = {box.name for box in lay.boxes}
    assert "conv4_block2_out" in names and "conv4_block6_out" in names
    assert any(box.name == "conv4_block3 .. conv4_block5" and box.repeats == 3 for box in runs)
    assert sum(len(box.members) for box in lay.boxes) == len(model.layers)


def test_legend_inside_a_single_column_picture(keras):
    """The reported bug: on a narrow graph the legend ran past the canvas' right edge."""
    from surgery.report.plot import layout

    x = inputs = keras.Input((4,), name="x")
    x = keras.layers.Dense(3, name="d1")(x)
    model = keras.Model(inputs, keras.layers.Dense(2, name="d2")(x), name="tiny")
    model.get_layer("d1").trainable = False
    lay = layout(model)
    check_picture(model, lay)
    assert lay.columns == 1 and not lay.tags
    assert [p[3] for p in lay.legend][:4] == ["trainable", "frozen", "partly", "no weights"]


def test_two_heads_and_an_operation_are_drawn(keras):
    """Branches stay visible: a two-head model has both heads, both outputs marked; x + y is a box."""
    from surgery.report.plot import layout, primitives

    layers = keras.layers
    x = inputs = keras.Input((8, 8, 3), name="image")
    a = layers.Conv2D(4, 3, padding="same", name="conv")(x)
    long = "side_branch_with_a_name_far_too_long_for_one_box_to_hold"
    b = a + layers.Conv2D(4, 3, padding="same", name=long)(a)  # an operation, not a layer
    pooled = layers.GlobalAveragePooling2D(name="pooled")(b)
    classes = layers.Dense(3, name="classes")(pooled)
    embedding = layers.UnitNormalization(name="embedding")(layers.Dense(5, name="embedding_dense")(pooled))
    model = keras.Model(inputs, [classes, embedding], name="two_heads")
    model.get_layer("conv").trainable = False
    lay = layout(model)
    check_picture(model, lay)
    name = {box.name: k for k, box in enumerate(lay.boxes)}
    assert {lay.boxes[k].name for k, box in enumerate(lay.boxes) if box.output} == {"classes", "embedding"}
    ops = [box for box in lay.boxes if box.op]
    assert len(ops) == 1 and ops[0].kind == "Add (op)"
    edges = {(s, t) for s, t, _ in lay.edges}
    assert (name["pooled"], name["classes"]) in edges and (name["pooled"], name["embedding_dense"]) in edges
    assert (name["conv"], name[ops[0].name]) in edges and (name[long], name[ops[0].name]) in edges
    shown = [p[3] for p in primitives(lay) if p[0] == "text" and p[3].startswith("side_")]
    assert len(shown) == 1 and "~" in shown[0] and shown[0].endswith("_one_box_to_hold")  # fitted in the middle


def test_skip_edges_over_a_common_height_get_lanes_of_their_own(keras):
    """Three early outputs joined at the end skip rows side by side: three lanes, LANE apart, not one line."""
    from surgery.report.plot import layout
    from surgery.report.plot_layout import LANE

    x = inputs = keras.Input((4,), name="x")
    a = keras.layers.Dense(4, name="a")(x)
    b = keras.layers.Dense(4, name="b")(a)
    d = keras.layers.Dense(4, name="d")(keras.layers.Dense(4, name="c")(b))
    model = keras.Model(inputs, keras.layers.Concatenate(name="joined")([x, a, b, d]), name="skips")
    lay = layout(model)
    check_picture(model, lay)
    assert lay.columns == 1
    name = {k: box.name for k, box in enumerate(lay.boxes)}
    lanes = {name[s]: lane for s, t, lane in lay.edges if lane is not None}
    assert set(lanes) == {"x", "a", "b"} and all(name[t] == "joined" for s, t, lane in lay.edges if lane is not None)
    xs = sorted(lanes.values())
    assert all(q - p >= LANE for p, q in pairwise(xs)), lanes  # all three run past c's row: one line if equal


def test_write_plot_writes_svg_and_png_of_the_same_picture(keras, tmp_path):
    from PIL import Image

    from surgery.report.plot import layout, write_plot

    model = _backbone(keras, "MobileNetV2")
    lay = layout(model)
    reports = {suffix: write_plot(model, tmp_path / f"graph{suffix}") for suffix in (".svg", ".png")}
    wanted = f"{len(model.layers)} layers, {lay.frozen} of {lay.weighted} with weights frozen"
    assert reports[".svg"] == reports[".png"] == wanted
    with Image.open(tmp_path / "graph.png") as image:
        assert image.format == "PNG" and image.size == (int(lay.width), int(lay.height))
        pixels = np.asarray(image.convert("L"))
        assert (pixels < 128).mean() > 0.005  # something is drawn, not a blank canvas
        assert (pixels[20:36, 20:200] < 128).any()  # the title's text (no line or box runs there)
    root = ET.parse(tmp_path / "graph.svg").getroot()
    assert (root.get("width"), root.get("height")) == (f"{lay.width:.0f}", f"{lay.height:.0f}")
    ns = "{http://www.w3.org/2000/svg}"
    texts = [t.text for t in root.iter(f"{ns}text")]
    assert texts.count("output") == 1 + 1  # the output box and the legend
    assert texts.count("frozen") == sum(box.status == "frozen" for box in lay.boxes) + 1
    assert sum(r.get("stroke-width") == "3" for r in root.iter(f"{ns}rect")) == 1 + 1
    assert any(t == "from A" for t in texts) and any(t == "to A" for t in texts)


def test_write_plot_overwrites_only_when_forced(keras, tmp_path):
    """--force reaches the write: write_plot replaces an existing file only when told to."""
    from surgery.errors import SurgeryError
    from surgery.report.plot import check_target, write_plot

    x = inputs = keras.Input((4,), name="x")
    model = keras.Model(inputs, keras.layers.Dense(2, name="d")(x))
    target = tmp_path / "graph.svg"
    target.write_text("old")
    with pytest.raises(SurgeryError, match="already exists"):
        check_target(target)
    with pytest.raises(SurgeryError, match="already exists"):
        write_plot(model, target)
    assert target.read_text() == "old"
    check_target(target, force=True)
    assert write_plot(model, target, force=True) == "2 layers, 0 of 1 with weights frozen"
    assert target.read_text().startswith("<svg")


def _applications():
    from surgery_plugins.applications import TABLE

    return [(name, max(32, smallest)) for name, _, _, smallest, _ in TABLE]


@pytest.mark.slow
@pytest.mark.parametrize("name,side", _applications())
def test_every_application_backbone_picture(keras, name, side):
    """All 40 keras.applications backbones: inside the canvas, at most 3:1, every layer and edge, on screen."""
    from surgery.report.plot import layout, to_svg

    model = _backbone(keras, name, side)
    lay = layout(model)
    check_picture(model, lay)
    ET.fromstring(to_svg(lay))
    keras.backend.clear_session()
