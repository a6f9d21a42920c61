"""A channel rule that raises: its layer's channels stay where they are, with the reason."""

from __future__ import annotations

from surgery import hookimpl


def raises(layer, site):
    raise ValueError("no idea")


@hookimpl
def surgery_register_channel_rules(register):
    register("layer_plugins.scale_layer.ChannelScale", raises)
