"""surgery: model surgery and transfer learning for Keras 3, from JSON specs.

Importing this package is cheap: TensorFlow is imported only when a model is
built (``build``), never by validation, listing or the CLI's help.
"""

from __future__ import annotations

from importlib import metadata

from .errors import OpError, PluginError, SpecError, SurgeryError
from .hookspecs import hookimpl
from .state import State

try:
    __version__ = metadata.version("surgery")
except metadata.PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0"

__all__ = ["build", "load", "hookimpl", "State", "OpError", "PluginError", "SpecError", "SurgeryError",
           "__version__"]


def load(spec, plugins=None):
    """Validate a spec (a path or a dict) without building it; returns (Spec, Plugins)."""
    from .plugins import load_plugins
    from .spec import load_spec

    plugins = plugins or load_plugins()
    return load_spec(spec, plugins.registry, plugins.broken), plugins


def build(spec, plugins=None):
    """Build the ``keras.Model`` a spec describes (a path or a dict). Raises SurgeryError on bad input."""
    from .executor import run_steps

    spec, plugins = load(spec, plugins)
    return run_steps(spec, plugins.registry).model
