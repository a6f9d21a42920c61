"""Registers an op whose schema is not valid JSON Schema ("int" is not a type)."""

from surgery import hookimpl


def apply(state, params, ctx):
    return state


@hookimpl
def surgery_register_ops(register):
    register("resize", {"type": "object", "properties": {"size": {"type": "int"}}}, apply)
