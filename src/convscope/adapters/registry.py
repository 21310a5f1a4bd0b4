"""Adapter plugins: how a new framework is found by ``convscope.load`` / ``convscope.Scope``.

A plugin is an :class:`AdapterPlugin`; an installed package offers one through the entry point
group ``convscope.adapters`` (``pyproject.toml``)::

    [project.entry-points."convscope.adapters"]
    mynet = "mynet_convscope:plugin"     # an AdapterPlugin, or a callable returning one

or, in-process, with :func:`register_adapter`. :func:`convscope.adapters.adapter_for` asks the
plugins (after the built-in frameworks) whether they handle a model object, and
``convscope.load`` asks them for file suffixes the built-in loaders do not know. Entry points are
read once, on the first model convscope cannot place itself (nothing is imported before).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ModelLoadError
from ._capture import first_line
from .base import LoadedModel, ModelAdapter

__all__ = ["AdapterPlugin", "ENTRY_POINT_GROUP", "register_adapter", "plugins", "plugin_for_model", "plugin_for_suffix"]

ENTRY_POINT_GROUP = "convscope.adapters"


@dataclass(frozen=True)
class AdapterPlugin:
    """One framework adapter offered to convscope.

    Attributes:
        name: short name (``"numpy"``), shown in messages.
        handles: ``handles(model) -> bool``: whether a model object belongs to this framework.
        adapter: ``adapter(model, device=None) -> ModelAdapter``.
        suffixes: model file suffixes (lower case, with the dot) this plugin loads.
        load_file: ``load_file(path, trust) -> LoadedModel`` for those suffixes.
    """

    name: str
    handles: Callable[[Any], bool]
    adapter: Callable[..., ModelAdapter]
    suffixes: tuple[str, ...] = ()
    load_file: Callable[[Path, bool], LoadedModel] | None = None


_REGISTERED: list[AdapterPlugin] = []
_FROM_ENTRY_POINTS: list[AdapterPlugin] | None = None


def register_adapter(plugin: AdapterPlugin) -> AdapterPlugin:
    """Register ``plugin`` in this process (an entry point does the same for installed packages)."""
    if not isinstance(plugin, AdapterPlugin):
        raise TypeError(f"register_adapter needs an AdapterPlugin, got {type(plugin).__name__}")
    _REGISTERED[:] = [p for p in _REGISTERED if p.name != plugin.name] + [plugin]
    return plugin


def _load_entry_points() -> list[AdapterPlugin]:
    from importlib.metadata import entry_points

    found: list[AdapterPlugin] = []
    for point in entry_points(group=ENTRY_POINT_GROUP):
        try:
            value = point.load()
            plugin = value if isinstance(value, AdapterPlugin) else value()
        except Exception as exc:  # noqa: BLE001 - a broken plugin must name itself
            raise ModelLoadError(
                f"the convscope adapter plugin {point.name!r} ({point.value}) failed to load: {first_line(exc)}; "
                f"fix or uninstall the package that provides it"
            ) from None
        if not isinstance(plugin, AdapterPlugin):
            raise ModelLoadError(
                f"the convscope adapter plugin {point.name!r} ({point.value}) is a {type(plugin).__name__}, "
                f"not a convscope.adapters.registry.AdapterPlugin"
            )
        found.append(plugin)
    return found


def plugins(*, refresh: bool = False) -> list[AdapterPlugin]:
    """Every plugin: registered in-process first, then the installed entry points (read once)."""
    global _FROM_ENTRY_POINTS
    if _FROM_ENTRY_POINTS is None or refresh:
        _FROM_ENTRY_POINTS = _load_entry_points()
    names = {p.name for p in _REGISTERED}
    return [*_REGISTERED, *(p for p in _FROM_ENTRY_POINTS if p.name not in names)]


def plugin_for_model(model: Any) -> AdapterPlugin | None:
    """The first plugin whose ``handles(model)`` is true, or None."""
    for plugin in plugins():
        if plugin.handles(model):
            return plugin
    return None


def plugin_for_suffix(suffix: str) -> AdapterPlugin | None:
    """The first plugin that loads files ending in ``suffix`` (lower case, with the dot), or None."""
    for plugin in plugins():
        if plugin.load_file is not None and suffix.lower() in plugin.suffixes:
            return plugin
    return None
