"""Data given from Python rather than as a path: ``(x, y)`` arrays, or a ``tf.data.Dataset``.

A dataset is checked from its ``element_spec`` and ``cardinality`` before anything reads it, so a wrong one is
one line naming what it holds instead of a Keras error from inside ``fit``.
"""

from __future__ import annotations

from pathlib import Path

from .data import DataError, Source, arrays_source, check_class_names, inspect


def source_of(value, what: str = "--data", class_names=None) -> Source:
    """A data path, or data given from Python: ``(x, y)`` arrays, or a ``tf.data.Dataset`` of (image, label)."""
    if isinstance(value, (str, Path)):
        return inspect(value, what)
    if hasattr(value, "element_spec"):  # a tf.data.Dataset, without importing TensorFlow to ask
        check_length(value, what)
        check_elements(value, what)
        names = check_class_names(class_names or (), None, what)
        source = Source(Path(f"<{what} dataset>"), "dataset", names, dataset=value)
        source.labels()  # one pass for the labels: the class count, and what balanced class weights divide by
        return source
    if isinstance(value, dict):
        value = (value.get("x"), value.get("y"))
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return arrays_source(Path(f"<{what} arrays>"), value[0], value[1], class_names, None, what)
    raise DataError(f"expected a path, (x, y) arrays or a tf.data.Dataset, got {type(value).__name__}", where=what)


def check_length(dataset, what: str) -> None:
    """Refuse a dataset that never ends, or whose length is unknown: its labels are counted (class weights,
    the class count) and each epoch reads it once, so it must end."""
    n = int(dataset.cardinality())
    if n == -1:  # tf.data.INFINITE_CARDINALITY
        raise DataError(
            "the dataset never ends (it repeats: cardinality INFINITE); give it without .repeat(), "
            "each epoch reads it once",
            where=what,
        )
    if n == -2:  # tf.data.UNKNOWN_CARDINALITY
        raise DataError(
            "the dataset's length is unknown (a generator, filter() or a file reader); state it with "
            "dataset.apply(tf.data.experimental.assert_cardinality(N)) (N batches)",
            where=what,
        )


def check_elements(dataset, what: str) -> None:
    """A dataset's elements must be (image, integer class index), batched or not, as (x, y) arrays are."""
    spec = dataset.element_spec

    def refuse(reason: str):
        raise DataError(reason, where=what)

    if isinstance(spec, dict):
        refuse(
            f"the dataset's elements are dicts (keys {', '.join(map(str, spec))}); map them to "
            "(image, integer label) pairs with dataset.map"
        )
    if not isinstance(spec, tuple) or len(spec) != 2:
        n = len(spec) if isinstance(spec, tuple) else 1
        extra = " (sample weights are not taken: give class_weight)" if n == 3 else ""
        refuse(f"the dataset's elements hold {n} value{'s' * (n != 1)}, not (image, integer label){extra}")
    image, label = spec
    if not all(hasattr(part, "shape") and hasattr(part, "dtype") for part in spec):
        refuse("the dataset's images or labels are nested structures, not tensors")
    if image.shape.rank not in (3, 4) or not (image.dtype.is_floating or image.dtype.is_integer):
        refuse(f"the dataset's images are {image.dtype.name} of shape {_shape(image.shape)}: not images")
    batched = image.shape.rank == 4
    if not label.dtype.is_integer:
        refuse(f"the dataset's labels are {label.dtype.name}; give class indices 0, 1, 2, ... (names: class_names=)")
    if label.shape.rank != int(batched) and not (label.shape.rank == 1 + int(batched) and label.shape[-1] == 1):
        refuse(
            f"the dataset's labels have shape {_shape(label.shape)} for images of shape {_shape(image.shape)} "
            "(one-hot rows?); give one class index per image"
        )


def _shape(shape) -> str:
    return "(" + ", ".join("None" if d is None else str(d) for d in shape.as_list()) + ")"
