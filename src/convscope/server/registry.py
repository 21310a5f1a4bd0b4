"""Opaque IDs the server hands to the browser; the browser never names a path or a layer string."""

from __future__ import annotations

import re
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["IdRegistry", "ID_PATTERN", "valid_id"]

T = TypeVar("T")

ID_PATTERN = re.compile(r"^[a-z][a-z0-9]{1,40}$")
"""Shape of every ID handed out: a lower-case letter then 1-40 letters/digits (no dots, slashes, %)."""


def valid_id(value: str) -> bool:
    return bool(ID_PATTERN.match(value))


class IdRegistry(Generic[T]):
    """Maps server-generated IDs (``prefix`` + random hex) to objects. Thread-safe.

    Args:
        prefix: one lower-case letter (``"i"`` for images).
        max_items: when more are added, the oldest entries that ``evictable`` allows are dropped.
        evictable: which entries may be dropped (default: all).
    """

    def __init__(self, prefix: str, *, max_items: int | None = None, evictable: Callable[[T], bool] | None = None) -> None:
        if not re.fullmatch(r"[a-z]", prefix):
            raise ValueError(f"prefix must be one lower-case letter, got {prefix!r}")
        self.prefix = prefix
        self.max_items = max_items
        self._evictable = evictable or (lambda _obj: True)
        self._items: OrderedDict[str, T] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, obj: T) -> tuple[str, list[str]]:
        """Register ``obj``; returns ``(new_id, ids_evicted_to_make_room)``."""
        with self._lock:
            while True:
                new_id = self.prefix + secrets.token_hex(6)
                if new_id not in self._items:
                    break
            self._items[new_id] = obj
            evicted: list[str] = []
            if self.max_items is not None:
                for key in list(self._items):
                    if len(self._items) <= self.max_items:
                        break
                    if key != new_id and self._evictable(self._items[key]):
                        del self._items[key]
                        evicted.append(key)
            return new_id, evicted

    def get(self, item_id: str) -> T | None:
        """The object for ``item_id``, or None for an unknown or malformed ID."""
        if not isinstance(item_id, str) or not valid_id(item_id):
            return None
        with self._lock:
            return self._items.get(item_id)

    def remove(self, item_id: str) -> T | None:
        with self._lock:
            return self._items.pop(item_id, None)

    def items(self) -> list[tuple[str, T]]:
        with self._lock:
            return list(self._items.items())

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def __contains__(self, item_id: object) -> bool:
        with self._lock:
            return item_id in self._items
