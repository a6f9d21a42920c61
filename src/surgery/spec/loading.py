"""Reading and validating a spec: everything that can be known without TensorFlow."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jsonschema.exceptions import ValidationError, best_match

from ..errors import OpError, SpecError, did_you_mean
from ..io.files import StrictJSONError, read_bounded, strict_json
from ..json_values import plain
from ..plugins.registry import STEP_KEYS, Registry, SpecValidator
from .schema import SPEC_VERSION, core_schema

MAX_SPEC_BYTES = 1 << 20  # a spec is a page of JSON; anything this big is a mistake


@dataclass
class Spec:
    """A validated spec. ``file`` names it in messages; paths resolve against ``base``."""

    data: dict
    file: str
    base: Path
    steps: list = field(init=False)
    # The files the spec's path fields name (weights, a source model, data): what it may read, and what no
    # output of a command that reads it may overwrite.
    inputs: list = field(init=False, default_factory=list)

    def __post_init__(self):
        self.steps = self.data["steps"]

    @property
    def name(self) -> str:
        if "name" in self.data:
            return self.data["name"]
        stem = Path(self.file).stem if self.file != "<dict>" else "model"
        return stem or "model"

    @property
    def seed(self) -> int:
        return self.data.get("seed", 0)

    @property
    def outputs(self) -> dict:
        return self.data.get("outputs", {})

    def resolve(self, path: str) -> Path:
        p = Path(os.path.expanduser(path))
        return Path(os.path.normpath(p if p.is_absolute() else self.base / p))

    def input_file(self, path: str) -> Path:
        """A path field's file, resolved against the spec's folder and recorded as one of its inputs."""
        resolved = self.resolve(path)
        if resolved not in self.inputs:
            self.inputs.append(resolved)
        return resolved

    def files_read(self) -> list:
        """The spec's own file and every file its path fields name: what no output may write over."""
        return ([self.file] if self.file != "<dict>" else []) + list(self.inputs)

    def output_file(self, fmt: str) -> Path:
        """Where ``outputs.<fmt>`` goes: inside the spec's folder (``contained_output`` checked it)."""
        return Path(os.path.normpath(self.base / _output_path(self.outputs[fmt])))

    def output_options(self, fmt: str) -> dict:
        """``outputs.<fmt>``'s quantization as ``surgery export`` takes it, data paths resolved against the
        spec's folder (and recorded as its inputs); {} for a plain path."""
        value = self.outputs[fmt]
        if isinstance(value, str):
            return {}
        paths = {k: str(self.input_file(v)) for k, v in value.items() if k in ("calibration", "eval")}
        return {**{k: v for k, v in value.items() if k != "path"}, **paths}


def _output_path(value: str | dict) -> str:
    return value if isinstance(value, str) else value["path"]


def contained_output(base: Path, value: str) -> str | None:
    """Why an output path a spec names may not be written, or None: a spec writes only inside its folder.

    The spec is someone else's file; only paths typed on the command line (-o, --onnx) may go anywhere.
    """
    if value.startswith("~") or os.path.isabs(value) or "\\" in value or "\0" in value:
        return "must be a path relative to the spec's folder"
    target = Path(os.path.normpath(base / value))
    if target == base or base not in target.parents:
        return "leaves the spec's folder; outputs named in a spec stay inside it (use -o to write elsewhere)"
    # A symbolic link on the way must not lead out either.
    parent = target.parent
    while not parent.exists() and parent != base:
        parent = parent.parent
    real_base = Path(os.path.realpath(base))
    real = Path(os.path.realpath(parent))
    if real != real_base and real_base not in real.parents:
        return "leads out of the spec's folder through a symbolic link"
    return None


@dataclass
class StepContext:
    """What an op's ``check`` and ``apply`` get besides their params."""

    spec: Spec
    index: int
    op: str
    registry: Registry

    @property
    def where(self) -> str:
        return f"steps[{self.index}] ({self.op})"

    @property
    def seed(self) -> int:
        """A per-step seed, so a step's new weights do not depend on other steps."""
        return (self.spec.seed * 1_000_003 + self.index) % (2**31 - 1)

    def path(self, value: str) -> Path:
        """A file named by one of the op's path fields (recorded as an input of the spec)."""
        return self.spec.input_file(value)

    def source_backbone(self):
        """The registered backbone the spec's first step builds (its source op says which), or None."""
        first = self.spec.steps[0]
        info = self.registry.ops.get(first.get("op"))
        if info is None or info.backbone is None:
            return None
        name = info.backbone(op_params(first))
        return self.registry.backbones.get(name) if isinstance(name, str) else None


def read_spec_file(path: str | os.PathLike) -> tuple[Any, str]:
    """The parsed spec; every way a file can fail to be a spec is one error line naming it."""
    name = str(path)
    if Path(path).is_dir():
        raise SpecError("is a directory, not a spec file (expected a .json file)", file=name)
    raw = read_bounded(path, MAX_SPEC_BYTES, what="spec", error=SpecError)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SpecError(
            f"not UTF-8 text (byte 0x{raw[e.start]:02x} at offset {e.start}); save the spec as UTF-8", file=name
        ) from None
    if not text.strip():
        raise SpecError('file is empty; a spec is a JSON object with "surgery": 1 and "steps"', file=name)
    try:
        return strict_json(text), name
    except json.JSONDecodeError as e:
        raise SpecError(f"not valid JSON: {e.msg} at line {e.lineno} column {e.colno}", file=name) from None
    except StrictJSONError as e:
        raise SpecError(f"not a valid spec: {e}", file=name) from None
    except RecursionError:
        raise SpecError("JSON nested too deeply to be a spec", file=name) from None


def json_path(parts) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def describe(err: ValidationError) -> str:
    """One readable sentence for a schema error."""
    v, inst, sch = err.validator, err.instance, err.validator_value
    if v == "additionalProperties":
        allowed = sorted(set(err.schema.get("properties", {})) - {"op"})  # "op" is there already
        extra = sorted(set(inst) - set(allowed) - {"op"})
        key = extra[0] if extra else "?"
        return f'unknown key "{key}"' + did_you_mean(key, allowed)
    if v == "required":
        missing = [k for k in sch if k not in inst]
        return f'missing required key "{missing[0]}"' if missing else err.message
    if v == "type":
        want = sch if isinstance(sch, str) else " or ".join(sch)
        return f"expected {want}, got {_got(inst)}"
    if v in ("minimum", "exclusiveMinimum"):
        return f"{_short(inst)} is too small; the minimum is {sch}" + (
            " (exclusive)" if v == "exclusiveMinimum" else ""
        )
    if v == "maximum":
        return f"{_short(inst)} is too large; the maximum is {sch}"
    if v == "const":
        return f"expected {json.dumps(sch)}, got {_short(inst)}"
    if v == "enum":
        return f"{_short(inst)} is not one of " + ", ".join(json.dumps(x) for x in sch)
    if v in ("minItems", "maxItems"):
        n = len(inst)
        if v == "minItems" and n == 0:
            return "must not be empty"
        return f"has {n} item{'s' * (n != 1)}; expected {'at least' if v == 'minItems' else 'at most'} {sch}"
    if v == "minLength":
        return "must not be empty"
    if v == "pattern":
        hint = err.schema.get("description")
        return f"{_short(inst)} is not valid" + (f" ({hint})" if hint else f"; it must match {sch}")
    if v in ("anyOf", "oneOf"):
        if all(set(s) == {"required"} for s in sch):
            keys = [k for s in sch for k in s["required"]]
            return "give at least one of " + ", ".join(f'"{k}"' for k in keys)
        options = [_alternative(s) for s in sch]
        return f"expected {', '.join(options[:-1])} or {options[-1]}, got {_got(inst)}"
    return err.message


def _alternative(s: dict) -> str:
    if "const" in s:
        return json.dumps(s["const"])
    if s.get("type") == "null":
        return "null"
    if "enum" in s:
        return "one of " + ", ".join(json.dumps(x) for x in s["enum"])
    return s.get("description") or ("a " + s.get("type", "value"))


def _json_type(x) -> str:
    return {
        dict: "object",
        list: "array",
        str: "string",
        bool: "boolean",
        type(None): "null",
        int: "integer",
        float: "number",
    }.get(type(x), type(x).__name__)


def _got(x) -> str:
    """The value a schema refused, with its JSON type unless the value says it (null)."""
    return "null" if x is None else f"{_json_type(x)} {_short(x)}"


def _short(x) -> str:
    text = json.dumps(x)
    return text if len(text) <= 40 else text[:37] + "..."


def schema_error(schema: dict, instance, prefix=()) -> str | None:
    """The most relevant schema error as one sentence with its JSON path, or None."""
    err = best_match(SpecValidator(schema).iter_errors(instance))
    if err is None:
        return None
    parts = list(prefix) + list(err.absolute_path)
    return f"{json_path(parts)}: {describe(err)}" if parts else describe(err)


def validate(
    data: Any, registry: Registry, *, file: str = "<dict>", base: Path | None = None, broken_plugins: list | None = None
) -> Spec:
    """Check a parsed spec against the schema and the installed ops; no TensorFlow."""
    if not isinstance(data, dict):
        raise SpecError(f"the top level must be a JSON object, got {_json_type(data)}", file=file)
    if "surgery" in data and data["surgery"] != SPEC_VERSION:
        raise SpecError(
            f"surgery: format version {_short(data['surgery'])} is not supported; "
            f"this surgery reads version {SPEC_VERSION}",
            file=file,
        )
    steps = data.get("steps") or []
    # The step entries are checked one by one below, with their op's own schema,
    # so that errors name the step and op rather than "one of N schemas".
    msg = schema_error(core_schema(registry), data)
    if msg:
        raise SpecError(msg, file=file)
    spec = Spec(data, file, base if base is not None else Path.cwd())
    _check_outputs(spec, registry)
    named: dict[str, int] = {}
    for i, step in enumerate(steps):
        _check_step(spec, i, step, registry, broken_plugins, named)
    return spec


def _check_outputs(spec: Spec, registry: Registry) -> None:
    """Outputs a spec names stay in its folder and carry their exporter's suffix."""
    for fmt, value in spec.outputs.items():
        suffix = registry.exporters[fmt].suffix
        path = _output_path(value)
        why = contained_output(spec.base, path)
        if why is None and not path.endswith(suffix):
            why = f"must end in {suffix}, the {fmt} exporter's suffix"
        if why:
            raise SpecError(f'"{path}" {why}', file=spec.file, where=f"outputs.{fmt}")
        spec.output_options(fmt)  # records the data it reads as the spec's inputs


def _check_step(spec: Spec, i: int, step: dict, registry: Registry, broken_plugins, named: dict) -> None:
    """One step: an installed op (or the disabled plugin that would give it), in its place, with valid
    params and a name ("as") of its own; ``named`` collects the names."""
    file, op = spec.file, step["op"]
    where = f"steps[{i}] ({op})"
    if op not in registry.ops:
        provider = next((r for r in broken_plugins or () if ("op", op) in r.attempted), None)
        if provider is not None:
            raise SpecError(
                f'op "{op}" comes from plugin {provider.name!r}, which is disabled: {provider.error}',
                file=file,
                where=f"steps[{i}]",
            )
        raise SpecError(f'unknown op "{op}"' + did_you_mean(op, registry.ops), file=file, where=f"steps[{i}]")
    info = registry.ops[op]
    if i == 0 and not info.source:
        starts = sorted(n for n, o in registry.ops.items() if o.source)
        raise SpecError(f'the first step must start a model ({", ".join(starts)}), not "{op}"', file=file, where=where)
    if i > 0 and info.source:
        raise SpecError("only the first step may start a model", file=file, where=where)
    msg = schema_error(registry.step_schema(op), step)
    if msg:
        raise SpecError(msg, file=file, where=where)
    if "as" in step:
        if step["as"] in named:
            raise SpecError(
                f'as: "{step["as"]}" already names the output of steps[{named[step["as"]]}]', file=file, where=where
            )
        named[step["as"]] = i
    if info.check is not None:
        try:
            info.check(op_params(step), StepContext(spec, i, op, registry))
        except OpError as e:
            raise e.located(file=file, where=where) from None


def op_params(step: dict) -> dict:
    """What an op's check and apply get: the step without the keys the host handles."""
    return {k: v for k, v in step.items() if k != "op" and k not in STEP_KEYS}


NO_WEIGHTS = ("none", "null")


class WeightsNotApplicable(SpecError):
    """``--weights`` given for a spec whose source step takes no weights."""


def with_weights(data: Any, registry: Registry, weights: str | None, file: str) -> Any:
    """The spec with its source step's weights replaced, as the source op says (``--weights``, random init).

    ``weights`` is "imagenet", "none" (random init) or a file path typed on the command line (resolved
    against the working folder, as a user typing it expects). The host knows no op by name: the source op
    registered what a weights override means for its step.
    """
    if weights is None or not isinstance(data, dict) or not data.get("steps"):
        return data
    if not weights.strip():
        raise SpecError('is empty; give "imagenet", "none", or the path of a weights file', where="--weights")
    first = data["steps"][0]
    if not isinstance(first, dict) or first.get("op") not in registry.ops:
        return data  # validate() says what is wrong with the step
    info = registry.ops[first["op"]]
    if not info.source:
        starts = ", ".join(sorted(n for n, o in registry.ops.items() if o.source))
        raise SpecError(
            f'--weights applies to a first step that starts a model ({starts}), not "{first["op"]}"',
            file=file,
            where="steps[0]",
        )
    value = (
        None if weights.lower() in NO_WEIGHTS else weights if weights == "imagenet" else str(Path(weights).resolve())
    )
    params = {k: v for k, v in first.items() if k != "op" and k not in STEP_KEYS}
    try:
        changed = info.weights(params, value, registry) if info.weights is not None else None
    except OpError as e:
        raise e.located(file=file, where=f"steps[0] ({first['op']})") from None
    if changed is None:
        raise WeightsNotApplicable(
            f"--weights does not apply: {first['op']} {first.get('name', '')}".rstrip() + " takes no weights",
            file=file,
            where=f"steps[0] ({first['op']})",
        )
    keys = {k: v for k, v in first.items() if k == "op" or k in STEP_KEYS}
    return {**data, "steps": [{**keys, **changed}, *data["steps"][1:]]}


def load_spec(source, registry: Registry, broken_plugins: list | None = None, *, weights: str | None = None) -> Spec:
    """A path or an already-parsed dict -> validated Spec, with ``weights`` applied to its source step."""
    if isinstance(source, dict):
        source = plain(source, "", "<dict>")
        return validate(with_weights(source, registry, weights, "<dict>"), registry, broken_plugins=broken_plugins)
    if not isinstance(source, (str, os.PathLike)):
        raise SpecError(f"a spec is the path of a .json file or a dict, not a {type(source).__name__}", where="spec")
    data, name = read_spec_file(source)
    return validate(
        with_weights(data, registry, weights, name),
        registry,
        file=name,
        base=Path(source).resolve().parent,
        broken_plugins=broken_plugins,
    )
