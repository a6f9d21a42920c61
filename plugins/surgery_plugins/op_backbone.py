"""The ``backbone`` op: the first step, which starts the model from a registered backbone."""

from __future__ import annotations

from typing import Any

from surgery import (
    OpError,
    RegisterOp,
    State,
    StepContext,
    SurgeryError,
    check_regular,
    hookimpl,
    schema_error,
    seeded,
    shown,
)

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"name": {"type": "string", "description": "a registered backbone (surgery backbones)"}},
    "required": ["name"],
    # Each backbone declares its own options; check() validates them against that.
    "additionalProperties": True,
}


def _is_folder(info, key, value) -> bool:
    """An option declared ``format: folder-or-name`` whose value is a folder: written with a slash
    (``./my_preset``), where a name (``dinov2_small``) or a handle (``hf://org/model``) has none or ``://``."""
    return (
        info.options.get(key, {}).get("format") == "folder-or-name"
        and isinstance(value, str)
        and ("/" in value or "\\" in value)
        and "://" not in value
    )


def _weights_words(info) -> set[str]:
    """The ``weights`` values that name weights rather than a file: "imagenet", "file" and the backbone's own."""
    declared = info.options.get("weights", {})
    return {"imagenet", "file"} | {c["const"] for c in declared.get("anyOf", []) if isinstance(c.get("const"), str)}


def _path_keys(info, params) -> list[str]:
    """The options whose values are paths: a weights file, an option declared ``format: path``, or a folder."""
    return [
        k
        for k, v in params.items()
        if isinstance(v, str)
        and k != "name"
        and (
            (k == "weights" and v not in _weights_words(info))
            or info.options.get(k, {}).get("format") == "path"
            or _is_folder(info, k, v)
        )
    ]


def _options(info, params, ctx) -> dict:
    """The backbone's options, with paths resolved against the spec's folder."""
    options = {k: v for k, v in params.items() if k != "name"}
    for key in _path_keys(info, params):
        options[key] = str(ctx.path(options[key]))
    return options


def _weights(info, params):
    """The weights asked for: the spec's, else the backbone's declared default (Keras' "imagenet")."""
    return params.get("weights", info.options.get("weights", {}).get("default", "imagenet"))


def check(params: dict[str, Any], ctx: StepContext) -> None:
    info = ctx.registry.backbone(params["name"])
    msg = schema_error(info.options_schema(), {"op": "backbone", **params, "name": info.name})
    if msg:
        raise OpError(msg)
    for key in _path_keys(info, params):
        path = ctx.path(params[key])
        folder = _is_folder(info, key, params[key])
        if not path.exists():
            what = "folder" if folder else "file"
            raise OpError(f'{key}: {what} "{params[key]}" does not exist (looked for {shown(path)})')
        if folder:
            if not path.is_dir():
                raise OpError(f'{key}: "{params[key]}" is a file, not a folder')
            continue
        if path.is_dir():
            raise OpError(f'{key}: "{params[key]}" is a directory, not a file')
        try:
            check_regular(path)
        except SurgeryError as e:
            raise OpError(f'{key}: "{params[key]}" {e.message}') from None
    if info.check is not None:
        info.check(_options(info, params, ctx))
    shape = params.get("input_shape")
    if shape and info.min_input_size:
        if min(shape[0], shape[1]) < info.min_input_size:
            raise OpError(
                f"input_shape {shape}: {info.name} needs at least {info.min_input_size}x{info.min_input_size} pixels"
            )
    if shape and _weights(info, params) == "imagenet" and info.input_shape:
        if shape[2] != 3:
            raise OpError(
                f"input_shape {shape}: ImageNet weights need 3 channels; "
                "build it with 3 and add an adapt_input step (the first kernel is adapted), "
                'or use "weights": null'
            )
        if params.get("include_top", True) and tuple(shape) != info.input_shape:
            raise OpError(
                f"input_shape {shape}: with include_top and ImageNet weights {info.name} takes only "
                f'{list(info.input_shape)}; set "include_top": false for another size'
            )


def apply(state: State | None, params: dict[str, Any], ctx: StepContext) -> State:
    info = ctx.registry.backbone(params["name"])
    seeded(ctx.seed)  # so that a random-init backbone is the same on every build
    model = info.build(**_options(info, params, ctx))
    weights = _weights(info, params)
    files = ", ".join(params[k] for k in _path_keys(info, params))
    if "weights" not in info.options or weights == "file":
        source = f"from {files}" if files else "weights as the backbone builds them"
    elif weights is None:
        source = "random init"
    elif weights == "imagenet":
        source = "ImageNet weights"
    else:
        source = f"{weights} weights" if weights in _weights_words(info) else f"weights {weights}"
    note = f"{info.name}: {len(model.layers)} layers, {model.count_params():,} params ({source})"
    return State(model=model, backbone=info.name, preprocess=info.preprocess, notes=(note,))


def with_weights(params, weights, registry):
    """``--weights``: the backbone's own ``weights`` option; None if it has none."""
    info = registry.backbone(params["name"])
    return {**params, "weights": weights} if "weights" in info.options else None


def editor_schema(registry) -> dict:
    """For editors: the backbone names as an enum, and each backbone's options (with their descriptions)."""
    schema = {**SCHEMA, "properties": dict(SCHEMA["properties"])}
    if registry.backbones:
        schema["properties"]["name"] = {
            "enum": sorted(registry.backbones),
            "description": "a registered backbone (surgery backbones)",
        }
        schema["allOf"] = [
            {"if": {"properties": {"name": {"const": b}}, "required": ["name"]}, "then": info.options_schema()}
            for b, info in sorted(registry.backbones.items())
        ]
    return schema


@hookimpl
def surgery_register_ops(register: RegisterOp) -> None:
    register(
        "backbone",
        SCHEMA,
        apply,
        check=check,
        source=True,
        weights=with_weights,
        backbone=lambda params: params.get("name"),
        editor_schema=editor_schema,
        description="Start from a registered backbone (keras.applications or a plugin's)",
        examples=[{"name": "vgg16", "weights": None, "include_top": False, "input_shape": [64, 64, 3]}],
    )
