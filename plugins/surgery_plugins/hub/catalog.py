"""KerasHub's vision presets for ``surgery backbones --presets``, read without importing keras_hub.

KerasHub keeps each family's presets in a ``<family>_presets.py`` module of dict literals (name ->
description, parameter count, the family's folder, the download handle). Importing keras_hub to read
them would import TensorFlow, which the light commands must not; so the installed package's files are
found with ``importlib.util.find_spec`` (which runs nothing) and their dicts read with ``ast``, never
executed. The package is the one the user installed, as any plugin is.
"""

from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path

# The KerasHub families whose backbones take images and give features a head can go on: the ones this
# plugin builds. The task-only families (detectors, segmenters, depth) and the vision-language models,
# which also ship image converters, are left out.
VISION_FAMILIES = (
    "clip", "cspnet", "deit", "densenet", "dinov2", "dinov3", "efficientnet", "hgnetv2", "metaclip_2", "mit",
    "mobilenet", "mobilenetv5", "resnet", "sam", "siglip", "swin_transformer", "vgg", "vit", "vit_det", "xception",
)  # fmt: skip
# "siglip_base_patch16_224", "mit_b0_ade20k_512": the side the preset was trained at, where its name says it
_SIDE = re.compile(r"_(\d{3,4})(?:_|$)")


def _literal_dicts(source: str) -> dict[str, dict]:
    """The module's top-level dict assignments: literals, and dicts merged from earlier ones ({**a, **b})."""
    found: dict[str, dict] = {}
    for node in ast.parse(source).body:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)):
            continue
        value = node.value
        if isinstance(value, ast.Dict) and all(
            k is None and isinstance(v, ast.Name) for k, v in zip(value.keys, value.values)
        ):
            merged: dict = {}
            for part in value.values:
                merged.update(found.get(part.id, {}))  # type: ignore[attr-defined]
            found[node.targets[0].id] = merged
            continue
        try:
            literal = ast.literal_eval(value)
        except ValueError:
            continue
        if isinstance(literal, dict):
            found[node.targets[0].id] = literal
    return found


def _models_folder() -> Path | None:
    spec = importlib.util.find_spec("keras_hub")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / "src" / "models"


def presets() -> list[dict]:
    """One entry per vision preset of the installed keras-hub: name, family, params, image_size, description."""
    folder = _models_folder()
    if folder is None:
        return []
    rows = []
    for family in VISION_FAMILIES:
        for path in sorted((folder / family).glob("*_presets.py")):
            table = _literal_dicts(path.read_text(encoding="utf-8")).get("backbone_presets", {})
            for name, entry in table.items():
                metadata = entry.get("metadata", {}) if isinstance(entry, dict) else {}
                side = _SIDE.search(name)
                rows.append(
                    {
                        "name": name,
                        "family": family,
                        "params": metadata.get("params"),
                        "image_size": int(side.group(1)) if side else None,
                        "description": " ".join(str(metadata.get("description", "")).split()),
                    }
                )
    return sorted(rows, key=lambda row: row["name"])
