"""The ``surgery`` command line: one module per command group, over ``surgery.api`` and ``surgery.training``.

build.py    apply, validate, plan, export
catalog.py  plugins, ops, backbones, schema (no TensorFlow)
train.py    train, evaluate, features, predict
deploy.py   bench
sweep.py    sweep
common.py   one error line and its exit status, signals, loading the plugins
"""

from __future__ import annotations

import click

from ..version import __version__
from . import build, catalog, deploy, sweep, train
from .common import OneLineErrors


@click.group(cls=OneLineErrors, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="surgery")
@click.option("--verbose", is_flag=True, help="Show TensorFlow's start-up log and library warnings.")
@click.option("--debug", is_flag=True, help="Show the traceback of an error.")
def main(verbose, debug):
    """Build Keras models from JSON specs: load a backbone, cut it, extend it, freeze it, export it."""


for command in (
    build.apply,
    build.validate,
    build.plan,
    build.export,
    catalog.plugins,
    catalog.ops,
    catalog.backbones,
    catalog.schema,
    train.train,
    train.evaluate,
    train.features,
    train.predict,
    deploy.bench,
    sweep.sweep,
):
    main.add_command(command)
