"""How pruning chooses channels, on groups given by hand (no model, no TensorFlow): the kept count under
``min_channels`` and ``round_to``, global scope's scores divided by each group's mean (two groups whose
weights differ tenfold), never a producer's last channel, the seeded random criterion, and the one-line
refusals. test_pruning*.py prune real models with the same code and compare with masked twins."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from surgery.errors import OpError
from surgery.pruning import importance


@pytest.mark.parametrize(
    ("n", "removed", "round_to", "min_channels", "kept"),
    [
        (10, 3, 1, 1, 7),
        (10, 10, 1, 1, 1),  # never all of them
        (10, 8, 1, 4, 4),  # min_channels
        (10, 3, 4, 1, 8),  # 7 rounded up to a multiple of 4
        (10, 3, 2, 1, 8),  # and of 2
        (10, 1, 4, 1, 10),  # 9 rounds up to 12: capped at 10, nothing pruned
        (3, 1, 4, 1, 2),  # fewer channels than round_to: not rounded
        (4, 1, 4, 1, 4),  # exactly round_to: rounded (3 -> 4)
    ],
)
def test_the_kept_count_follows_min_channels_and_round_to(n, removed, round_to, min_channels, kept):
    assert importance.kept_after(n, removed, round_to, min_channels) == kept


def _group(gid, classes):
    classes = np.array(classes)
    return SimpleNamespace(id=gid, classes=classes, channels=len(classes))


def test_global_scope_compares_each_channel_with_its_own_groups_mean():
    # group 0: large weights (mean 2), group 1: ten times smaller (mean 0.2); raw scores would take group 1's
    # channels first, normalised ones take each group's weakest relative to its own layers
    small, large = _group(1, [10, 11, 12, 13]), _group(0, [0, 1, 2, 3])
    scores = {0: 1.0, 1: 3.0, 2: 2.0, 3: 2.0, 10: 0.19, 11: 0.21, 12: 0.2, 13: 0.2}
    ranked = {g.id: sorted(g.classes.tolist(), key=lambda r: scores[r]) for g in (large, small)}
    pool = importance._normalised_pool([large, small], ranked, scores)
    assert [(round(s, 3), gid, r) for s, gid, r in pool] == [
        (0.5, 0, 0),
        (0.95, 1, 10),
        (1.0, 0, 2),
        (1.0, 0, 3),
        (1.0, 1, 12),
        (1.0, 1, 13),
        (1.05, 1, 11),
        (1.5, 0, 1),
    ]
    zero = _group(2, [20, 21])  # all-zero weights: every channel scores 1, in rank order
    assert importance._normalised_pool([zero], {2: [21, 20]}, {20: 0.0, 21: 0.0}) == [(1.0, 2, 21), (1.0, 2, 20)]
    assert importance._normalised_pool([_group(3, [])], {3: []}, {}) == []
    # a class without a score (no weights of its own to score) counts as 0, in the mean too
    unscored = importance._normalised_pool([_group(4, [30, 31])], {4: [31, 30]}, {30: 4.0})
    assert unscored == [(0.0, 4, 31), (2.0, 4, 30)]


def test_a_producers_last_channel_is_never_taken():
    # classes 0 and 1 share space "a" (two channels), class 2 alone in space "b", class 1 also in "b"
    analysis = SimpleNamespace(
        class_spaces={0: ["a"], 1: ["a", "b"], 2: ["b"]}, space_classes={"a": [0, 1], "b": [1, 2]}
    )
    taker = importance._Taker(analysis, [_group(0, [0, 1, 2])])
    assert taker.left == {"a": 2, "b": 2}
    assert taker.take(0, 1)  # leaves one in each space
    assert not taker.take(0, 0) and not taker.take(0, 2)  # either would empty a space
    assert taker.taken == {0: [1]} and taker.left == {"a": 1, "b": 1}
    three = SimpleNamespace(class_spaces={r: ["c"] for r in range(3)}, space_classes={"c": [0, 1, 2]})
    taker = importance._Taker(three, [_group(0, [0, 1, 2])])
    assert [taker.take(0, r) for r in range(3)] == [True, True, False]


def test_random_scores_are_drawn_in_group_order_from_the_seed():
    groups = [_group(0, [5, 6, 7]), _group(1, [8, 9])]
    scores, notes = importance._scores(None, groups, "random", seed=3)
    draws = np.random.default_rng(3).random(5).tolist()
    assert scores == dict(zip([5, 6, 7, 8, 9], draws)) and notes == []
    assert importance._scores(None, groups, "random", seed=4)[0] != scores


def test_bn_scale_says_which_groups_had_no_batchnormalization(monkeypatch):
    groups = [_group(g, [g]) for g in range(13)]
    analysis = object()

    def class_scores(given, criterion):
        assert given is analysis and criterion in ("bn_scale", "l1")
        return {0: 1.0}, {0, 2}

    monkeypatch.setattr(importance, "class_scores", class_scores)
    scores, notes = importance._scores(analysis, groups, "bn_scale", seed=0)
    assert scores == {0: 1.0}
    assert notes == [
        "bn_scale: 11 group(s) without a BatchNormalization on every channel scored by l1 (1, 3, 4, 5, 6, 7, 8, 9, 10, 11 ...)"
    ]
    few = importance._scores(analysis, groups[:4], "bn_scale", seed=0)[1]
    assert few == ["bn_scale: 2 group(s) without a BatchNormalization on every channel scored by l1 (1, 3)"]
    ten = importance._scores(analysis, groups[:12], "bn_scale", seed=0)[1]
    assert ten == [
        "bn_scale: 10 group(s) without a BatchNormalization on every channel scored by l1 (1, 3, 4, 5, 6, 7, 8, 9, 10, 11)"
    ]
    assert importance._scores(analysis, groups, "l1", seed=0)[1] == []  # l1 asked for: nothing to say
    assert importance._scores(analysis, groups[:1], "bn_scale", seed=0)[1] == []


def _refused(call, *args) -> str:
    with pytest.raises(OpError) as refused:
        call(*args)
    return str(refused.value)


def test_a_selection_that_cannot_be_made_is_one_line():
    model = object()
    analysis = SimpleNamespace(model=model)
    check = importance._check_selection
    assert _refused(check, SimpleNamespace(model=object()), model, 0.5, "l1", "local", 1, 1) == (
        "this analysis is of another model; analyze the model being pruned"
    )
    for ratio in (0, 1, 1.5, True, "0.5"):
        assert _refused(check, analysis, model, ratio, "l1", "local", 1, 1) == (
            f"ratio must be a number between 0 and 1 (exclusive), not {ratio!r}"
        )
    assert _refused(check, analysis, model, 0.5, "l3", "local", 1, 1) == (
        "criterion must be one of l1, l2, bn_scale, random, not 'l3'"
    )
    assert (
        _refused(check, analysis, model, 0.5, "l1", "layer", 1, 1) == "scope must be one of local, global, not 'layer'"
    )
    assert (
        _refused(check, analysis, model, 0.5, "l1", "local", 0, 1) == "round_to must be an integer of at least 1, not 0"
    )
    assert _refused(check, analysis, model, 0.5, "l1", "local", 1, True) == (
        "min_channels must be an integer of at least 1, not True"
    )
    assert _refused(check, analysis, model, 0.5, "l1", "local", 1, 2.0) == (
        "min_channels must be an integer of at least 1, not 2.0"
    )
    assert check(analysis, model, 0.5, "bn_scale", "global", 8, 2) is None


def test_groups_are_chosen_by_number_and_only_prunable_ones():
    groups = [SimpleNamespace(prunable=True), SimpleNamespace(prunable=False, reason="it feeds a Reshape")]
    analysis = SimpleNamespace(groups=groups, prunable_groups=[groups[0]])
    assert importance._chosen_groups(analysis, None) == [groups[0]]
    assert importance._chosen_groups(analysis, [np.int64(0)]) == [groups[0]]
    assert _refused(importance._chosen_groups, analysis, [1]) == "group 1 cannot be pruned: it feeds a Reshape"
    for gid in (2, -1, True, "0"):
        assert _refused(importance._chosen_groups, analysis, [gid]) == f"no group {gid!r}; groups are numbered 0..1"
