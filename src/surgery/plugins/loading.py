"""Loading plugins: entry points of group ``surgery``, isolated from each other.

``load_plugins()`` is a factory, not a global: tests (and embedders) build a
manager from exactly the plugins they name. A plugin that fails to import,
raises in a hook, registers something invalid, or clashes with another is
recorded as broken with its reason; the others keep working.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import pluggy

from .. import hookspecs
from ..errors import PluginError, one_line
from .registry import KINDS, Registration, Registry

GROUP = "surgery"
BUILTIN_DIST = "surgery"
# Each hook and the Registration method that is its ``register`` callback.
CALLBACKS = {kind.hook: kind.register for kind in KINDS}
HOOKS = tuple(CALLBACKS)
LOAD_VAR = "SURGERY_LOAD_PLUGINS"
BLOCK_VAR = "SURGERY_BLOCK_PLUGINS"


@dataclass
class PluginRecord:
    name: str
    dist: str | None
    version: str | None
    builtin: bool
    error: str | None = None
    ops: list = field(default_factory=list)
    backbones: list = field(default_factory=list)
    exporters: list = field(default_factory=list)
    channel_rules: list = field(default_factory=list)
    attempted: list = field(default_factory=list)  # (kind, name) it tried to register, kept when broken

    @property
    def origin(self) -> str:
        if self.builtin:
            return "built-in"
        return f"{self.dist} {self.version}" if self.dist else "(no distribution)"


@dataclass
class Plugins:
    registry: Registry
    records: list[PluginRecord]
    manager: pluggy.PluginManager
    warnings: list[str] = field(default_factory=list)

    @property
    def broken(self) -> list[PluginRecord]:
        return [r for r in self.records if r.error]


@dataclass(frozen=True)
class Candidate:
    """A plugin to load: a name and something that imports its module."""

    name: str
    load: Any  # () -> module or object with hookimpls
    dist: str | None = None
    version: str | None = None

    @property
    def builtin(self) -> bool:
        return self.dist == BUILTIN_DIST

    @classmethod
    def of(cls, obj, name: str | None = None, dist: str | None = None) -> Candidate:
        """An already-imported module or object, for tests and embedders."""
        return cls(name or plugin_name(obj), lambda: obj, dist)


def plugin_name(obj) -> str:
    name = getattr(obj, "__name__", None) or type(obj).__name__
    return name.rsplit(".", 1)[-1]


def _env_list(var: str) -> list[str] | None:
    raw = os.environ.get(var)
    if raw is None:
        return None
    return [p.strip() for p in raw.split(",") if p.strip()]


def _norm(name: str) -> str:
    # Distribution names compare like pip compares them (PEP 503).
    return re.sub(r"[-_.]+", "-", name).lower()


def entry_point_candidates() -> list[Candidate]:
    found = []
    for ep in metadata.entry_points(group=GROUP):
        dist = getattr(ep, "dist", None)
        found.append(
            Candidate(
                ep.name,
                ep.load,
                dist.metadata["Name"] if dist is not None else None,
                dist.version if dist is not None else None,
            )
        )
    # Built-ins first, then by name: clashes resolve the same way on every machine.
    found.sort(key=lambda c: (not c.builtin, c.name, c.dist or ""))
    return found


def builtin_candidates() -> list[Candidate]:
    """The built-in plugins only: what tests start from, whatever else is installed."""
    return [c for c in entry_point_candidates() if c.builtin]


def _named(c: Candidate, names) -> bool:
    """A plugin is named by its plugin name (as `surgery plugins` shows it) or its distribution's."""
    return c.name in names or (c.dist is not None and _norm(c.dist) in {_norm(n) for n in names})


def select(candidates: Iterable[Candidate], warnings: list | None = None) -> list[Candidate]:
    """Apply SURGERY_LOAD_PLUGINS (third-party allow-list) and SURGERY_BLOCK_PLUGINS.

    Names in either variable that match nothing installed are reported in
    ``warnings``: a typo there would otherwise silently do nothing.
    """
    candidates = list(candidates)
    allow = _env_list(LOAD_VAR)
    block = _env_list(BLOCK_VAR) or []
    if warnings is not None:
        for var, names in ((LOAD_VAR, allow or []), (BLOCK_VAR, block)):
            for n in names:
                if not any(_named(c, [n]) for c in candidates):
                    warnings.append(f"warning: {var} names {n!r}, which is not an installed plugin")
    chosen = []
    for c in candidates:
        if _named(c, block):
            continue
        if allow is not None and not c.builtin and not _named(c, allow):
            continue
        chosen.append(c)
    return chosen


def new_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(GROUP)
    pm.add_hookspecs(hookspecs)
    return pm


def load_plugins(candidates: Iterable[Candidate] | None = None) -> Plugins:
    """Load ``candidates`` (default: the installed entry points, filtered by the environment)."""
    warnings: list[str] = []
    if candidates is None:
        candidates = select(entry_point_candidates(), warnings)
    pm = new_manager()
    registry = Registry()
    records = []
    for cand in candidates:
        record = PluginRecord(cand.name, cand.dist, cand.version, cand.builtin)
        records.append(record)
        reg = Registration(cand.name)
        try:
            _load_one(pm, cand, records, reg)
            clash = registry.clashes(reg)
            if clash:
                pm.unregister(name=cand.name)
                raise PluginError(clash)
        except PluginError as e:
            record.error = one_line(e.message)
            record.attempted = list(reg.attempted)
            continue
        registry.commit(reg)
        for kind in KINDS:
            setattr(record, kind.table, [getattr(e, kind.key) for e in getattr(reg, kind.table)])
    return Plugins(registry, records, pm, warnings)


def _load_one(pm: pluggy.PluginManager, cand: Candidate, records: list[PluginRecord], reg: Registration) -> None:
    other = next((r for r in records[:-1] if r.name == cand.name and not r.error), None)
    if other is not None:
        raise PluginError(f"the plugin name {cand.name!r} is already taken by {other.origin}")
    try:
        obj = cand.load()
    except (Exception, SystemExit) as e:  # a plugin's import may fail any way at all  # noqa: BLE001 (a plugin's code may fail any way at all)
        raise PluginError(f"failed to import: {type(e).__name__}: {e}") from None
    register_hooks(pm, cand.name, obj)
    try:
        collect(pm, cand.name, reg)
    except PluginError:
        pm.unregister(name=cand.name)
        raise


def register_hooks(pm: pluggy.PluginManager, name: str, obj) -> None:
    """Add ``obj``'s hookimpls under ``name``; a misspelled hook is an error, not ignored."""
    try:
        pm.register(obj, name=name)
        pm.check_pending()
    except Exception as e:  # noqa: BLE001 (a plugin's code may fail any way at all)
        if pm.is_registered(obj):
            pm.unregister(obj)
        raise PluginError(f"invalid hooks: {e}") from None


def collect(pm: pluggy.PluginManager, name: str, reg: Registration | None = None) -> Registration:
    """Call plugin ``name``'s hooks with the host's ``register`` callbacks; what they registered."""
    reg = reg if reg is not None else Registration(name)
    hook = None
    try:
        for hook in HOOKS:
            register = getattr(reg, CALLBACKS[hook])
            for impl in getattr(pm.hook, hook).get_hookimpls():
                if impl.plugin_name == name:
                    impl.function(**({"register": register} if impl.argnames else {}))
    except PluginError as e:
        raise PluginError(f"{hook}: {e.message}") from None
    except (Exception, SystemExit) as e:  # noqa: BLE001 (a plugin's code may fail any way at all)
        raise PluginError(f"{hook} raised {type(e).__name__}: {e}") from None
    return reg


def registration_of(obj, name: str | None = None) -> Registration:
    """What ``obj`` registers on its own, through a fresh manager (raises PluginError)."""
    pm = new_manager()
    name = name or plugin_name(obj)
    register_hooks(pm, name, obj)
    return collect(pm, name)


def warn_broken(plugins: Plugins, echo) -> None:
    """One line per disabled plugin (name, origin, reason), and per unknown name in the environment."""
    for w in plugins.warnings:
        echo(w)
    for r in plugins.broken:
        echo(f"warning: plugin {r.name!r} ({r.origin}) is disabled: {r.error}")
