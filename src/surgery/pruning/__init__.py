"""Structural channel pruning of functional Keras models, by dependency group (as Torch-Pruning does).

    analysis = analyze(model)                      # groups of coupled channels, and why some cannot go
    removal = analysis.removal({"block1_conv1": [3, 7]})          # explicit channels of any layer of a group
    removal = select(analysis, model, 0.3, criterion="l1", scope="global", round_to=8)
    pruned, report = prune(model, removal)         # a new model; weights are exact slices
    twin = masked_twin(model, removal)             # the original with those channels zeroed: pruned(x) == twin(x)
    flops(model)                                   # 2 x multiply-accumulates, batch 1

Modules: ``rules`` and ``layer_rules`` (how each layer moves channels), ``walk`` and ``channels`` (the
analysis, over ``unionfind``), ``removal``, ``importance`` (scores and selection), ``rebuild``,
``twin``, ``flops``; ``deps`` is the one place that imports from the rest of
surgery. Importing this package does not import TensorFlow.
"""

from __future__ import annotations

from .channels import Analysis, Group
from .flops import flops
from .importance import CRITERIA, select
from .rebuild import PruneReport, prune
from .removal import Removal
from .twin import masked_twin
from .walk import analyze

__all__ = [
    "CRITERIA",
    "Analysis",
    "Group",
    "PruneReport",
    "Removal",
    "analyze",
    "flops",
    "masked_twin",
    "prune",
    "select",
]
