"""A KerasHub JSON file from a preset folder (config.json, image_converter.json), read as untrusted data."""

from __future__ import annotations

from surgery import OpError, SurgeryError, check_model_config, read_json, shown


def read_keras_hub_json(path: str, limit: int, what: str, described: str) -> dict:
    """The file's object: read bounded and strict, naming a keras_hub class, refused if it would run code
    or read a file; ``described`` says what it must describe, for the error line."""
    try:
        config = read_json(path, limit, what=what)
    except SurgeryError as e:
        raise OpError(f"preset: {shown(path)}: {e.message}") from None
    module = config.get("module") if isinstance(config, dict) else None
    if not (isinstance(module, str) and module.startswith("keras_hub.") and isinstance(config.get("config"), dict)):
        raise OpError(
            f"preset: {shown(path)} does not describe {described} (its module must be one of keras_hub's, "
            f"got {module!r}); a preset folder is what save_to_preset(folder) writes"
        )
    check_model_config(config, path, error=OpError)
    return config
