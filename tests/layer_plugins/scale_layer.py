"""The plugin author's own layer: one learnt scale per channel (what a LayerScale or a gate does)."""

from __future__ import annotations

import keras


@keras.saving.register_keras_serializable(package="layer_plugins")
class ChannelScale(keras.layers.Layer):
    def build(self, input_shape):
        self.scale = self.add_weight(name="scale", shape=(input_shape[-1],), initializer="random_uniform")

    def call(self, x):
        return x * self.scale
