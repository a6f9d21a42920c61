"""What every library call shares: a spec's forms, and the plugins a call is given or finds installed."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..plugins.loading import Plugins

# A spec: the path of a JSON file, or the parsed JSON.
SpecSource = str | os.PathLike | dict


def given_or_installed(plugins: Plugins | None) -> Plugins:
    if plugins is not None:
        return plugins
    from ..plugins.loading import load_plugins

    return load_plugins()
