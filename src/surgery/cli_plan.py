"""``surgery plan SPEC``: per step, what changed (layers, trainable flags, params, output), with random weights."""

from __future__ import annotations

import json

import click

from .cli import _plugins, guarded


@click.command("plan")
@click.argument("spec", type=click.Path(dir_okay=True))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output: one object per step.")
@click.option("--plot", "plot_path", metavar="FILE", help="Also draw the model's graph to FILE.svg or FILE.png "
              "(frozen layers marked).")
@click.option("--force", is_flag=True, help="Overwrite an existing plot file.")
@guarded
def plan_command(spec, as_json, plot_path, force):
    """Show what each step of SPEC changes, built with random weights (no weights file needed)."""
    plugins = _plugins()
    if plot_path:
        from .plot import check_target

        check_target(plot_path, force)
    from .plan import plan, render

    changes, state = plan(spec, plugins)
    if as_json:
        click.echo(json.dumps([c.as_dict() for c in changes], indent=2))
    else:
        click.echo(render(changes, state))
    if plot_path:
        from .plot import write_plot

        report = write_plot(state.model, plot_path, force)
        click.echo(f"wrote {plot_path} ({report})", err=as_json)
