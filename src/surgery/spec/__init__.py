"""Specs: reading and validating them, the JSON schemas, the selectors and the layer names they use."""
