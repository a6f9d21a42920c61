"""Registers a name that a built-in plugin already has, plus one of its own.

Registration is all or nothing per plugin, so ``pad`` must not appear either.
"""

from surgery import hookimpl


def apply(state, params, ctx):
    return state


@hookimpl
def surgery_register_ops(register):
    register("pad", {"type": "object"}, apply, examples=[{}])
    register("append", {"type": "object"}, apply, examples=[{}])
