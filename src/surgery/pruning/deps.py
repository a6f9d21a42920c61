"""The one place this package imports from the rest of surgery (and Keras).

Everything else in ``surgery.pruning`` goes through these names, so a rename
in the core touches only this file. Keras (and so TensorFlow) is imported
lazily: ``keras()`` returns the module on first use.
"""

from __future__ import annotations

from surgery.errors import OpError  # noqa: F401  (bad input the user can fix: one line)
from surgery.keras_env import keras  # noqa: F401  (a function returning the keras module)
from surgery.model.graph import make_model, model_nodes  # noqa: F401


def close_names(word: str, names) -> str:
    """A '; did you mean ...' suffix for an unknown layer name."""
    import difflib

    names = sorted(set(names))
    close = difflib.get_close_matches(word, names, n=3, cutoff=0.6)
    if close:
        return "; did you mean " + " or ".join(f'"{c}"' for c in close) + "?"
    return f"; the model has {len(names)} layers"
