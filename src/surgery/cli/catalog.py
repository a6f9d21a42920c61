"""``surgery plugins``, ``ops``, ``backbones`` and ``schema``: what is installed; no TensorFlow."""

from __future__ import annotations

import json

import click

from .common import guarded, installed_plugins


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@guarded
def plugins(as_json):
    """List the installed plugins and what each registered."""
    from ..plugins import load_plugins

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
                        "ops": r.ops,
                        "backbones": r.backbones,
                        "exporters": r.exporters,
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
        for kind in ("ops", "backbones", "exporters"):
            names = getattr(r, kind)
            if names:
                click.echo(f"    {kind}: " + ", ".join(names))


def _table(rows):
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    for r in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())


@click.command()
@guarded
def ops():
    """List the spec operations and the plugin that provides each."""
    reg = installed_plugins().registry
    _table(
        [("op", "plugin", "description")]
        + [(o.name, o.plugin, o.description) for o in sorted(reg.ops.values(), key=lambda o: o.name)]
    )


@click.command()
@guarded
def backbones():
    """List the backbones, their default input shapes and the plugin that provides each."""
    reg = installed_plugins().registry
    rows = [("backbone", "input", "min", "plugin", "preprocess")]
    for b in sorted(reg.backbones.values(), key=lambda b: b.name):
        shape = "x".join(map(str, b.input_shape)) if b.input_shape else "-"
        prep = b.preprocess if isinstance(b.preprocess, str) else ("callable" if b.preprocess else "-")
        rows.append((b.name, shape, str(b.min_input_size or "-"), b.plugin, prep))
    _table(rows)


@click.command()
@guarded
def schema():
    """Print the JSON Schema of specs, with every installed op's params."""
    from ..schema import full_schema

    click.echo(json.dumps(full_schema(installed_plugins().registry), indent=2))
