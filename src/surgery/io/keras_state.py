"""What a ``.keras`` file must keep beyond Keras' own config, written by ``save_model`` and read back by the loader.

Keras saves a layer's ``trainable`` flag, but a frozen layer whose weights live in layers of its own (a
KerasHub transformer block) comes back with its variables trainable; and a LoRA projection inside such
a block has no config of its own, so Keras writes its merged kernel and forgets it had LoRA. The model's
config gets a ``"surgery"`` entry (Keras ignores keys it does not know, so the file still loads without
surgery, as the merged model) naming the LoRA layers and the frozen variables; ``restore`` puts them back.
"""

from __future__ import annotations

import contextlib
import os
import zlib
from collections.abc import Callable
from typing import Any

from ..keras_env import keras

KEY = "surgery"


def all_layers(layer) -> list:
    """``layer`` and every layer inside it, at any depth."""
    return layer._flatten_layers(include_self=True, recursive=True)


def lora_layers(model) -> list:
    """The layers (at any depth) with Keras' LoRA on a kernel (Dense, EinsumDense, Conv)."""
    return [layer for layer in all_layers(model) if getattr(layer, "lora_enabled", False) and hasattr(layer, "_kernel")]


# (top-level package of the layer's module, class name) -> mend(layer, config) -> a config its class loads
_MENDS: dict[tuple[str, str], Callable[[Any, dict], dict]] = {}


def register_config_mends(package: str, mends: dict[str, Callable[[Any, dict], dict]]) -> None:
    """Declare layer classes of ``package`` whose ``get_config`` writes a config their constructor rejects (a
    bug of that package): ``mends[class name](layer, config)`` returns one it accepts. ``config`` is what the
    class writes, or None where its ``get_config`` fails outright (the mend then writes the whole config).
    ``mend_configs`` gives it to every such layer of a model surgery builds or loads, so what surgery saves
    loads back."""
    _MENDS.update(((package, name), mend) for name, mend in mends.items())


def mend_configs(model) -> list[str]:
    """Give each layer of a registered class (at any depth) its mended ``get_config``; the classes mended.

    On the instances only, so the package's classes stay as they are; a layer mended already is left alone,
    so a model may pass here more than once (built, then loaded and saved again)."""
    mended = set()
    for layer in all_layers(model):
        kind = type(layer)
        mend = _MENDS.get((kind.__module__.split(".")[0], kind.__name__))
        if mend is None or "get_config" in vars(layer):
            continue
        written = layer.get_config

        def get_config(written=written, mend=mend, layer=layer):
            try:
                config = written()
            except (TypeError, ValueError, NotImplementedError):  # it cannot write itself: the mend writes it all
                config = None
            return mend(layer, config)

        layer.get_config = get_config
        if kind.build is keras().layers.Layer.build:
            # It makes its sublayers' weights only when first called (no build of its own): loaded, it must be
            # called, not given build(input_shape), which marks it built with those weights never made.
            layer.get_build_config = _no_build_config
        mended.add(kind.__name__)
    return sorted(mended)


def _no_build_config() -> None:
    return None


def save_model(model, path: str | os.PathLike) -> None:
    """``model.save(path)``, with what the file must keep beyond Keras' config (see ``record``)."""
    with recorded(model):
        model.save(str(path))


def refreeze(model) -> None:
    """Freeze again the variables of every frozen layer. Keras restores a frozen layer's flag but not its
    variables' when the layer builds its weights in layers of its own (a KerasHub transformer block):
    the model then lists them as trainable, and fit would train a block the spec froze."""
    for layer in getattr(model, "layers", []):
        if not layer.trainable:
            # Through the property's setter: `layer.trainable = False` on a frozen layer is skipped by
            # TensorFlow's attribute tracking (it short-circuits assigning a value the attribute has).
            type(layer).trainable.fset(layer, False)
        else:
            refreeze(layer)


def _tree(model):
    """(path, layer) for every layer below ``model``, the path made of layer names ("transformer_block_1/
    mha/query"): variable paths record where a variable was created (inside KerasHub's encoder, before
    surgery unrolled it), which a loaded model does not reproduce; the names of the layers do."""
    stack = [(layer.name, layer) for layer in getattr(model, "layers", [])]
    while stack:
        path, layer = stack.pop()
        yield path, layer
        stack += [(f"{path}/{inner.name}", inner) for inner in getattr(layer, "_layers", [])]


def _own_variables(layer) -> list:
    return list(getattr(layer, "_trainable_variables", [])) + list(getattr(layer, "_non_trainable_variables", []))


def record(model) -> dict | None:
    """What a save must keep beyond Keras' own config: the LoRA layers and the frozen variables."""
    tree = list(_tree(model))
    lora = [
        {"layer": path, "rank": layer.lora_rank, "alpha": layer.lora_alpha}
        for path, layer in tree
        if getattr(layer, "lora_enabled", False) and hasattr(layer, "_kernel")
    ]
    if not lora:
        return None
    # A variable by its place among its layer's own: a variable made without a name is called "variable_N"
    # with N counted across the process (SigLIP's pooling probe), so its name differs in the loaded model.
    frozen = sorted(
        f"{path}#{i}"
        for path, layer in tree
        for i, w in enumerate(_own_variables(layer))
        if not w.trainable and not w.name.startswith("lora_kernel")
    )
    return {"lora": lora, "frozen": frozen}


@contextlib.contextmanager
def recorded(model):
    """``model.get_config`` with the record added, while the model is saved."""
    entry = record(model)
    if entry is None:
        yield
        return
    written = model.get_config
    model.get_config = lambda: {**written(), KEY: entry}
    try:
        yield
    finally:
        del model.get_config


def _list(value) -> list:
    return value if isinstance(value, list) else []


def _positive(value, kinds) -> bool:
    return isinstance(value, kinds) and not isinstance(value, bool) and value > 0


def restore(model, config: dict) -> None:
    """Put back what ``record`` kept: LoRA on the merged kernels (fresh A, zero B) and the frozen variables."""
    inner = config.get("config") if isinstance(config, dict) else None
    entry = inner.get(KEY) if isinstance(inner, dict) else None
    if not isinstance(entry, dict):
        return
    tree = dict(_tree(model))
    k = keras()
    for item in _list(entry.get("lora")):
        # The file is someone else's: an entry that does not fit the model is passed over, and the model
        # stays as Keras loaded it (the merged kernel).
        if not (isinstance(item, dict) and isinstance(item.get("layer"), str)):
            continue
        layer, rank, alpha = tree.get(item["layer"]), item.get("rank"), item.get("alpha", item.get("rank"))
        if layer is None or not (hasattr(layer, "_kernel") and _positive(rank, int) and _positive(alpha, (int, float))):
            continue
        if not layer.lora_enabled:
            layer.enable_lora(rank, lora_alpha=alpha)
        # Keras zeroes both matrices when it loads a LoRA layer, where no gradient can move them.
        a = layer.lora_kernel_a
        a.assign(k.initializers.HeUniform(seed=zlib.crc32(item["layer"].encode()))(a.shape, dtype=a.dtype))
        layer.lora_kernel_b.assign(k.ops.zeros(layer.lora_kernel_b.shape))
    frozen = {path for path in _list(entry.get("frozen")) if isinstance(path, str)}
    for path, layer in tree.items():
        for i, w in enumerate(_own_variables(layer)):
            if f"{path}#{i}" in frozen or f"{path}/{w.name}" in frozen:  # the second: files of 2026-12-06/07
                w.trainable = False
