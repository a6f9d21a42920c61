"""The ``surgery`` command line. Only ``apply`` (and commands that build) import TensorFlow."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
import traceback
from pathlib import Path

import click

from .cli_types import FiniteFloat

from . import __version__
from .errors import (ENVIRONMENT_ERRORS, EXIT_BAD_INPUT, EXIT_INTERNAL, SpecError, SurgeryError, Terminated,
                     environment_error, interrupted_exit)


def one_line(message: str) -> str:
    """The promise of the error model: one line, whatever a library put in the message.

    Line breaks fold into spaces; other control characters (a NUL in a layer name
    from a spec, terminal escapes) are shown as escapes, never sent to the terminal.
    """
    folded = " ".join(message.split())
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in folded)


def _fail(message: str, code: int) -> None:
    click.echo(f"error: {one_line(message)}", err=True)
    sys.exit(code)


def _terminate(signum, frame):
    raise Terminated(signum)


def _handle_signals() -> None:
    import signal

    for sig in (signal.SIGTERM, signal.SIGHUP):
        with contextlib.suppress(ValueError, OSError):  # not the main thread (an embedding program)
            signal.signal(sig, _terminate)


def guarded(fn):
    """Every command: SurgeryError -> one line and its exit status; anything else -> exit 1, no traceback."""

    @click.option("--verbose", is_flag=True, help="Show TensorFlow's start-up log and library warnings.")
    @click.option("--debug", is_flag=True, help="Show the traceback of an error.")
    @functools.wraps(fn)
    def wrapper(*args, verbose=False, debug=False, **kwargs):
        from .keras_env import set_verbose

        ctx = click.get_current_context()
        verbose = verbose or ctx.find_root().params.get("verbose", False)
        debug = debug or ctx.find_root().params.get("debug", False)
        set_verbose(verbose)
        _handle_signals()
        try:
            return fn(*args, **kwargs)
        except SurgeryError as e:
            if debug:
                traceback.print_exc()
            _fail(str(e), e.exit_code)
        except KeyboardInterrupt as e:
            what = "terminated" if isinstance(e, Terminated) else "interrupted"
            _fail(f"{what}; no output was written", interrupted_exit(e))
        except BrokenPipeError:
            # `surgery schema | head`: the reader left; nothing is wrong and nothing more to say.
            sys.stderr.close()
            os._exit(0)
        except (click.exceptions.Exit, click.ClickException, SystemExit):
            raise
        except Exception as e:
            if debug:
                traceback.print_exc()
            if isinstance(e, OSError) and e.errno in ENVIRONMENT_ERRORS:
                # The machine, not surgery: a full disk, a read-only file system, a file over the size limit.
                _fail(environment_error(e), EXIT_BAD_INPUT)
            hint = "" if debug else " (run with --debug for the traceback)"
            _fail(f"internal error: {type(e).__name__}: {e}{hint}", EXIT_INTERNAL)

    return wrapper


class _OneLineErrors(click.Group):
    """Click's usage errors (a missing argument, a bad option value) as one ``error:`` line, like every other
    bad input, instead of click's three lines of usage, hint and message."""

    def main(self, args=None, prog_name=None, **extra):
        if not extra.pop("standalone_mode", True):  # an embedding program handles click's exceptions itself
            return super().main(args, prog_name, standalone_mode=False, **extra)
        try:
            code = super().main(args, prog_name, standalone_mode=False, **extra)
        except click.exceptions.NoArgsIsHelpError as e:
            e.show()
            sys.exit(e.exit_code)
        except click.UsageError as e:
            where = f" (see `{e.ctx.command_path} --help`)" if e.ctx is not None else ""
            _fail(e.format_message() + where, e.exit_code)
        except click.ClickException as e:
            _fail(e.format_message(), e.exit_code)
        except click.exceptions.Abort:
            _fail("interrupted; no output was written", 130)
        sys.exit(code if isinstance(code, int) else 0)


@click.group(cls=_OneLineErrors, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="surgery")
@click.option("--verbose", is_flag=True, help="Show TensorFlow's start-up log and library warnings.")
@click.option("--debug", is_flag=True, help="Show the traceback of an error.")
def main(verbose, debug):
    """Build Keras models from JSON specs: load a backbone, cut it, extend it, freeze it, export it."""


def _plugins():
    from .plugins import load_plugins, warn_broken

    plugins = load_plugins()
    warn_broken(plugins, lambda m: click.echo(m, err=True))
    return plugins


def _load(spec_path: str, plugins, weights: str | None = None):
    from .spec import load_spec, read_spec_file, validate

    if weights is None:
        return load_spec(spec_path, plugins.registry, plugins.broken)
    if not weights.strip():
        raise SpecError('is empty; give "imagenet", "none", or the path of a weights file', where="--weights")
    data, name = read_spec_file(spec_path)
    if isinstance(data, dict) and data.get("steps") and isinstance(data["steps"][0], dict):
        step = data["steps"][0]
        if step.get("op") != "backbone":
            raise SpecError("--weights applies to a first step that is a backbone", file=name, where="steps[0]")
        if weights.lower() in ("none", "null"):
            step["weights"] = None
        elif weights == "imagenet":
            step["weights"] = "imagenet"
        else:
            step["weights"] = str(Path(weights).resolve())
    return validate(data, plugins.registry, file=name, base=Path(spec_path).resolve().parent,
                    broken_plugins=plugins.broken)


def _planned_outputs(spec, registry, out: str | None, extra: dict[str, str], force: bool) -> dict:
    """Format -> path for everything this run writes, checked before anything is built."""
    from .writing import check_output, output_path

    planned = {fmt: spec.output_file(fmt) for fmt in spec.outputs}
    creatable = set()
    if out is not None or "keras" not in planned:
        planned["keras"], named_folder = output_path(out, spec.name, ".keras")
        if named_folder:
            creatable.add("keras")
    for fmt, path in extra.items():
        planned[fmt] = Path(path)
    inputs = ([spec.file] if spec.file != "<dict>" else []) + list(spec.inputs)
    for fmt, path in planned.items():
        if fmt not in registry.exporters:
            raise SpecError(f'no exporter for "{fmt}" is installed', file=spec.file, where="outputs")
        check_output(path, force, f"output {fmt}", fmt in creatable, inputs)
    return planned


@main.command()
@click.argument("spec", type=click.Path(dir_okay=True))
@click.option("-o", "--output", "out", help="Folder for <name>.keras, or a path ending in .keras.")
@click.option("--onnx", "onnx_path", help="Also write the model as ONNX to this path.")
@click.option("--opset", type=int, help="ONNX opset (default 17).")
@click.option("--atol", type=FiniteFloat(min=0), help="Largest difference from Keras an export may show (default 1e-4).")
@click.option("--weights", help='Override the backbone\'s weights: "imagenet", "none", or a file path.')
@click.option("--force", is_flag=True, help="Overwrite existing output files.")
@click.option("--plot", "plot_path", metavar="FILE",
              help="Also draw the model's graph to FILE.svg or FILE.png (frozen layers marked).")
@guarded
def apply(spec, out, onnx_path, opset, atol, weights, force, plot_path):
    """Build the model SPEC describes, print it, and save it."""
    from .writing import Outputs

    plugins = _plugins()
    parsed = _load(spec, plugins, weights)
    registry = plugins.registry
    planned = _planned_outputs(parsed, registry, out, {"onnx": onnx_path} if onnx_path else {}, force)
    if plot_path:
        from .plot import check_target

        check_target(plot_path, force)

    from .executor import run_steps
    from .summary import render

    state = run_steps(parsed, registry)
    for note in state.notes:
        click.echo(f"  {note}")
    click.echo(render(state.model))
    onnx_options = {k: v for k, v in {"opset": opset, "atol": atol}.items() if v is not None}
    reports = {}
    # All outputs or none: each is placed only when every export has succeeded.
    with Outputs(force) as outputs:
        for fmt, path in planned.items():
            tmp = outputs.stage(path)
            try:
                # Exporters refuse options they do not take, so the ONNX ones go to ONNX alone.
                reports[fmt] = registry.exporters[fmt].export(state.model, tmp, onnx_options if fmt == "onnx" else {})
            except SurgeryError as e:
                raise e.located(file=str(path), where=f"output {fmt}") from None
        outputs.commit()
    for fmt, path in planned.items():
        click.echo(f"wrote {path}" + (f" ({reports[fmt]})" if reports[fmt] else ""))
    if plot_path:
        from .plot import write_plot

        click.echo(f"wrote {plot_path} ({write_plot(state.model, plot_path, force)})")


@main.command()
@click.argument("spec", type=click.Path(dir_okay=True))
@guarded
def validate(spec):
    """Check SPEC against the schema and the installed plugins, without building (no TensorFlow)."""
    plugins = _plugins()
    parsed = _load(spec, plugins)
    click.echo(f"ok: {spec}: {len(parsed.steps)} steps; checked the schema, op and backbone names and options, "
               "layer class names, slice text and file paths")
    click.echo("not checked until `surgery apply` builds it: layer configs, index ranges and names against "
               "the model, shapes, and the contents of weights and model files")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@guarded
def plugins(as_json):
    """List the installed plugins and what each registered."""
    from .plugins import load_plugins

    loaded = load_plugins()
    for warning in loaded.warnings:
        click.echo(warning, err=True)
    if as_json:
        click.echo(json.dumps([
            {"name": r.name, "distribution": r.dist, "version": r.version, "builtin": r.builtin,
             "status": "broken" if r.error else "ok", "error": r.error,
             "ops": r.ops, "backbones": r.backbones, "exporters": r.exporters}
            for r in loaded.records], indent=2))
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


@main.command()
@guarded
def ops():
    """List the spec operations and the plugin that provides each."""
    reg = _plugins().registry
    _table([("op", "plugin", "description")] +
           [(o.name, o.plugin, o.description) for o in sorted(reg.ops.values(), key=lambda o: o.name)])


@main.command()
@guarded
def backbones():
    """List the backbones, their default input shapes and the plugin that provides each."""
    reg = _plugins().registry
    rows = [("backbone", "input", "min", "plugin", "preprocess")]
    for b in sorted(reg.backbones.values(), key=lambda b: b.name):
        shape = "x".join(map(str, b.input_shape)) if b.input_shape else "-"
        prep = b.preprocess if isinstance(b.preprocess, str) else ("callable" if b.preprocess else "-")
        rows.append((b.name, shape, str(b.min_input_size or "-"), b.plugin, prep))
    _table(rows)


@main.command()
@guarded
def schema():
    """Print the JSON Schema of specs, with every installed op's params."""
    from .schema import full_schema

    click.echo(json.dumps(full_schema(_plugins().registry), indent=2))


from .cli_train import features_command, predict_command, train_command  # noqa: E402
main.add_command(train_command, "train")
main.add_command(features_command, "features")
main.add_command(predict_command, "predict")


from .cli_export import export_command  # noqa: E402
main.add_command(export_command, "export")

from .cli_plan import plan_command  # noqa: E402
main.add_command(plan_command, "plan")
