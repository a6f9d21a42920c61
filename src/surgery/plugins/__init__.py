"""Plugins: loading them (entry points, the built-ins first) and the registry of what they register.

``surgery.plugins.load_plugins`` and ``Plugins`` stay importable from here, as before the package existed.
"""

from .loading import Candidate, Plugins, builtin_candidates, load_plugins

__all__ = ["Candidate", "Plugins", "builtin_candidates", "load_plugins"]
