"""The error model: one line, saying where and what, and an exit status.

Bad input (a spec, a path, a plugin's registration) exits 2; a failure of our
own or of a plugin's code exits 1. Messages are built here so that every
command words them the same way: ``error: FILE: WHERE: WHAT``.
"""

from __future__ import annotations

import difflib
import errno
import os
from collections.abc import Callable, Iterable

EXIT_BAD_INPUT = 2
EXIT_INTERNAL = 1


class SurgeryError(Exception):
    """An error the user can act on; printed as one line, never a traceback."""

    exit_code = EXIT_BAD_INPUT

    def __init__(self, message: str, *, file: str | None = None, where: str | None = None):
        super().__init__(message)
        self.message = message
        self.file = file
        self.where = where

    def located(self, *, file: str | None = None, where: str | None = None) -> SurgeryError:
        """Fill in the location if the raiser did not know it."""
        if self.file is None:
            self.file = file
        if self.where is None:
            self.where = where
        return self

    def __str__(self) -> str:
        parts = [p for p in (self.file, self.where, self.message) if p]
        return ": ".join(parts)


# What a function that raises a caller's error type accepts: SurgeryError or a subclass, or a factory.
ErrorFactory = Callable[..., SurgeryError]


class SpecError(SurgeryError):
    """The spec is not valid: schema, names, paths, or what a step asks of the model."""


class OpError(SpecError):
    """Raised by an op (built-in or plugin) for bad params; the executor adds the step."""


class PluginError(SurgeryError):
    """A plugin could not be loaded or registered something invalid."""


class InternalError(SurgeryError):
    exit_code = EXIT_INTERNAL


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised in the main thread so that every cleanup a Ctrl-C runs runs too."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


_stop_signal: int | None = None


def request_stop(signum: int) -> None:
    """Remember that a signal asked the process to stop (the CLI's SIGTERM/SIGHUP handler calls this)."""
    global _stop_signal
    _stop_signal = signum


def stop_on_signal(signum: int, frame: object) -> None:
    """A SIGTERM/SIGHUP handler (the CLI's, a sweep worker's): remember the stop and raise ``Terminated``."""
    request_stop(signum)
    raise Terminated(signum)


def raise_if_stopped() -> None:
    """Raise ``Terminated`` if a stop was requested and its exception got lost.

    A signal handler's exception is dropped when it fires inside a finaliser (Python prints "Exception
    ignored in ...") and goes on; so the places that must not go on (each training batch, the placing of
    outputs) check here too.
    """
    if _stop_signal is not None:
        raise Terminated(_stop_signal)


def interrupted_exit(e: BaseException) -> int:
    """128 + the signal's number, as a shell reports a process a signal ended: 130 for Ctrl-C, 143 for SIGTERM."""
    import signal

    return 128 + (e.signum if isinstance(e, Terminated) else signal.SIGINT)


def one_line(text: object, limit: int | None = 300) -> str:
    """Any text (an exception, a library's message) as one line, cut to ``limit`` characters.

    The error model promises one line: libraries put line breaks and whole tracebacks in their messages.
    """
    folded = " ".join(str(text).split())
    if limit is not None and len(folded) > limit:
        return folded[: limit - 3] + "..."
    return folded


def shown(path: str | os.PathLike[str]) -> str:
    """A path as messages show it: relative to the working folder when inside it, so lines are reproducible."""
    path = os.path.abspath(path)
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """``counted(1, "layer")`` -> "1 layer", ``counted(6, "layer")`` -> "6 layers": the one place notes pluralise."""
    return f"{n:,} {noun if n == 1 else plural or noun + 's'}"


def did_you_mean(word: str, choices: Iterable[str], *, most: int = 1, otherwise: str | None = None) -> str:
    """A ``; did you mean "x"?`` suffix (up to ``most`` close names, ``"x" or "y"``), else ``otherwise`` or a
    short list of what is valid."""
    choices = sorted(set(choices))
    close = difflib.get_close_matches(word, choices, n=most, cutoff=0.6)
    if not close:
        lowered = {c.lower(): c for c in choices}
        if word.lower() in lowered:
            close = [lowered[word.lower()]]
    if close:
        return "; did you mean " + " or ".join(f'"{c}"' for c in close) + "?"
    if otherwise is not None:
        return otherwise
    listed = ", ".join(choices)
    if len(listed) <= 160:  # a list that still fits the one error line
        return "; valid: " + listed
    return f"; {len(choices)} are valid, e.g. " + ", ".join(choices[:5])


# OSErrors that are the machine's state, not a bug: reported as bad input (exit 2), naming the file.
ENVIRONMENT_ERRORS = {
    errno.ENOSPC,
    errno.EROFS,
    errno.EDQUOT,
    errno.EFBIG,
    errno.EACCES,
    errno.EPERM,
    errno.ENAMETOOLONG,
}


def environment_reason(e: OSError) -> str:
    """Why a write failed, in words: the machine's state (full disk, read-only file system), not a bug."""
    reasons = {
        errno.ENOSPC: "no space left on the device",
        errno.EROFS: "the file system is read-only",
        errno.EFBIG: "the file is larger than this system allows",
        errno.EDQUOT: "the disk quota is used up",
    }
    return reasons.get(e.errno or 0, e.strerror or type(e).__name__)


def environment_error(e: OSError) -> str:
    name = e.filename if e.filename is not None else "a file"
    return f"{name}: cannot be written: {environment_reason(e)}"
