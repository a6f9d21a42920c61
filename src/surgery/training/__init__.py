"""Training a built model: ``surgery train``, ``surgery features`` and ``surgery predict``.

Modules, lightest first (the first three import no TensorFlow; the train section's
schema and options table are ``surgery.spec.train_options``, in the core, since ``surgery validate`` checks them):

- ``config``: the spec's ``train`` section merged with command-line overrides, checked;
- ``data``: what an image folder or ``.npz`` holds, checked without TensorFlow;
- ``run_folder``: the output folder, checkpoints, and what ``--resume`` reads back;
- ``pipeline``: the tf.data pipelines (decode, resize, preprocess, shuffle, batch);
- ``precision``: mixed-precision policies and a float32 output;
- ``stages``: freeze/unfreeze before a stage, the loss for the model's head, compiling;
- ``callbacks``: the checkpoints and timing a run adds to ``fit``;
- ``distribute``: the strategy (``TF_CONFIG`` read without TensorFlow) and which ``fit`` runs under it;
- ``loop``: ``fit`` as a custom loop, for multi-worker training, where Keras' ``fit`` fails;
- ``feature_cache``: training the layers after a frozen prefix on its outputs, computed once;
- ``run``: the training run itself (``Run``);
- ``models``, ``features`` and ``predict``: a saved model or spec to run, the feature extractor and classifier.
"""

from ..errors import SurgeryError
from ..keras_env import native_stderr_muted


def quietly(fn, *args, **kwargs):
    """Call ``fn`` with TensorFlow's native log lines muted (tf.data and the first step start runtimes that log).

    A SurgeryError is raised after the mute ends, so that the muted log is not replayed in front of its
    one-line message; anything else replays it, since it may explain the failure.
    """
    failure = None
    with native_stderr_muted():
        try:
            return fn(*args, **kwargs)
        except SurgeryError as e:
            failure = e
    raise failure
