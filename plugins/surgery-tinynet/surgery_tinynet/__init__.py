"""surgery-tinynet: an example third-party plugin for surgery.

Everything a plugin needs is here: three hookimpls that hand the host what this
package provides. Registration only describes things (names, schemas,
callables); Keras is imported inside the callables, when a model is built, so
`surgery validate`, `plugins` and `schema` stay fast and TensorFlow-free.
"""

from surgery import RegisterOp, hookimpl

from . import backbone, export, head, squeeze_excite

__version__ = "0.1.0"


@hookimpl
def surgery_register_backbones(register):
    register(
        "tinynet",
        backbone.build,
        options=backbone.OPTIONS,
        preprocess=backbone.PREPROCESS,
        input_shape=backbone.INPUT_SHAPE,
        min_input_size=backbone.MIN_SIDE,
        description="a tiny CNN (conv-BN-ReLU-pool blocks) that builds in a blink on a CPU",
    )


@hookimpl
def surgery_register_ops(register: RegisterOp) -> None:
    register(
        "head",
        head.SCHEMA,
        head.apply,
        check=head.check,
        description="Pooling, dropout and a Dense classifier after the current output",
        examples=[{"classes": 10}, {"classes": 2, "pooling": "max", "dropout": 0.3, "activation": "sigmoid"}],
    )
    register(
        "squeeze_excite",
        squeeze_excite.SCHEMA,
        squeeze_excite.apply,
        description="Insert a squeeze-and-excitation block after a named layer (4-D output)",
        examples=[{"after": "block2_relu"}, {"after": "block3_pool", "ratio": 8, "name": "se3"}],
    )


@hookimpl
def surgery_register_exporters(register):
    register(
        "layers_json",
        export.export,
        suffix=".json",
        description="the layer table (name, class, output shape, params, trainable) as JSON",
    )
