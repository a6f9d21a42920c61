"""The installed distribution's version (a module of its own, so that any layer may read it)."""

from __future__ import annotations

from importlib import metadata

try:
    __version__ = metadata.version("surgery")
except metadata.PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0"
