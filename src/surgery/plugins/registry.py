"""What the plugins registered, and the checks every registration goes through.

Registration is transactional per plugin: a plugin's entries are collected in a
``Registration`` and only committed to the ``Registry`` when all of them are
valid, so a plugin is either wholly in or wholly out (and reported).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import SchemaError, ValidationError

from ..errors import PluginError
from .application_options import APPLICATION_OPTIONS

NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")


def _ecma_pattern(validator, pattern, instance, schema):
    """``pattern`` as JSON Schema means it (ECMA-262): ``$`` is the end of the string.

    Python's ``$`` also matches before a final newline, so "name\\n" would pass ``^[a-z]+$``.
    """
    if not validator.is_type(instance, "string"):
        return
    python = pattern[:-1] + r"\Z" if pattern.endswith("$") and not pattern.endswith("\\$") else pattern
    if not re.search(python, instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


# JSON Schema counts 1.0 as an integer; Keras does not (a seed of 0.0, a shape of [32.0, 32.0, 3.0]
# fail deep inside it). So specs are validated with integers meaning Python ints.
SpecValidator = validators.extend(
    Draft202012Validator,
    validators={"pattern": _ecma_pattern},
    type_checker=Draft202012Validator.TYPE_CHECKER.redefine(
        "integer", lambda _, x: isinstance(x, int) and not isinstance(x, bool)
    ),
)


@dataclass(frozen=True)
class OpInfo:
    name: str
    schema: dict
    apply: Callable
    check: Callable | None
    description: str
    examples: tuple
    source: bool
    plugin: str
    # A source op's answers for the host, which knows no op by name: the step with ``--weights`` applied
    # (None: random init, "imagenet", a file path), and the registered backbone the step builds.
    weights: Callable | None = None
    backbone: Callable | None = None
    # The op's params schema as an editor should see it (richer than the one that validates).
    editor_schema: Callable | None = None


@dataclass(frozen=True)
class BackboneInfo:
    name: str
    build: Callable
    options: dict
    preprocess: Any
    input_shape: tuple | None
    min_input_size: int | None
    description: str
    plugin: str
    check: Callable | None = None  # check(options): what can be known without TensorFlow; raises OpError
    presets: Callable | None = None  # presets(): the named configurations it builds, for `backbones --presets`

    def options_schema(self) -> dict:
        """The schema of a backbone step with this backbone's options; its default input shape shown as the default."""
        options = dict(self.options)
        shape = options.get("input_shape")
        if self.input_shape and isinstance(shape, dict) and "default" not in shape:
            options["input_shape"] = {**shape, "default": list(self.input_shape)}
        return {
            "type": "object",
            "properties": {"op": {"const": "backbone"}, "name": {"type": "string"}, **options},
            "required": ["op", "name"] + [k for k, v in options.items() if v.get("x-required")],
            "additionalProperties": False,
        }


@dataclass(frozen=True)
class ExporterInfo:
    format: str
    export: Callable
    suffix: str
    description: str
    plugin: str


@dataclass(frozen=True)
class ChannelRuleInfo:
    layer: str  # the layer class it is for, "module.ClassName" (as type(layer).__module__ and __qualname__)
    rule: Callable  # rule(layer, site) -> surgery.ChannelRule
    description: str
    plugin: str


@dataclass(frozen=True)
class Kind:
    """One kind of thing plugins register: how messages name it, the hook that registers it, the
    ``register_*`` method of ``Registration`` the hook gets, the table (``Registration``, ``Registry`` and
    ``PluginRecord`` attribute) that holds it, and the attribute of an entry that names it."""

    name: str
    hook: str
    register: str
    table: str
    key: str


# The one list of kinds: loading, clashes, the plugins command and the conformance helper read it.
KINDS = (
    Kind("op", "surgery_register_ops", "register_op", "ops", "name"),
    Kind("backbone", "surgery_register_backbones", "register_backbone", "backbones", "name"),
    Kind("exporter", "surgery_register_exporters", "register_exporter", "exporters", "format"),
    Kind("channel rule", "surgery_register_channel_rules", "register_channel_rule", "channel_rules", "layer"),
)
LAYER_CLASS_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$")


def _check_name(kind: str, name: Any) -> None:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise PluginError(f"{kind} name {name!r} is not valid; use lowercase letters, digits and _")


def _check_schema(what: str, schema: Any) -> None:
    if not isinstance(schema, dict):
        raise PluginError(f"{what}: schema must be a JSON object (dict), got {type(schema).__name__}")
    try:
        key = json.dumps(schema, sort_keys=True)
    except (TypeError, ValueError):
        raise PluginError(f"{what}: schema is not JSON data (it must serialise with json.dumps)") from None
    error = _metaschema_error(key)
    if error:
        raise PluginError(f"{what}: {error}")


@functools.lru_cache(maxsize=256)
def _metaschema_error(schema_json: str) -> str | None:
    """Checking against the metaschema is slow, and the 40 applications share a handful of schemas."""
    try:
        Draft202012Validator.check_schema(json.loads(schema_json))
    except SchemaError as e:
        path = "/".join(str(p) for p in e.path) or "(root)"
        return f"invalid JSON Schema at {path}: {e.message}"
    return None


@dataclass
class Registration:
    """The entries one plugin registers, checked as they come in."""

    plugin: str
    ops: list = field(default_factory=list)
    backbones: list = field(default_factory=list)
    exporters: list = field(default_factory=list)
    channel_rules: list = field(default_factory=list)
    # (kind, name) of every register call, valid or not: lets a message about an
    # unknown op name the disabled plugin that tried to provide it.
    attempted: list = field(default_factory=list)

    def register_op(
        self,
        name,
        schema,
        apply,
        *,
        check=None,
        description="",
        examples=(),
        source=False,
        weights=None,
        backbone=None,
        editor_schema=None,
    ):
        self.attempted.append(("op", name))
        _check_name("op", name)
        _check_schema(f"op {name!r}", schema)
        if schema.get("type", "object") != "object":
            raise PluginError(f"op {name!r}: schema must describe an object")
        if "op" in schema.get("properties", {}):
            raise PluginError(f"op {name!r}: schema must not declare 'op' (the host adds it)")
        if not callable(apply) or any(
            f is not None and not callable(f) for f in (check, weights, backbone, editor_schema)
        ):
            raise PluginError(f"op {name!r}: apply, check, weights, backbone and editor_schema must be callables")
        if (weights is not None or backbone is not None) and not source:
            raise PluginError(f"op {name!r}: weights and backbone describe a source op; pass source=True")
        validator = SpecValidator(with_op(name, schema))
        for i, example in enumerate(examples):
            if not isinstance(example, dict):
                raise PluginError(f"op {name!r}: example {i} must be a dict of params, got {type(example).__name__}")
            err = next(iter(validator.iter_errors({"op": name, **example})), None)
            if err is not None:
                raise PluginError(f"op {name!r}: example {i} does not match its schema: {err.message}")
        self.ops.append(
            OpInfo(
                name,
                schema,
                apply,
                check,
                description,
                tuple(examples),
                bool(source),
                self.plugin,
                weights,
                backbone,
                editor_schema,
            )
        )

    def register_backbone(
        self,
        name,
        build,
        *,
        options=None,
        preprocess=None,
        input_shape=None,
        min_input_size=None,
        description="",
        check=None,
        presets=None,
    ):
        self.attempted.append(("backbone", name))
        _check_name("backbone", name)
        if not callable(build) or any(f is not None and not callable(f) for f in (check, presets)):
            raise PluginError(f"backbone {name!r}: build, check and presets must be callables")
        options = APPLICATION_OPTIONS if options is None else options
        _check_schema(f"backbone {name!r} options", {"type": "object", "properties": options})
        if input_shape is not None and not _is_shape(input_shape):
            raise PluginError(
                f"backbone {name!r}: input_shape must be a list of positive integers, got {input_shape!r}"
            )
        self.backbones.append(
            BackboneInfo(
                name,
                build,
                options,
                preprocess,
                tuple(input_shape) if input_shape else None,
                min_input_size,
                description,
                self.plugin,
                check,
                presets,
            )
        )

    def register_exporter(self, format, export, *, suffix, description=""):
        self.attempted.append(("exporter", format))
        _check_name("exporter", format)
        if not callable(export):
            raise PluginError(f"exporter {format!r}: export must be a callable")
        if not isinstance(suffix, str) or not suffix.startswith("."):
            raise PluginError(f'exporter {format!r}: suffix must be a file suffix such as ".onnx", got {suffix!r}')
        self.exporters.append(ExporterInfo(format, export, suffix, description, self.plugin))

    def register_channel_rule(self, layer, rule, *, description=""):
        self.attempted.append(("channel rule", layer))
        if not isinstance(layer, str) or not LAYER_CLASS_RE.match(layer):
            raise PluginError(
                f"channel rule for {layer!r}: name the layer class by its module and class name, "
                'as "package.module.ClassName" (no class is imported to register it)'
            )
        if layer.startswith("keras."):
            raise PluginError(f"channel rule for {layer!r}: Keras' own layers have surgery's rules")
        if not callable(rule):
            raise PluginError(f"channel rule for {layer!r}: rule must be a callable")
        self.channel_rules.append(ChannelRuleInfo(layer, rule, description, self.plugin))


def _is_shape(shape) -> bool:
    return (
        isinstance(shape, (list, tuple))
        and len(shape) > 0
        and all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape)
    )


# Keys every step takes besides its op's params; the host handles them, not the op.
STEP_KEYS = {
    "as": {
        "type": "string",
        "pattern": "^[A-Za-z_][A-Za-z0-9_.-]*$",
        "description": "a name for this step's output tensor, for later steps to refer to",
    },
}


def with_op(name: str, schema: dict) -> dict:
    """The step schema: the op's params plus ``op`` and the host's step keys, no unknown keys."""
    props = {"op": {"const": name}, **STEP_KEYS, **schema.get("properties", {})}
    return {
        **schema,
        "type": "object",
        "properties": props,
        "required": ["op", *schema.get("required", [])],
        "additionalProperties": schema.get("additionalProperties", False),
    }


class Registry:
    """Everything registered by the loaded plugins, by name."""

    def __init__(self):
        self.ops: dict[str, OpInfo] = {}
        self.backbones: dict[str, BackboneInfo] = {}
        self.exporters: dict[str, ExporterInfo] = {}
        self.channel_rules: dict[str, ChannelRuleInfo] = {}

    def clashes(self, reg: Registration) -> str | None:
        for kind in KINDS:
            table, seen = getattr(self, kind.table), set()
            for entry in getattr(reg, kind.table):
                name = getattr(entry, kind.key)
                if name in table:
                    return f"{kind.name} {name!r} is already registered by plugin {table[name].plugin!r}"
                if name in seen:
                    return f"{kind.name} {name!r} is registered twice by this plugin"
                seen.add(name)
        return None

    def commit(self, reg: Registration) -> None:
        for kind in KINDS:
            getattr(self, kind.table).update((getattr(e, kind.key), e) for e in getattr(reg, kind.table))

    def copy(self) -> Registry:
        """A registry with the same entries, whose tables can be changed without changing this one's."""
        other = Registry()
        for kind in KINDS:
            setattr(other, kind.table, dict(getattr(self, kind.table)))
        return other

    def layer_rules(self) -> dict[str, Callable]:
        """ "module.ClassName" -> the rule a plugin declared for that layer class (see the pruning package)."""
        return {name: info.rule for name, info in self.channel_rules.items()}

    def backbone(self, name: str) -> BackboneInfo:
        """A registered backbone by name (any case); an OpError naming the close ones if there is none."""
        from ..errors import OpError, did_you_mean

        info = self.backbones.get(name) or self.backbones.get(name.lower())
        if info is None:
            raise OpError(f'unknown backbone "{name}"' + did_you_mean(name.lower(), self.backbones))
        return info

    def step_schema(self, op: str) -> dict:
        return with_op(op, self.ops[op].schema)
