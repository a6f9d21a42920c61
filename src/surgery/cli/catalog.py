"""``surgery plugins``, ``ops``, ``backbones`` and ``schema``: what is installed; no TensorFlow.

``ops`` and ``backbones`` take glob patterns over the names and ``--json``, as timm's ``list_models`` does.
"""

from __future__ import annotations

import fnmatch
import json

import click

from ..errors import SurgeryError, did_you_mean
from ..plugins.registry import KINDS
from .common import guarded, installed_plugins


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@guarded
def plugins(as_json):
    """List the installed plugins and what each registered."""
    from ..plugins.loading import load_plugins

    loaded = load_plugins()
    for warning in loaded.warnings:
        click.echo(warning, err=True)
    if as_json:
        click.echo(
            json.dumps(
                [
                    {
                        "name": r.name,
                        "distribution": r.dist,
                        "version": r.version,
                        "builtin": r.builtin,
                        "status": "broken" if r.error else "ok",
                        "error": r.error,
                        **{kind.table: getattr(r, kind.table) for kind in KINDS},
                    }
                    for r in loaded.records
                ],
                indent=2,
            )
        )
        return
    for r in loaded.records:
        status = f"BROKEN: {r.error}" if r.error else "ok"
        click.echo(f"{r.name}  [{r.origin}]  {status}")
        for kind in KINDS:
            names = getattr(r, kind.table)
            if names:
                click.echo(f"    {kind.table.replace('_', ' ')}: " + ", ".join(names))


def _table(rows):
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    for r in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())


def _matching(kind: str, entries: dict, patterns: tuple) -> list:
    """The entries whose names match any of the glob patterns (all without one), by name: like timm's list_models."""
    names = sorted(entries)
    if patterns:
        names = [n for n in names if any(fnmatch.fnmatchcase(n, p.lower()) for p in patterns)]
        if not names:
            raise SurgeryError(_no_match(kind, patterns, entries))
    return [entries[n] for n in names]


def _no_match(kind: str, patterns: tuple, entries: dict) -> str:
    shown = " or ".join(f'"{p}"' for p in patterns)
    word = patterns[0].lower()
    if len(patterns) == 1 and not any(c in word for c in "*?["):
        for glob in (f"{word}*", f"*{word}*"):
            hits = fnmatch.filter(sorted(entries), glob)
            if hits:
                more = ", ..." if len(hits) > 3 else ""
                return f'no {kind} matches {shown}; did you mean "{glob}" ({", ".join(hits[:3])}{more})?'
        hint = did_you_mean(word, entries)
        if "did you mean" in hint:
            return f"no {kind} matches {shown}{hint}"
    return f'no {kind} matches {shown}; {len(entries)} are installed (a pattern is a glob such as "mobile*")'


PATTERNS = click.argument("patterns", nargs=-1, metavar="[PATTERN]...")
AS_JSON = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")


@click.command()
@PATTERNS
@AS_JSON
@guarded
def ops(patterns, as_json):
    """List the spec operations and the plugin that provides each; PATTERN filters by name ('*freeze')."""
    found = _matching("op", installed_plugins().registry.ops, patterns)
    if as_json:
        click.echo(
            json.dumps(
                [
                    {
                        "name": o.name,
                        "plugin": o.plugin,
                        "description": o.description,
                        "source": o.source,
                        "params": sorted(o.schema.get("properties", {})),
                        "required": list(o.schema.get("required", [])),
                    }
                    for o in found
                ],
                indent=2,
            )
        )
        return
    _table([("op", "plugin", "description")] + [(o.name, o.plugin, o.description) for o in found])


def _preprocess(b) -> str | None:
    return b.preprocess if isinstance(b.preprocess, str) else ("callable" if b.preprocess else None)


def _presets(registry, patterns: tuple, as_json: bool) -> None:
    """The presets of the backbones that list them (``keras_hub``: KerasHub's vision presets)."""
    rows = {
        row["name"]: {**row, "backbone": b.name}
        for b in registry.backbones.values()
        if b.presets
        for row in b.presets()
    }
    if not rows:
        raise SurgeryError(
            "no installed backbone lists presets; the keras_hub backbone lists KerasHub's once keras-hub is "
            "installed: pip install 'surgery[hub]'"
        )
    found = _matching("preset", rows, patterns)
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    table = [("preset", "backbone", "family", "params", "size", "description")]
    for row in found:
        params = f"{row['params'] / 1e6:.1f}M" if isinstance(row.get("params"), (int, float)) else "-"
        text = row.get("description") or ""
        table.append((row["name"], row["backbone"], row.get("family") or "-", params, str(row.get("image_size") or "-"),
                      text if len(text) <= 70 else text[:67] + "..."))  # fmt: skip
    _table(table)


@click.command()
@PATTERNS
@AS_JSON
@click.option(
    "--presets",
    "show_presets",
    is_flag=True,
    help="List the backbones' presets instead (KerasHub's vision presets for keras_hub); PATTERN filters them "
    "('dinov2*', '*siglip*').",
)
@guarded
def backbones(patterns, as_json, show_presets):
    """List the backbones, their default input shapes and the plugin that provides each; PATTERN filters by
    name ('mobile*', 'efficientnetv2*')."""
    if show_presets:
        _presets(installed_plugins().registry, patterns, as_json)
        return
    found = _matching("backbone", installed_plugins().registry.backbones, patterns)
    if as_json:
        click.echo(
            json.dumps(
                [
                    {
                        "name": b.name,
                        "plugin": b.plugin,
                        "description": b.description,
                        "input_shape": list(b.input_shape) if b.input_shape else None,
                        "min_input_size": b.min_input_size,
                        "preprocess": _preprocess(b),
                        "options": sorted(b.options),
                    }
                    for b in found
                ],
                indent=2,
            )
        )
        return
    rows = [("backbone", "input", "min", "plugin", "preprocess")]
    for b in found:
        shape = "x".join(map(str, b.input_shape)) if b.input_shape else "-"
        rows.append((b.name, shape, str(b.min_input_size or "-"), b.plugin, _preprocess(b) or "-"))
    _table(rows)


@click.command()
@guarded
def schema():
    """Print the JSON Schema of specs, with every installed op's params."""
    from ..spec.schema import full_schema

    click.echo(json.dumps(full_schema(installed_plugins().registry), indent=2))
