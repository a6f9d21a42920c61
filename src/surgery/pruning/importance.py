"""Group importance of channels, and choosing which to remove (Torch-Pruning's scheme).

Importance of a channel class is computed over its whole group: every weight
slice tied to it (producers' output kernels, consumers' input kernel rows,
depthwise kernels, BatchNormalization and LayerScale gammas; not biases or BN
statistics) gives one value, the sum of ``|w|`` (l1) or ``w**2`` (l2) over the
slice (summed over the positions of one layer, so a Flatten->Dense counts its
rows for a channel once per layer), and the class's importance is the mean of
those values over the layers that have one.

- ``bn_scale``: ``|gamma|`` of the group's BatchNormalization layers (mean over
  them). A group without BatchNormalization, or with channels that pass through
  none (a concatenation of a branch with it and one without), falls back to l1,
  and the removal's ``notes`` says which groups did (refusing would make the
  criterion useless on half the models, e.g. a Dense head or ConvNeXt's MLPs).
- ``random``: uniform scores from ``numpy.random.default_rng(seed)``, drawn in
  group order, so the same seed gives the same removal.

Scopes: ``local`` removes ``ratio`` of each group's channels (rounded down).
``global`` divides each group's scores by the group's mean score (so a group
of large layers does not look more important only because its layers are
large), then removes the lowest-scored channels across all groups until
``ratio`` of all their channels are gone. Both keep in each group at least
``min_channels`` (and at least one) channel, and when a group has at least
``round_to`` channels its kept count is rounded *up* to a multiple of
``round_to`` (a group left with its original count is not pruned); rounding
can make a global removal fall slightly short of ``ratio``.
"""

from __future__ import annotations

import math

import numpy as np

CRITERIA = ("l1", "l2", "bn_scale", "random")
SCOPES = ("local", "global")


def class_scores(analysis, criterion: str) -> tuple[dict, set]:
    """({class root: importance}, ids of groups that have a BatchNormalization gamma)."""
    from .rules import role_ids, weight_index

    p = 2 if criterion == "l2" else 1
    total: dict[int, float] = {}
    count: dict[int, int] = {}
    bn_total: dict[int, float] = {}
    bn_count: dict[int, int] = {}
    bn_groups: set = set()
    root = analysis.root
    for rec in analysis.records:
        if not rec.is_layer or rec.rule.kind in ("unknown", "input", "block"):
            continue
        roles = [r for r in rec.rule.roles if r.score]
        if not roles:
            continue
        index = weight_index(rec.op)
        weights = rec.op.get_weights()
        for role in roles:
            if role.weight not in index:
                continue  # e.g. a BatchNormalization with scale=False has no gamma
            w = np.asarray(weights[index[role.weight]], dtype=np.float64)
            ids = role_ids(rec, role)
            if w.shape[role.axis] != len(ids):
                continue
            per_index = (np.abs(np.moveaxis(w, role.axis, 0)) ** p).reshape(len(ids), -1).sum(axis=1)
            roots, inverse = np.unique(root[ids], return_inverse=True)
            sums = np.bincount(inverse, weights=per_index, minlength=len(roots))
            is_bn = rec.rule.bn and role.weight == "gamma"
            for r, s in zip(roots.tolist(), sums.tolist()):
                total[r] = total.get(r, 0.0) + s
                count[r] = count.get(r, 0) + 1
                if is_bn:
                    bn_total[r] = bn_total.get(r, 0.0) + s
                    bn_count[r] = bn_count.get(r, 0) + 1
                    bn_groups.add(analysis.class_group[r])
    # A group is judged by its gammas only if every channel of it has one: a channel without (a concatenated
    # branch with no BatchNormalization) would otherwise score 0 and go first, whatever its weights.
    bn_groups -= {analysis.class_group[r] for r in total if r not in bn_count}
    if criterion == "bn_scale":
        scores: dict = {}
        for r, value in total.items():
            if analysis.class_group[r] in bn_groups:
                scores[r] = bn_total[r] / bn_count[r]
            else:
                scores[r] = value / count[r]
        return scores, bn_groups
    return {r: total[r] / count[r] for r in total}, bn_groups


def kept_after(n: int, removed: int, round_to: int, min_channels: int) -> int:
    """How many of ``n`` channels stay when ``removed`` are asked for, under the keeping rules."""
    kept = max(n - removed, min_channels, 1)
    if round_to > 1 and n >= round_to:
        kept = math.ceil(kept / round_to) * round_to
    return min(kept, n)


def select(
    analysis,
    model,
    ratio: float,
    criterion: str = "l1",
    scope: str = "local",
    groups=None,
    round_to: int = 1,
    min_channels: int = 1,
    seed: int = 0,
):
    """The channels to remove: ``ratio`` of the chosen groups' channels, least important first."""
    from .removal import Removal

    _check_selection(analysis, model, ratio, criterion, scope, round_to, min_channels)
    chosen = _chosen_groups(analysis, groups)
    scores, notes = _scores(analysis, chosen, criterion, seed)
    # Tie-break by channel position so equal scores always give the same choice.
    ranked = {
        g.id: sorted(g.classes.tolist(), key=lambda r: (scores.get(r, 0.0), analysis.class_index[r])) for g in chosen
    }
    taker = _Taker(analysis, chosen)
    if scope == "local":
        for g in chosen:
            want = g.channels - kept_after(g.channels, math.floor(g.channels * ratio + 1e-9), 1, min_channels)
            for r in ranked[g.id]:
                if len(taker.taken[g.id]) >= want:
                    break
                taker.take(g.id, r)
    else:
        target = math.floor(sum(g.channels for g in chosen) * ratio + 1e-9)
        limit = {g.id: g.channels - kept_after(g.channels, g.channels, 1, min_channels) for g in chosen}
        total = 0
        for _, gid, r in _normalised_pool(chosen, ranked, scores):
            if total >= target:
                break
            if len(taker.taken[gid]) < limit[gid] and taker.take(gid, r):
                total += 1
    classes = []
    for g in chosen:
        taken = taker.taken[g.id]  # least important first
        keep = g.channels - kept_after(g.channels, len(taken), round_to, min_channels)
        classes += taken[:keep]  # rounding the kept count up gives back the most important of those taken
    removal = Removal(analysis, frozenset(classes), tuple(notes))
    removal.check()
    return removal


def _check_selection(analysis, model, ratio, criterion, scope, round_to, min_channels) -> None:
    from .deps import OpError

    if analysis.model is not model:
        raise OpError("this analysis is of another model; analyze the model being pruned")
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 < ratio < 1:
        raise OpError(f"ratio must be a number between 0 and 1 (exclusive), not {ratio!r}")
    if criterion not in CRITERIA:
        raise OpError(f"criterion must be one of {', '.join(CRITERIA)}, not {criterion!r}")
    if scope not in SCOPES:
        raise OpError(f"scope must be one of {', '.join(SCOPES)}, not {scope!r}")
    for key, value in (("round_to", round_to), ("min_channels", min_channels)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise OpError(f"{key} must be an integer of at least 1, not {value!r}")


def _scores(analysis, chosen, criterion: str, seed: int) -> tuple[dict, list]:
    """class -> importance score for the chosen groups, and notes on what was scored another way."""
    if criterion == "random":
        rng = np.random.default_rng(seed)
        scores: dict = {}
        for g in chosen:
            scores.update(zip(g.classes.tolist(), rng.random(g.channels).tolist()))
        return scores, []
    scores, bn_groups = class_scores(analysis, criterion)
    missing = [g.id for g in chosen if g.id not in bn_groups] if criterion == "bn_scale" else []
    if not missing:
        return scores, []
    return scores, [
        f"bn_scale: {len(missing)} group(s) without a BatchNormalization on every channel scored by l1 "
        f"({', '.join(map(str, missing[:10]))}{' ...' if len(missing) > 10 else ''})"
    ]


class _Taker:
    """Removes classes one by one, never the last channel of a producer's output."""

    def __init__(self, analysis, chosen):
        self.a = analysis
        self.taken = {g.id: [] for g in chosen}
        self.left = {}
        for g in chosen:
            for r in g.classes.tolist():
                for s in analysis.class_spaces[r]:
                    self.left.setdefault(s, len(analysis.space_classes[s]))

    def take(self, gid, r) -> bool:
        spaces = self.a.class_spaces[r]
        if any(self.left[s] <= 1 for s in spaces):
            return False
        for s in spaces:
            self.left[s] -= 1
        self.taken[gid].append(r)
        return True


def _normalised_pool(chosen, ranked, scores) -> list:
    """(score / the group's mean score, group, class), lowest first."""
    pool = []
    for g in chosen:
        mean = float(np.mean([scores.get(r, 0.0) for r in g.classes.tolist()])) if g.channels else 0.0
        for pos, r in enumerate(ranked[g.id]):
            s = scores.get(r, 0.0)
            pool.append((s / mean if mean > 0 else 1.0, g.id, pos, r))
    pool.sort()
    return [(score, gid, r) for score, gid, _, r in pool]


def _chosen_groups(analysis, groups) -> list:
    from .deps import OpError

    if groups is None:
        return analysis.prunable_groups
    chosen = []
    for gid in groups:
        if isinstance(gid, bool) or not isinstance(gid, (int, np.integer)) or not 0 <= gid < len(analysis.groups):
            raise OpError(f"no group {gid!r}; groups are numbered 0..{len(analysis.groups) - 1}")
        g = analysis.groups[int(gid)]
        if not g.prunable:
            raise OpError(f"group {gid} cannot be pruned: {g.reason}")
        chosen.append(g)
    return chosen
