"""``surgery sweep``: train a grid of spec variants and compare them in one table."""

from __future__ import annotations

import click

from .common import guarded, installed_plugins


@click.command("sweep")
@click.argument("spec", metavar="SPEC.json")
@click.option(
    "--grid",
    required=True,
    metavar="GRID.json",
    help='Places in the spec mapped to the values to try: {"steps[3].layers": [...], "mode": "zip"}.',
)
@click.option("--data", metavar="PATH", help="Training data for every variant (default: the spec's train.data).")
@click.option("--validation-data", metavar="PATH", help="Validation data for every variant.")
@click.option("--test", metavar="PATH", help="Evaluate each variant's final model on this data too.")
@click.option(
    "-o", "--output", "out", required=True, metavar="FOLDER", help="The sweep folder: one run folder per variant."
)
@click.option("--jobs", type=click.IntRange(min=1), default=1, show_default=True, help="Variants trained at once.")
@click.option(
    "--ray",
    "ray_address",
    metavar="ADDRESS",
    help="Train the variants as tasks on this Ray cluster (HOST:PORT, ray://HOST:PORT or auto); its nodes must "
    "see the sweep folder and the data at the same paths.",
)
@click.option(
    "--ray-cpus",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="With --ray: the CPUs each variant asks for (and TensorFlow's threads in it).",
)
@click.option("--epochs", type=click.IntRange(min=1), help="Every stage's epochs, in every variant.")
@click.option("--resume", is_flag=True, help="Go on with an interrupted sweep: finished variants are kept.")
@click.option("--plot", metavar="FILE", help="Draw each variant's best monitored value (.svg or .png).")
@click.option("--search", metavar="optuna", help="Let Optuna draw the variants from the grid's ranges and choices.")
@click.option("--trials", type=click.IntRange(min=1), help="With --search: how many trials to finish.")
@guarded
def sweep(
    spec, grid, data, validation_data, test, out, jobs, ray_address, ray_cpus, epochs, resume, plot, search, trials
):
    """Train every variant of SPEC that GRID makes and write the table (results.csv, .json, .md in FOLDER)."""
    from ..api import sweep as run_sweep

    plugins = installed_plugins()
    rows = run_sweep(
        spec,
        grid,
        out,
        data=data,
        validation_data=validation_data,
        test=test,
        jobs=jobs,
        ray=ray_address,
        ray_cpus=ray_cpus,
        resume=resume,
        epochs=epochs,
        plot=plot,
        search=search,
        trials=trials,
        plugins=plugins,
        echo=click.echo,
    )
    failed = [row for row in rows if row["status"] != "ok"]
    click.echo(
        f"wrote {out}/results.csv, results.json, results.md ({len(rows) - len(failed)} of {len(rows)} variants ok)"
    )
    if failed:
        raise click.exceptions.Exit(3)
