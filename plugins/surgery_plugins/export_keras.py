"""The ``keras`` exporter: the native ``.keras`` zip, loadable without surgery installed."""

from surgery import hookimpl


def export(model, path, options):
    model.save(str(path))
    return None


@hookimpl
def surgery_register_exporters(register):
    register(
        "keras",
        export,
        suffix=".keras",
        description="Keras 3 native format; loads with keras.saving.load_model, no custom objects",
    )
