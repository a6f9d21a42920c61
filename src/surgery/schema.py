"""The spec's JSON Schema: the core document plus one sub-schema per installed op."""

from __future__ import annotations

from .registry import Registry, with_op
from .train_schema import TRAIN_SCHEMA

SPEC_VERSION = 1

CORE_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "surgery spec",
    "type": "object",
    "properties": {
        "$schema": {"type": "string", "description": "for editors; ignored"},
        "surgery": {"const": SPEC_VERSION, "description": "spec format version"},
        "name": {
            "type": "string",
            "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]*$",
            "maxLength": 128,
            "description": "letters, digits, '_', '.' and '-', starting with a letter or digit",
        },
        "description": {"type": "string"},
        "seed": {"type": "integer", "minimum": 0, "maximum": 2**31 - 1},
        "steps": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/step"}},
        "outputs": {
            "type": "object",
            "properties": {},
            "additionalProperties": False,
        },
        "train": TRAIN_SCHEMA,
    },
    "required": ["surgery", "steps"],
    "additionalProperties": False,
    "$defs": {
        "step": {
            "type": "object",
            "properties": {"op": {"type": "string"}},
            "required": ["op"],
        }
    },
}


def core_schema(registry: Registry) -> dict:
    """The top level with ``outputs`` keys for each installed exporter; steps stay open."""
    schema = _copy(CORE_SCHEMA)
    schema["properties"]["outputs"]["properties"] = {
        fmt: {"type": "string", "minLength": 1, "description": f"path of the {fmt} output ({e.suffix})"}
        for fmt, e in sorted(registry.exporters.items())
    }
    return schema


def full_schema(registry: Registry) -> dict:
    """The whole spec schema for editors: each step is checked by the schema of its op."""
    schema = core_schema(registry)
    names = sorted(registry.ops)
    step = {
        "type": "object",
        "properties": {"op": {"enum": names}},
        "required": ["op"],
        "allOf": [
            {"if": {"properties": {"op": {"const": n}}, "required": ["op"]}, "then": _op_step(registry, n)}
            for n in names
        ],
    }
    schema["$defs"]["step"] = step
    return schema


def _op_step(registry: Registry, op: str) -> dict:
    info = registry.ops[op]
    sub = with_op(op, info.editor_schema(registry)) if info.editor_schema else registry.step_schema(op)
    return {"description": info.description, **sub} if info.description else sub


def _copy(obj):
    if isinstance(obj, dict):
        return {k: _copy(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_copy(v) for v in obj]
    return obj
