"""The three hooks a plugin may implement.

Each is a collector: the host passes a ``register`` callback it owns, so the
host checks names, clashes and schemas in one place and knows which plugin
registered what. Registering must be cheap and must not import TensorFlow.
"""

import pluggy

hookspec = pluggy.HookspecMarker("surgery")
hookimpl = pluggy.HookimplMarker("surgery")


@hookspec
def surgery_register_ops(register):
    """Register spec operations.

    ``register(name, schema, apply, *, check=None, description="", examples=(), source=False)``

    - ``name``: the ``op`` value in a spec step (lowercase, ``[a-z][a-z0-9_]*``).
    - ``schema``: JSON Schema (draft 2020-12) of the step's params, ``op`` excluded.
    - ``apply(state, params, ctx) -> State``: builds; may import Keras.
    - ``check(params, ctx)``: optional checks that need no model and no TensorFlow,
      run by ``surgery validate`` and before every build.
    - ``examples``: params that must validate (the conformance helper tries them).
    - ``source``: the op starts a model (it must be the first step).
    """


@hookspec
def surgery_register_backbones(register):
    """Register backbones for the ``backbone`` op.

    ``register(name, build, *, options=None, preprocess=None, input_shape=None,
    min_input_size=None, description="", check=None)``

    - ``build(**options) -> keras.Model``: imports Keras only when called.
    - ``options``: JSON Schema ``properties`` of the options the backbone takes;
      ``None`` means the keras.applications options (weights, include_top,
      input_shape, pooling, classes, classifier_activation).
    - ``preprocess``: dotted path (or callable) of its ``preprocess_input``.
    - ``input_shape``: default input shape; ``min_input_size``: smallest side.
    - ``check(options)``: optional checks that need no TensorFlow (a file's contents),
      run by ``surgery validate`` and before every build.
    """


@hookspec
def surgery_register_exporters(register):
    """Register output formats.

    ``register(format, export, *, suffix, description="")``

    - ``export(model, path, options) -> str | None``: writes ``path`` (the host
      handles temporary names and renaming) and returns a one-line report.
    """
