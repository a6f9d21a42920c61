"""Declares ChannelScale's channel rule by the class's dotted name: registering imports no Keras."""

from __future__ import annotations

from surgery import ChannelRole, ChannelRule, hookimpl, unknown_channels

LAYER = "layer_plugins.scale_layer.ChannelScale"


def rule(layer, site):
    if site.rank < 2:
        return unknown_channels(f"{site.label} scales a tensor without a channel axis")
    # One weight per channel, over the output's last axis, counted in the channel's importance.
    return ChannelRule("pass", roles=(ChannelRole("scale", "out", -1, score=True),))


@hookimpl
def surgery_register_channel_rules(register):
    register(LAYER, rule, description="per-channel scale: passes each channel, with its own weight")
