"""Raises inside its register hook."""

from surgery import hookimpl


@hookimpl
def surgery_register_ops(register):
    raise RuntimeError("the license server is unreachable")
