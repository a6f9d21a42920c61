"""LoRA through Keras' own ``enable_lora``: which layers get it, what it freezes, and what a save keeps.

Keras adds the low-rank matrices to Dense, EinsumDense and Conv layers and freezes their kernels. Three
things it leaves to the caller, done here:

- **Where.** By default the query and value projections of every ``MultiHeadAttention`` (found by their
  role in the attention layer, whatever the block calls them: KerasHub's ViT, DeiT, DINOv2, CLIP and
  SigLIP blocks all hold one); or the Dense, EinsumDense and Conv layers a selection picks.
- **Everything else frozen**, variable by variable: the block holding the projections must stay
  trainable for its LoRA matrices to train, so its other weights are frozen one by one.
- **A save that keeps it**: io/keras_state.py records the LoRA layers in the saved config, and the
  loader puts them back. ``merged`` gives exporters one plain kernel per layer.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Any

from ..errors import OpError, counted, one_line
from ..io.keras_state import all_layers, lora_layers
from ..keras_env import keras


def adaptable(layer) -> bool:
    """A layer Keras can add LoRA to: Dense, EinsumDense, Conv1D/2D/3D (and subclasses)."""
    k = keras()
    return isinstance(layer, (k.layers.Dense, k.layers.EinsumDense, k.layers.Conv1D, k.layers.Conv2D, k.layers.Conv3D))


def attention_projections(layer) -> list:
    """The query and value projections of every MultiHeadAttention in ``layer`` (itself included)."""
    k = keras()
    found = []
    for inner in all_layers(layer):
        if isinstance(inner, k.layers.MultiHeadAttention):
            found += [inner._query_dense, inner._value_dense]
    return found


def lora_weights(layer) -> list:
    return [layer.lora_kernel_a, layer.lora_kernel_b]


@dataclass(frozen=True)
class Added:
    targets: list  # the layers that got LoRA
    holders: list[str]  # the picked layers they are in
    lora_params: int
    frozen_params: int


def add(model, picked: list, rank: int, alpha: float) -> Added:
    """LoRA on each picked adaptable layer, else on the query and value projections of the attention in it;
    every other variable of ``model`` frozen."""
    found: dict[int, Any] = {}
    holders = []
    for layer in picked:
        inner = [layer] if adaptable(layer) else attention_projections(layer)
        if inner:
            holders.append(layer.name)
        found.update((id(t), t) for t in inner)
    chosen = list(found.values())
    if not chosen:
        raise OpError(
            "no Dense, EinsumDense or Conv layer and no MultiHeadAttention to adapt among "
            f"{counted(len(picked), 'selected layer')}; select such layers, or the blocks that hold the attention"
        )
    was_trainable = [w for w in model.weights if w.trainable]
    for layer in chosen:
        if getattr(layer, "lora_enabled", False):
            raise OpError(f"{layer.name} has LoRA already (an earlier lora step); a layer takes it once")
        try:
            layer.enable_lora(rank, lora_alpha=alpha)
        except ValueError as e:
            raise OpError(f"Keras cannot add LoRA to {layer.name}: {one_line(e, 200)}") from None
    keep = {id(w) for layer in chosen for w in lora_weights(layer)}
    for w in model.weights:
        if id(w) not in keep:
            w.trainable = False
    frozen = sum(math.prod(w.shape) for w in was_trainable)  # Keras froze the adapted kernels, the rest here
    lora = sum(math.prod(w.shape) for layer in chosen for w in lora_weights(layer))
    return Added(chosen, holders, lora, frozen)


@contextlib.contextmanager
def merged(model):
    """Each LoRA layer as one plain kernel (the matrices merged in) while an exporter traces the model."""
    layers = lora_layers(model)
    kept = []
    for layer in layers:
        kept.append(layer._kernel.numpy())
        layer._kernel.assign(layer.kernel)  # the property: kernel + alpha / rank * A @ B
        layer.lora_enabled = False
    try:
        yield
    finally:
        for layer, kernel in zip(layers, kept):
            layer._kernel.assign(kernel)
            layer.lora_enabled = True
