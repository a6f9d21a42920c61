"""LoRA through Keras' own ``enable_lora``: which layers get it, what it freezes, and what a save keeps.

Keras adds the low-rank matrices to Dense, EinsumDense and Conv layers and freezes their kernels. Three
things it leaves to the caller, done here:

- **Where.** By default the query and value projections of every attention layer (found by their role:
  Keras' ``MultiHeadAttention``, in KerasHub's ViT, DeiT, DINOv2, CLIP and SigLIP blocks, by its own
  attributes; KerasHub's own attention layers, in DINOv3, MiT, Swin and ViTDet, by the names they give
  their projections, a fused ``qkv`` taken whole); or the Dense, EinsumDense and Conv layers a selection
  picks.
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


# The attribute names attention layers give their projections, Keras' own and KerasHub's (DINOv3's
# query_dense, MiT's q and v, Swin's and ViTDet's fused qkv), tried in this order.
QUERY = ("query_dense", "query", "q_proj", "q")
VALUE = ("value_dense", "value", "v_proj", "v")
FUSED = ("qkv", "query_key_value", "in_proj")


def _projection(layer, names: tuple):
    for name in names:
        found = vars(layer).get(name)
        if found is not None and adaptable(found):
            return found
    return None


def _roles(attention) -> list:
    """The query and value projections of an attention layer that is not Keras' MultiHeadAttention, by the
    names their role has; a fused query-key-value projection when it has no separate ones."""
    query, value = _projection(attention, QUERY), _projection(attention, VALUE)
    if query is not None and value is not None:
        return [query, value]
    fused = _projection(attention, FUSED)
    return [fused] if fused is not None else []


def attention_projections(layer) -> list:
    """The query and value projections of every attention layer in ``layer`` (itself included).

    Keras' MultiHeadAttention (and its subclasses) by its own attributes; any other layer whose class name
    says it is an attention layer by the names in QUERY, VALUE and FUSED. A fused projection takes LoRA for
    query, key and value together: it is one kernel, and splitting it would change the layer."""
    k = keras()
    found = []
    for inner in all_layers(layer):
        if isinstance(inner, k.layers.MultiHeadAttention):
            found += [inner._query_dense, inner._value_dense]
        elif "attention" in type(inner).__name__.lower():
            found += _roles(inner)
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
