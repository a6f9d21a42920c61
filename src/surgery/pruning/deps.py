"""The one place this package imports from the rest of surgery (and Keras).

Everything else in ``surgery.pruning`` goes through these names, so a rename
in the core touches only this file. Keras (and so TensorFlow) is imported
lazily: ``keras()`` returns the module on first use.
"""

from __future__ import annotations

from surgery.errors import OpError, counted, did_you_mean  # noqa: F401  (bad input the user can fix: one line)
from surgery.keras_env import keras  # noqa: F401  (a function returning the keras module)
from surgery.model.graph import make_model, model_nodes  # noqa: F401
