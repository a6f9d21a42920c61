"""plot_layout's placing on graphs drawn by hand (no TensorFlow): rows from the longest path with side inputs
moved down beside their block, lanes for edges that skip rows (apart where their spans overlap, shared where
they do not), columns with "to A"/"from A" tags, and the names and prefixes the layout uses.
test_plot_layout.py draws every keras.applications backbone with the same code."""

from __future__ import annotations

from itertools import pairwise

import pytest

from surgery.report import plot_layout as layout
from surgery.report.plot_layout import BOX_W, GAP_X, GAP_Y, LANE, PITCH, Box


def _boxes(n, names=None):
    return [Box(names[i] if names else f"b{i}", "Dense", "(None, 4)", "trainable") for i in range(n)]


def _chain(n):
    return list(pairwise(range(n)))


def test_a_boxs_row_is_its_longest_path_with_a_side_input_moved_down_beside_its_block():
    # input -> conv1 -> conv2 -> add, and input -> projection -> add (a ResNet block's shortcut)
    edges = [(0, 1), (1, 2), (2, 4), (0, 3), (3, 4)]
    assert layout.ranks(5, edges) == [0, 1, 2, 2, 3]  # the projection beside conv2, not beside conv1
    assert layout.ranks(4, [(0, 1), (0, 2), (1, 3), (2, 3), (0, 3)]) == [0, 1, 1, 2]
    assert layout.ranks(3, [(0, 2), (1, 2)]) == [0, 0, 1]  # two inputs
    assert layout.ranks(3, [(0, 1)]) == [0, 1, 0]  # an unconnected box stays on the first row


def test_a_row_is_ordered_by_where_its_parents_sit():
    # two branches from two inputs: each child below its own parent, whatever their numbering
    rows = layout._slots(4, [(1, 2), (0, 3)], [0, 0, 1, 1])
    assert rows == {0: [0, 1], 1: [3, 2]}
    # a tie between a chain's next box and a shortcut: the one whose parent is on the row above goes first
    rows = layout._slots(4, [(0, 1), (1, 3), (0, 2)], [0, 1, 2, 2])
    assert rows[2] == [3, 2]


def _lanes(n, edges):
    boxes = _boxes(n)
    width, height, paths, lane_x, tags, columns = layout.place(boxes, edges, [])
    return boxes, lane_x, paths, (width, height, tags, columns)


def test_edges_that_skip_rows_over_a_common_height_run_down_lanes_of_their_own():
    boxes, lane_x, paths, _ = _lanes(5, [*_chain(5), (0, 3), (1, 4)])
    first_lane = BOX_W + GAP_X / 2  # right of the one-box rows it passes
    assert lane_x == [None, None, None, None, first_lane, first_lane + LANE]
    assert all(abs(a - b) >= LANE for a, b in pairwise(sorted(x for x in lane_x if x)))
    # the polyline leaves the box's bottom, runs down its lane, and enters the target's top
    x, bottom, top = BOX_W / 2, boxes[0].y + layout.BOX_H, boxes[3].y
    assert paths[4] == [[(x, bottom), (x, bottom + layout.GAP_Y / 3), (first_lane, bottom + layout.GAP_Y / 3),
                         (first_lane, top - layout.GAP_Y / 3), (x, top - layout.GAP_Y / 3), (x, top)]]  # fmt: skip


def test_skips_whose_spans_only_touch_share_a_lane_and_the_next_row_needs_none():
    _, lane_x, paths, _ = _lanes(5, [*_chain(5), (0, 2), (2, 4)])
    assert lane_x[-2:] == [BOX_W + GAP_X / 2] * 2
    assert paths[0] == [[(BOX_W / 2, layout.BOX_H), (BOX_W / 2, PITCH)]]  # the next row: straight down


def test_a_lane_goes_right_of_the_widest_row_it_passes():
    # 0 -> {1, 2} -> 3 -> 4 with a skip 0 -> 4: rows 1 and 2 are passed; row 1 is two boxes wide
    edges = [(0, 1), (0, 2), (1, 3), (2, 3), (3, 4), (0, 4)]
    boxes, lane_x, _, (width, *_) = _lanes(5, edges)
    assert lane_x[-1] == 2 * BOX_W + GAP_X + GAP_X / 2
    assert width == lane_x[-1] + GAP_X / 2


def test_a_tall_chain_is_wrapped_into_columns_joined_by_tags():
    boxes = _boxes(40, [f"block_{i // 2}_{'ab'[i % 2]}" for i in range(40)])  # a block start in every window
    width, height, paths, lane_x, tags, columns = layout.arrange(boxes, _chain(40))
    assert columns > 1 and height <= layout.TALL * width
    assert [t.label for t in tags] == [layout._label(k) for k in range(columns - 1) for _ in "tf"]
    assert [t.side for t in tags] == ["to", "from"] * (columns - 1)
    crossing = [len(p) for p in paths]
    assert crossing.count(2) == columns - 1 and crossing.count(1) == 39 - (columns - 1)
    # columns break near equal heights, between blocks, where consecutive names share the least
    firsts = sorted({b.column: b.name for b in reversed(boxes)}.items())
    assert all(name.endswith("_a") for _, name in firsts)


def test_a_short_graph_stays_one_column():
    width, height, _, _, tags, columns = layout.arrange(_boxes(5), _chain(5))
    assert columns == 1 and tags == [] and height == 5 * PITCH - layout.GAP_Y and width == BOX_W


@pytest.mark.parametrize(("k", "label"), [(0, "A"), (25, "Z"), (26, "AA"), (27, "AB"), (701, "ZZ"), (702, "AAA")])
def test_tags_are_lettered_as_spreadsheet_columns(k, label):
    assert layout._label(k) == label


def test_common_prefix():
    assert layout.common_prefix("block_3_project", "block_4_expand") == "block_"
    assert layout.common_prefix("conv", "conv_bn") == "conv" == layout.common_prefix("conv_bn", "conv")
    assert layout.common_prefix("", "x") == "" and layout.common_prefix("ab", "ab") == "ab"


def test_a_two_column_layout_puts_every_box_tag_lane_and_path_where_the_rules_say():
    """Six boxes in a chain, cut before row 3, with a skip from box 0 into the second column and one over a row
    there. Every figure below follows from the constants: rows PITCH = 66 apart under a tag strip of
    TAG_H + GAP_Y = 44, a box 290 wide, lanes GAP_X / 2 = 15 right of the rows they pass and LANE = 8 apart."""
    boxes = _boxes(6)
    edges = [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5), (0, 4), (3, 5)]
    width, height, paths, lane_x, tags, columns = layout.place(boxes, edges, [3])
    assert columns == 2 and [(b.column, b.rank) for b in boxes] == [(0, 0), (0, 1), (0, 2), (1, 3), (1, 4), (1, 5)]
    # column 0 is as wide as its lane (305 + 15), column 1 starts COL_GAP = 40 after it
    assert [(b.x, b.y) for b in boxes] == [(0, 44), (0, 110), (0, 176), (360, 44), (360, 110), (360, 176)]
    # "to" tags under column 0 (y = 44 + 3 * 66) centred on their box, pushed right of each other; "from" tags on top
    assert [(t.label, t.side, t.x, t.y) for t in tags] == [
        ("A", "to", 113, 242),
        ("A", "from", 473, 0),
        ("B", "to", 192, 242),
        ("B", "from", 552, 0),
    ]
    # the skip 3 -> 5 passes row 4 right of the lane of B's edge into box 4 (665, spans overlap): 8 further
    assert lane_x == [None, None, None, None, None, 305, 673]
    assert (width, height) == (688, 260)
    third = GAP_Y / 3
    assert paths[2] == [[(145, 216), (145, 242)], [(505, 18), (505, 44)]]  # straight down to A, A down to box 3
    assert paths[5] == [
        [(145, 84), (145, 84 + third), (305, 84 + third), (305, 242 - third), (224, 242 - third), (224, 242)],
        [(584, 18), (584, 18 + third), (665, 18 + third), (665, 110 - third), (505, 110 - third), (505, 110)],
    ]
    assert paths[6] == [
        [(505, 84), (505, 84 + third), (673, 84 + third), (673, 176 - third), (505, 176 - third), (505, 176)]
    ]


def test_column_breaks_near_equal_heights_where_fewest_edges_cross_then_names_differ_most():
    flat = [0] * 61
    assert layout._breaks(3, 30, flat, flat) == [10, 20]
    assert layout._breaks(2, 60, flat, flat) == [30]  # window: 60 // 20 = 3 rows either side of 30
    crossing = [2] * 61
    crossing[27] = crossing[26] = 1
    assert layout._breaks(2, 60, crossing, flat) == [27]  # 26 is outside the window
    kinship = [5] * 61
    kinship[32] = 1
    assert layout._breaks(2, 60, flat, kinship) == [32]
    assert layout._breaks(3, 3, flat, flat) == [1, 2]  # one row a column, each after the last
    assert layout._breaks(4, 3, flat, flat) is None  # more columns than rows


def test_an_input_moved_down_beside_its_child_goes_left_and_two_parents_sit_between_them():
    # 0 -> 1 -> 2 -> 3 and a second input 4 -> 3: the input's row is 2's, and it has no parent to follow
    rank = layout.ranks(5, [(0, 1), (1, 2), (2, 3), (4, 3)])
    assert rank == [0, 1, 2, 3, 2] and layout._slots(5, [(0, 1), (1, 2), (2, 3), (4, 3)], rank)[2] == [4, 2]
    # row 1: box 2 below parent 1 only, box 3 below parents 0 and 1 (their mean: 0.5) goes first
    edges = [(0, 2), (1, 3), (0, 3)]
    assert layout._slots(4, [(1, 2), (0, 3), (1, 3)], [0, 0, 1, 1])[1] == [3, 2]
    assert layout._slots(4, edges, [0, 0, 1, 1])[1] == [2, 3]


def test_a_branch_sits_beside_its_sibling_and_an_edge_to_it_bends_half_a_gap_above_it():
    boxes = _boxes(4)
    _, _, paths, _, _, _ = layout.place(boxes, [(0, 1), (0, 2), (1, 3), (2, 3)], [])
    assert [(b.x, b.y) for b in boxes] == [(0, 0), (0, PITCH), (BOX_W + GAP_X, PITCH), (0, 2 * PITCH)]
    mid = PITCH - GAP_Y / 2
    assert paths[1] == [[(BOX_W / 2, layout.BOX_H), (BOX_W / 2, mid), (BOX_W + GAP_X + BOX_W / 2, mid), (465, PITCH)]]
