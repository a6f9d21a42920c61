"""What every command shares: one error line and its exit status, signals, and loading the plugins."""

from __future__ import annotations

import contextlib
import functools
import gc
import os
import sys
import traceback

import click

from ..errors import (
    ENVIRONMENT_ERRORS,
    EXIT_BAD_INPUT,
    EXIT_INTERNAL,
    SurgeryError,
    Terminated,
    environment_error,
    interrupted_exit,
    one_line,
    stop_on_signal,
)


def printable(message: str) -> str:
    """The promise of the error model: one line, whatever a library put in the message.

    Line breaks fold into spaces; other control characters (a NUL in a layer name
    from a spec, terminal escapes) are shown as escapes, never sent to the terminal.
    """
    return "".join(
        c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in one_line(message, None)
    )


def fail(message: str, code: int) -> None:
    click.echo(f"error: {printable(message)}", err=True)
    sys.exit(code)


def _handle_signals() -> None:
    import signal

    for sig in (signal.SIGTERM, signal.SIGHUP):
        with contextlib.suppress(ValueError, OSError):  # not the main thread (an embedding program)
            signal.signal(sig, stop_on_signal)


def guarded(fn):
    """Every command: SurgeryError -> one line and its exit status; anything else -> exit 1, no traceback."""

    @click.option("--verbose", is_flag=True, help="Show TensorFlow's start-up log and library warnings.")
    @click.option("--debug", is_flag=True, help="Show the traceback of an error.")
    @functools.wraps(fn)
    def wrapper(*args, verbose=False, debug=False, **kwargs):
        from ..keras_env import set_verbose

        ctx = click.get_current_context()
        verbose = verbose or ctx.find_root().params.get("verbose", False)
        debug = debug or ctx.find_root().params.get("debug", False)
        set_verbose(verbose)
        _handle_signals()
        try:
            return fn(*args, **kwargs)
        except BrokenPipeError:
            # `surgery schema | head`: the reader left; nothing is wrong and nothing more to say.
            sys.stderr.close()
            os._exit(0)
        except (click.exceptions.Exit, click.ClickException, SystemExit):
            raise
        except (KeyboardInterrupt, Exception) as e:  # noqa: BLE001 (failure() gives each kind its line and status)
            if debug:
                traceback.print_exc()
            message, code = failure(e, debug)
        # Here, not in the handler: an exit raised there would keep the caught exception as its context,
        # and with it every frame the error passed through (a training run's data pipeline), until the
        # interpreter shuts down, where TensorFlow's pipeline threads can wait forever for the finaliser.
        if code >= 128:
            # Stopped by a signal, perhaps mid-fit: frames caught in reference cycles go now too. Not for
            # every bad-input line: a full collection takes 0.2 s once TensorFlow is loaded.
            gc.collect()
        fail(message, code)

    return wrapper


def failure(e: KeyboardInterrupt | Exception, debug: bool) -> tuple[str, int]:
    """A command's exception -> its error line and exit status: bad input 2, Ctrl-C 130, SIGTERM 143,
    the machine's fault (a full disk) 2, anything else a bug: exit 1."""
    if isinstance(e, SurgeryError):
        return str(e), e.exit_code
    if isinstance(e, KeyboardInterrupt):
        what = "terminated" if isinstance(e, Terminated) else "interrupted"
        return f"{what}; no output was written", interrupted_exit(e)
    if isinstance(e, OSError) and e.errno in ENVIRONMENT_ERRORS:
        return environment_error(e), EXIT_BAD_INPUT
    hint = "" if debug else " (run with --debug for the traceback)"
    return f"internal error: {type(e).__name__}: {e}{hint}", EXIT_INTERNAL


class OneLineErrors(click.Group):
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
            fail(e.format_message() + where, e.exit_code)
        except click.ClickException as e:
            fail(e.format_message(), e.exit_code)
        except click.exceptions.Abort:
            fail("interrupted; no output was written", 130)
        sys.exit(code if isinstance(code, int) else 0)


def installed_plugins():
    """The installed plugins; a line on stderr for each disabled one and each unknown name in the environment."""
    from ..plugins.loading import load_plugins, warn_broken

    plugins = load_plugins()
    warn_broken(plugins, lambda m: click.echo(m, err=True))
    return plugins


def progress() -> int:
    """Keras' progress bar on a terminal; one line per epoch in a log file, or where NO_COLOR asks for no colour
    (the bar is the only coloured output, and Keras draws it in colour whatever the terminal says)."""
    return 1 if sys.stdout.isatty() and not os.environ.get("NO_COLOR") else 2
