"""Name → class registries for techniques, metrics, detectors and attacks.

lm-evaluation-harness style: a component registers itself under a name (plus
aliases) with a one-line description; configs refer to it by name. Third-party
packages can add entries through the ``erasekit.techniques`` /
``erasekit.metrics`` / ``erasekit.detectors`` / ``erasekit.attacks`` entry-point groups. Nothing a
config names is ever imported or executed beyond these registered classes.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    name: str
    obj: T
    description: str
    aliases: tuple[str, ...] = ()


class Registry(Generic[T]):
    """A case-insensitive registry with aliases and "did you mean" suggestions."""

    def __init__(self, kind: str, entry_point_group: str | None = None) -> None:
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}
        self._aliases: dict[str, str] = {}
        self._group = entry_point_group
        self._plugins_loaded = False

    def register(self, name: str, *, description: str = "", aliases: tuple[str, ...] = ()) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            key = name.lower()
            if key in self._entries and self._entries[key].obj is not obj:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            doc = description or (getattr(obj, "__doc__", None) or "").strip().split("\n")[0]
            self._entries[key] = Entry(name=key, obj=obj, description=doc, aliases=tuple(a.lower() for a in aliases))
            for alias in aliases:
                self._aliases[alias.lower()] = key
            if isinstance(obj, type):
                obj.registry_name = key  # type: ignore[attr-defined]  # the name reports and tables use
            return obj

        return deco

    def unregister(self, name: str) -> None:
        key = self.canonical(name)
        if key is None:
            return
        entry = self._entries.pop(key)
        for alias in entry.aliases:
            self._aliases.pop(alias, None)

    def _load_plugins(self) -> None:
        if self._plugins_loaded or self._group is None:
            return
        self._plugins_loaded = True
        for ep in metadata.entry_points(group=self._group):
            if ep.name.lower() not in self._entries:
                self.register(ep.name)(ep.load())

    def canonical(self, name: str) -> str | None:
        self._load_plugins()
        key = name.lower()
        if key in self._entries:
            return key
        return self._aliases.get(key)

    def get(self, name: str) -> T:
        key = self.canonical(name)
        if key is None:
            raise KeyError(name)
        return self._entries[key].obj

    def entries(self) -> list[Entry[T]]:
        self._load_plugins()
        return [self._entries[k] for k in sorted(self._entries)]

    def names(self) -> list[str]:
        return [e.name for e in self.entries()]

    def suggest(self, name: str) -> str | None:
        candidates = self.names() + sorted(self._aliases)
        close = difflib.get_close_matches(name.lower(), candidates, n=1, cutoff=0.5)
        return close[0] if close else None


TECHNIQUES: Registry[type] = Registry("technique", "erasekit.techniques")
METRICS: Registry[type] = Registry("metric", "erasekit.metrics")
DETECTORS: Registry[type] = Registry("detector", "erasekit.detectors")
ATTACKS: Registry[type] = Registry("attack", "erasekit.attacks")


def load_builtins() -> None:
    """Import the built-in components so that they register themselves."""
    import erasekit.attacks  # noqa: F401
    import erasekit.detectors  # noqa: F401
    import erasekit.metrics  # noqa: F401
    import erasekit.techniques  # noqa: F401


def import_package_modules(package: str, skip: tuple[str, ...] = ()) -> list[str]:
    """Import every module of ``package`` (a built-in component package), so that a new
    technique or metric is one new file: its decorator registers it, no list to edit.

    Only modules shipped inside erasekit's own package folders are imported (never a name
    taken from a config). Returns the imported module names, sorted.
    """
    import importlib
    import pkgutil

    pkg = importlib.import_module(package)
    names = sorted(m.name for m in pkgutil.iter_modules(pkg.__path__) if not m.ispkg and m.name not in skip)
    for name in names:
        importlib.import_module(f"{package}.{name}")
    return names
