"""What surgery shows of a model: the layer table, what each step changed, the picture."""
