"""Every KerasHub vision family at a small configuration, through surgery: what works, and why not.

Each family is built with a seed at 32-64 px and 2-3 blocks, saved with ``save_to_preset``, then taken
through surgery from that folder (KerasHub's real ``from_preset`` path): the model against KerasHub's
own, a cut at a block, freezing the blocks before it, a ``.keras`` save and Keras load, ONNX parity,
LoRA and channel pruning. A cell is "ok" (with its figure) or the one line surgery gave.

    python bench/hub.py            # the table (about two minutes on 2 cores)
    python bench/hub.py vit swin   # some families
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
# bench/onnx.py would shadow the onnx package that the exporters import: the folder goes last.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE] + [str(HERE)]

SIDE = 32
TRANSFORMER = {"num_layers": 3, "num_heads": 2, "hidden_dim": 16, "intermediate_dim": 32, "patch_size": 8}


def _two_tower(m, vision_cls, text_cls, backbone_cls, **extra):
    vision = getattr(m, vision_cls)(image_shape=(SIDE, SIDE, 3), **TRANSFORMER)
    text = getattr(m, text_cls)(
        vocabulary_size=50,
        embedding_dim=16,
        hidden_dim=16,
        num_layers=1,
        num_heads=2,
        intermediate_dim=32,
        max_sequence_length=8,
    )
    return getattr(m, backbone_cls)(vision_encoder=vision, text_encoder=text, **extra)


# family -> (builder of KerasHub's model, the backbone step's extra options)
FAMILIES = {
    "vit": (lambda m: m.ViTBackbone(image_shape=(SIDE, SIDE, 3), mlp_dim=32, **_no("intermediate_dim")), {}),
    "deit": (lambda m: m.DeiTBackbone(image_shape=(SIDE, SIDE, 3), **TRANSFORMER), {}),
    "dinov2": (
        lambda m: m.DINOV2Backbone(image_shape=(SIDE, SIDE, 3), position_embedding_shape=(SIDE, SIDE), **TRANSFORMER),
        {},
    ),
    "dinov3": (lambda m: m.DINOV3Backbone(image_shape=(SIDE, SIDE, 3), **TRANSFORMER), {}),
    "clip_vision": (
        lambda m: _two_tower(m, "CLIPVisionEncoder", "CLIPTextEncoder", "CLIPBackbone", projection_dim=8),
        {"part": "vision_encoder"},
    ),
    "siglip_vision": (
        lambda m: _two_tower(m, "SigLIPVisionEncoder", "SigLIPTextEncoder", "SigLIPBackbone"),
        {"part": "vision_encoder"},
    ),
    "swin": (
        lambda m: m.SwinTransformerBackbone(
            image_shape=(SIDE, SIDE, 3), embed_dim=16, depths=[2, 2], num_heads=[2, 2], window_size=4, patch_size=4
        ),
        {},
    ),
    "mit": (
        lambda m: m.MiTBackbone(
            layerwise_depths=[1, 1],
            num_layers=2,
            layerwise_num_heads=[1, 2],
            layerwise_sr_ratios=[2, 1],
            max_drop_path_rate=0.0,
            layerwise_patch_sizes=[7, 3],
            layerwise_strides=[4, 2],
            hidden_dims=[8, 16],
            image_shape=(SIDE, SIDE, 3),
        ),
        {},
    ),
    "vitdet": (
        lambda m: m.ViTDetBackbone(
            hidden_size=16,
            num_layers=2,
            intermediate_dim=32,
            num_heads=2,
            global_attention_layer_indices=[1],
            image_shape=(SIDE, SIDE, 3),
            patch_size=8,
            num_output_channels=8,
            window_size=2,
        ),
        {},
    ),
    "resnet": (
        lambda m: m.ResNetBackbone(
            input_conv_filters=[64],
            input_conv_kernel_sizes=[3],
            stackwise_num_filters=[64, 16],
            stackwise_num_blocks=[1, 1],
            stackwise_num_strides=[1, 2],
            block_type="basic_block",
            image_shape=(SIDE, SIDE, 3),
        ),
        {},
    ),
    "vgg": (
        lambda m: m.VGGBackbone(
            stackwise_num_repeats=[1, 1], stackwise_num_filters=[8, 16], image_shape=(SIDE, SIDE, 3)
        ),
        {},
    ),
    "densenet": (
        lambda m: m.DenseNetBackbone(stackwise_num_repeats=[1, 1], growth_rate=8, image_shape=(SIDE, SIDE, 3)),
        {},
    ),
    "cspnet": (
        lambda m: m.CSPNetBackbone(
            stem_filters=16,
            stem_kernel_size=3,
            stem_strides=2,
            stackwise_depth=[1, 1],
            stackwise_strides=[2, 2],
            stackwise_num_filters=[32, 64],
            block_type="bottleneck_block",
            stage_type="dark",
            image_shape=(SIDE, SIDE, 3),
        ),
        {},
    ),
}


def _no(*keys):
    return {k: v for k, v in TRANSFORMER.items() if k not in keys}


def _cell(fn):
    from surgery import SurgeryError, one_line

    try:
        return fn()
    except SurgeryError as e:
        return e.message[:110]
    except Exception as e:  # noqa: BLE001 (the table reports every failure and goes on)
        return f"{type(e).__name__}: {one_line(e, 110)}"


def _spec(folder, extra, *steps, **outputs):
    return {
        "surgery": 1,
        "name": "bench",
        "seed": 0,
        "steps": [{"op": "backbone", "name": "keras_hub", "preset": str(folder), **extra}, *steps],
        "outputs": outputs,
    }


def _own_output(model, x):
    return np.asarray(model({next(iter(model.input)): x} if isinstance(model.input, dict) else x))


def _middle_cut(model) -> str | None:
    """The last layer before the middle after which the graph has one tensor (a place slice can cut)."""
    from surgery import cut_map

    cuts = cut_map(model)
    points = [i for i in range(1, len(model.layers) // 2 + 2) if cuts.is_cut(i)]
    return model.layers[max(points)].name if points else None


def run_family(family: str, tmp: Path) -> list:
    import keras
    import keras_hub

    import surgery

    build, extra = FAMILIES[family]
    keras.utils.set_random_seed(5)
    started = time.perf_counter()
    folder = tmp / family
    build(keras_hub.models).save_to_preset(str(folder))
    own = keras_hub.models.Backbone.from_preset(str(folder))
    if extra.get("part"):
        own = own.vision_encoder
    x = np.random.default_rng(0).uniform(0, 1, (2, SIDE, SIDE, 3)).astype("float32")
    row = [family]

    model = None

    def built():
        nonlocal model
        model = surgery.build(_spec(folder, extra))
        diff = float(np.abs(np.asarray(model(x)) - _own_output(own, x)).max())
        return f"ok, {len(model.layers)} layers, diff {diff:.1e}"

    row.append(_cell(built))
    if model is None:
        return row + ["-"] * 5 + [f"{time.perf_counter() - started:.1f}"]
    cut = _middle_cut(model)
    if cut is None:
        # Then the other checks run on the whole model, frozen up to its middle layer.
        cut, cut_step = model.layers[len(model.layers) // 2].name, {"op": "freeze", "layers": ":1"}
        row.append("no layer after which one tensor carries everything (a side input feeds every block)")
    else:
        cut_step = {"op": "slice", "to": cut}
        row.append(_cell(lambda: f"ok at {cut}" if surgery.build(_spec(folder, extra, cut_step)) else ""))

    def round_trip():
        path = tmp / f"{family}.keras"
        applied = surgery.apply(_spec(folder, extra, cut_step, {"op": "freeze", "to": cut}), output=str(path))
        loaded = keras.saving.load_model(str(path), safe_mode=True)
        diff = float(np.abs(np.asarray(loaded(x)) - np.asarray(applied.model(x))).max())
        frozen = sum(not layer.trainable for layer in applied.model.layers)
        return f"ok, {frozen} frozen, diff {diff:.1e}"

    row.append(_cell(round_trip))

    def onnx():
        applied = surgery.apply(
            _spec(folder, extra, cut_step),
            output=str(tmp / f"{family}_for_onnx.keras"),
            exports={"onnx": str(tmp / f"{family}.onnx")},
        )
        report = applied.reports.get("onnx") or ""
        return "ok, " + report.split("max abs diff vs Keras ")[1].split(" ")[0] if "max abs diff" in report else report

    row.append(_cell(onnx))

    def lora():
        # The default (every attention's query and value); a CNN has none, so its Conv2D layers.
        has_conv = any(type(layer).__name__ == "Conv2D" for layer in model.layers)
        step = {"op": "lora", "rank": 2, **({"types": ["Conv2D"]} if has_conv else {})}
        adapted = surgery.build(_spec(folder, extra, step))
        n = sum(getattr(layer, "lora_enabled", False) for layer in adapted._flatten_layers())
        return f"ok, {n} layers" + (" (Conv2D)" if has_conv else "")

    row.append(_cell(lora))

    def prune():
        model = surgery.build(_spec(folder, extra, {"op": "prune", "ratio": 0.25}))
        return f"ok, {model.count_params():,} params left"

    row.append(_cell(prune))
    row.append(f"{time.perf_counter() - started:.1f}")
    keras.backend.clear_session()
    return row


def main(argv: list[str]) -> None:
    from _measure import table  # bench's helper, beside this file (on sys.path as the script's folder)

    families = argv or list(FAMILIES)
    unknown = [f for f in families if f not in FAMILIES]
    if unknown:
        raise SystemExit(f"unknown families {unknown}; known: {', '.join(FAMILIES)}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for family in families:
            rows.append(run_family(family, Path(tmp)))
            print(" | ".join(rows[-1]), file=sys.stderr)
    header = ["family", "built = KerasHub's", "cut", "freeze + .keras round trip", "ONNX parity", "LoRA", "prune", "s"]
    print(table(header, rows))


if __name__ == "__main__":
    main(sys.argv[1:])
