"""A third party's plugin for its own layer class: it declares how the layer passes channels, so that surgery
can prune through it."""
