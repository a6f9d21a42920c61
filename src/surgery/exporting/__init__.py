"""Exports: outputs planned and written all or none, the check against Keras, the ONNX file."""
