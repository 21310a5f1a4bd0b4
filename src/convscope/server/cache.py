"""Thread-safe building blocks of the live viewer: a byte-bounded LRU cache and per-key single flight."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from typing import Any, Generic, TypeVar

import numpy as np

__all__ = ["ByteLRUCache", "SingleFlight", "nbytes_of"]

V = TypeVar("V")


def nbytes_of(value: Any) -> int:
    """Approximate memory of a cached value: arrays and bytes exactly, containers summed."""
    if isinstance(value, np.ndarray):
        return int(value.nbytes)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return len(value)
    if isinstance(value, str):
        return len(value)
    if isinstance(value, dict):
        return sum(nbytes_of(v) for v in value.values()) + 64 * len(value)
    if isinstance(value, (list, tuple)):
        return sum(nbytes_of(v) for v in value) + 16 * len(value)
    return 64


class ByteLRUCache(Generic[V]):
    """Least-recently-used cache bounded by the total size in bytes of its values.

    ``put`` evicts the least recently used entries until the new total fits ``max_bytes``. A value
    larger than ``max_bytes`` on its own is not stored (the caller keeps its reference).
    All methods are safe to call from several threads.

    Args:
        max_bytes: budget for the sum of ``nbytes`` of the stored values.
        size_of: how to measure a value (default :func:`nbytes_of`).
    """

    def __init__(self, max_bytes: int, size_of: Callable[[Any], int] = nbytes_of) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        self.max_bytes = int(max_bytes)
        self._size_of = size_of
        self._items: OrderedDict[Hashable, tuple[V, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        self.evictions = 0

    def get(self, key: Hashable, default: V | None = None) -> V | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                self.misses += 1
                return default
            self._items.move_to_end(key)
            self.hits += 1
            return item[0]

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._items

    def put(self, key: Hashable, value: V, nbytes: int | None = None) -> bool:
        """Store ``value``; returns False when it alone exceeds the budget (then it is not stored)."""
        size = int(self._size_of(value) if nbytes is None else nbytes)
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= old[1]
            if size > self.max_bytes:
                return False
            while self._items and self._bytes + size > self.max_bytes:
                _, (_, evicted) = self._items.popitem(last=False)
                self._bytes -= evicted
                self.evictions += 1
            self._items[key] = (value, size)
            self._bytes += size
            return True

    def pop(self, key: Hashable) -> V | None:
        with self._lock:
            item = self._items.pop(key, None)
            if item is None:
                return None
            self._bytes -= item[1]
            return item[0]

    def discard_where(self, predicate: Callable[[Hashable], bool]) -> int:
        """Remove every entry whose key satisfies ``predicate``; returns how many."""
        with self._lock:
            doomed = [k for k in self._items if predicate(k)]
            for key in doomed:
                self._bytes -= self._items.pop(key)[1]
            return len(doomed)

    @property
    def nbytes(self) -> int:
        with self._lock:
            return self._bytes

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def keys(self) -> list[Hashable]:
        with self._lock:
            return list(self._items)

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {
                "entries": len(self._items),
                "bytes": self._bytes,
                "max_bytes": self.max_bytes,
                "hits": self.hits,
                "misses": self.misses,
                "evictions": self.evictions,
            }


class SingleFlight:
    """One lock per key, created on demand and dropped when nobody holds or waits for it.

    ``with flights.hold(key): ...`` lets exactly one thread compute the value for ``key`` while
    others asking for the same key wait (and then find it in the cache).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._locks: dict[Hashable, list[Any]] = {}  # key -> [lock, users]

    @contextmanager
    def hold(self, key: Hashable) -> Iterator[None]:
        with self._lock:
            entry = self._locks.setdefault(key, [threading.Lock(), 0])
            entry[1] += 1
        try:
            with entry[0]:
                yield
        finally:
            with self._lock:
                entry[1] -= 1
                if entry[1] == 0:
                    self._locks.pop(key, None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._locks)
