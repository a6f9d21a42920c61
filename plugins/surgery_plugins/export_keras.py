"""The ``keras`` exporter: the native ``.keras`` zip, loadable without surgery installed."""

from surgery import hookimpl, save_model


def export(model, path, options):
    save_model(model, path)  # model.save, keeping LoRA and nested frozen weights for surgery's loader
    return None


@hookimpl
def surgery_register_exporters(register):
    register(
        "keras",
        export,
        suffix=".keras",
        description="Keras 3 native format; loads with keras.saving.load_model, no custom objects",
    )
