"""KerasHub backbones: the ``keras_hub`` backbone (backbone.py) and its blocks made layers (blocks.py)."""
