"""Loading plugins: entry points of group ``surgery``, isolated from each other.

``load_plugins()`` is a factory, not a global: tests (and embedders) build a
manager from exactly the plugins they name. A plugin that fails to import,
raises in a hook, registers something invalid, or clashes with another is
recorded as broken with its reason; the others keep working.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Iterable

import pluggy

from . import hookspecs
from .errors import PluginError
from .registry import Registration, Registry

GROUP = "surgery"
BUILTIN_DIST = "surgery"
HOOKS = ("surgery_register_ops", "surgery_register_backbones", "surgery_register_exporters")


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


def _env_list(var: str) -> list[str] | None:
    raw = os.environ.get(var)
    if raw is None:
        return None
    return [p.strip() for p in raw.split(",") if p.strip()]


def entry_point_candidates() -> list[Candidate]:
    found = []
    for ep in metadata.entry_points(group=GROUP):
        dist = getattr(ep, "dist", None)
        found.append(Candidate(
            ep.name, ep.load,
            dist.metadata["Name"] if dist is not None else None,
            dist.version if dist is not None else None,
        ))
    # Built-ins first, then by name: clashes resolve the same way on every machine.
    found.sort(key=lambda c: (not c.builtin, c.name, c.dist or ""))
    return found


def select(candidates: Iterable[Candidate]) -> list[Candidate]:
    """Apply SURGERY_LOAD_PLUGINS (third-party allow-list) and SURGERY_BLOCK_PLUGINS."""
    allow = _env_list("SURGERY_LOAD_PLUGINS")
    block = set(_env_list("SURGERY_BLOCK_PLUGINS") or ())
    chosen = []
    for c in candidates:
        if c.name in block:
            continue
        if allow is not None and not c.builtin and c.name not in allow:
            continue
        chosen.append(c)
    return chosen


def load_plugins(candidates: Iterable[Candidate] | None = None) -> Plugins:
    if candidates is None:
        candidates = select(entry_point_candidates())
    pm = pluggy.PluginManager(GROUP)
    pm.add_hookspecs(hookspecs)
    registry = Registry()
    records = []
    for cand in candidates:
        record = PluginRecord(cand.name, cand.dist, cand.version, cand.builtin)
        records.append(record)
        try:
            reg = _load_one(pm, cand)
        except PluginError as e:
            record.error = e.message
            continue
        clash = registry.clashes(reg)
        if clash:
            record.error = clash
            pm.unregister(name=cand.name)
            continue
        registry.commit(reg)
        record.ops = [o.name for o in reg.ops]
        record.backbones = [b.name for b in reg.backbones]
        record.exporters = [e.format for e in reg.exporters]
    return Plugins(registry, records, pm)


def _load_one(pm: pluggy.PluginManager, cand: Candidate) -> Registration:
    try:
        obj = cand.load()
    except Exception as e:  # a plugin's import may fail any way at all
        raise PluginError(f"failed to import: {type(e).__name__}: {e}") from None
    try:
        pm.register(obj, name=cand.name)
        pm.check_pending()
    except Exception as e:
        if pm.is_registered(obj):
            pm.unregister(obj)
        raise PluginError(f"invalid hooks: {e}") from None
    reg = Registration(cand.name)
    callbacks = {
        "surgery_register_ops": reg.register_op,
        "surgery_register_backbones": reg.register_backbone,
        "surgery_register_exporters": reg.register_exporter,
    }
    try:
        for hook in HOOKS:
            for impl in getattr(pm.hook, hook).get_hookimpls():
                if impl.plugin_name == cand.name:
                    impl.function(**({"register": callbacks[hook]} if impl.argnames else {}))
    except PluginError as e:
        pm.unregister(name=cand.name)
        raise PluginError(f"{hook}: {e.message}") from None
    except Exception as e:
        pm.unregister(name=cand.name)
        raise PluginError(f"{hook} raised {type(e).__name__}: {e}") from None
    return reg


def warn_broken(plugins: Plugins, echo) -> None:
    for r in plugins.broken:
        echo(f"warning: plugin {r.name!r} ({r.origin}) is disabled: {r.error}")
