"""The model between steps: its state, the functional graph, layers from a config, preprocessing."""
