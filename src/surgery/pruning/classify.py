"""``classify(op, node, calls)``: the :class:`~surgery.pruning.rules.Rule` of one call node of a model.

The kinds, roles and class lists are in ``rules.py``, and the table of what each Keras layer class does
in ``layer_rules.py``; this module checks what holds for every layer (a nested model, a shared layer, a
quantized one, weights no rule names) and the ops, and says why not for a layer it cannot vouch for.
"""

from __future__ import annotations

import numpy as np

from .layer_rules import Site, layer_rule
from .rules import MERGE_OPS, RULE_KINDS, UNARY_OPS, Rule, unknown, weight_index


def classify(op, node, calls: int, declared: dict | None = None) -> Rule:
    """The rule for one call node (``calls``: how often ``op`` is called in the model). ``declared`` maps
    "module.ClassName" to the rule a plugin registered for its own layer class (Registry.layer_rules)."""
    from .deps import keras

    k = keras()
    cls = type(op)
    name, module = cls.__name__, cls.__module__
    if node.is_input:
        return Rule("input")
    label = f"'{op.name}' ({name})"
    if isinstance(op, k.Model):
        return unknown(f"{label} is a nested model, which the pruner does not enter")
    if calls > 1:
        return unknown(f"{label} is called {calls} times (a shared layer)")
    if len(node.outputs) != 1:
        return unknown(f"{label} has {len(node.outputs)} outputs")
    out = node.outputs[0]
    if len(out.shape) < 2 or out.shape[-1] is None:
        return unknown(f"{label} gives a tensor without a fixed channel axis")
    plugin_rule = (declared or {}).get(f"{module}.{cls.__qualname__}")
    if plugin_rule is None and not module.startswith("keras."):
        return unknown(f"{label} is not a layer the pruner understands")
    if module.startswith("keras.src.ops."):
        return _op_rule(op, node, label)
    policy = getattr(op, "dtype_policy", None)
    if getattr(policy, "quantization_mode", None):
        return unknown(f"{label} is quantized")
    if getattr(op, "lora_enabled", False):
        return unknown(f"{label} has LoRA weights")
    site = Site(node, label, module)
    rule = _declared_rule(plugin_rule, op, site) if plugin_rule is not None else layer_rule(op, site)
    if rule.kind != "unknown":
        index = weight_index(op)
        # A role for a weight the layer lacks (a bias with use_bias=False) is no weight to slice.
        known = {index[n] for n in {r.weight for r in rule.roles} | set(rule.fixed) if n in index}
        extra = [v.name for i, v in enumerate(op.weights) if i not in known]
        if extra:
            return unknown(f"{label} has weights the pruner does not know ({', '.join(extra)})")
    return rule


def _declared_rule(rule, op, site: Site) -> Rule:
    """A plugin's rule for its own layer class; one that fails or answers otherwise than with a Rule leaves
    the layer's channels where they are, with the reason, rather than pruning it on a guess."""
    try:
        found = rule(op, site)
    except Exception as e:  # noqa: BLE001 (a plugin's code may fail any way at all)
        return unknown(f"{site.label}: its plugin's channel rule raised {type(e).__name__}: {e}")
    if not isinstance(found, Rule) or found.kind not in RULE_KINDS:
        return unknown(f"{site.label}: its plugin's channel rule gave {found!r}, not a surgery.ChannelRule")
    return found


def _scalar(x) -> bool:
    return np.size(x) == 1 if isinstance(x, (int, float, np.ndarray, np.number)) else False


def _op_rule(op, node, label) -> Rule:
    from .deps import keras

    name = type(op).__name__
    kt = keras().KerasTensor
    constants = [a for a in list(node.arguments.args) + list(node.arguments.kwargs.values()) if not isinstance(a, kt)]
    if name in MERGE_OPS or name in UNARY_OPS:
        if not all(_scalar(c) or c is None for c in constants):
            return unknown(f"{label} has a constant operand that is not a scalar")
        return Rule("merge" if name in MERGE_OPS else "pass")
    return unknown(f"{label} is an op the pruner does not understand")


def input_form(rule: Rule, op, node) -> str | None:
    """Why a layer reading only the input (in some form) still gives the input in another form, or None.

    Channel-preserving layers carry the input's own channels, which are blocked as the input's. A frozen
    1x1 map from the input's channels to as many channels (the preprocess op's RGB->BGR and means) makes
    new ids, yet each is one colour of every image: removing one would make the model ignore it.
    """
    if rule.kind in ("pass", "block", "repeat"):
        return "the model's input in another form"
    if rule.kind != "producer" or op.trainable:
        return None
    c_in, c_out = node.input_tensors[0].shape[-1], node.outputs[0].shape[-1]
    kernel = getattr(op, "kernel_size", (1,))
    if c_in != c_out or any(k != 1 for k in kernel):
        return None
    return (
        f"'{op.name}' is a fixed map of the model's input channels (preprocessing): each of its channels is "
        "one channel of every image"
    )
