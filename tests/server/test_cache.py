"""Byte-bounded LRU cache, single flight and the ID registry."""

from __future__ import annotations

import threading
import time

import numpy as np

from convscope.server.cache import ByteLRUCache, SingleFlight
from convscope.server.registry import IdRegistry, valid_id


def test_lru_evicts_least_recently_used_by_bytes() -> None:
    cache: ByteLRUCache[np.ndarray] = ByteLRUCache(max_bytes=300)
    a, b, c = (np.zeros(100, dtype=np.uint8) for _ in range(3))
    cache.put("a", a)
    cache.put("b", b)
    cache.put("c", c)
    assert cache.get("a") is a  # a is now the most recent
    cache.put("d", np.zeros(100, dtype=np.uint8))
    assert "b" not in cache and "a" in cache and "c" in cache and "d" in cache
    assert cache.nbytes == 300
    assert cache.stats()["evictions"] == 1


def test_lru_does_not_store_a_value_larger_than_the_budget() -> None:
    cache: ByteLRUCache[bytes] = ByteLRUCache(max_bytes=10)
    cache.put("small", b"12345")
    assert cache.put("big", b"x" * 11) is False
    assert "big" not in cache and "small" in cache


def test_lru_replacing_a_key_updates_the_size() -> None:
    cache: ByteLRUCache[bytes] = ByteLRUCache(max_bytes=100)
    cache.put("k", b"x" * 60)
    cache.put("k", b"x" * 10)
    assert cache.nbytes == 10 and len(cache) == 1


def test_lru_discard_where() -> None:
    cache: ByteLRUCache[bytes] = ByteLRUCache(max_bytes=100)
    cache.put(("act", "i1", "a"), b"1")
    cache.put(("act", "i2", "a"), b"2")
    assert cache.discard_where(lambda k: k[1] == "i1") == 1
    assert cache.keys() == [("act", "i2", "a")]


def test_lru_is_consistent_under_threads() -> None:
    cache: ByteLRUCache[bytes] = ByteLRUCache(max_bytes=1000)

    def work(seed: int) -> None:
        for i in range(300):
            cache.put((seed, i % 37), b"x" * ((i * seed) % 50 + 1))
            cache.get((seed, (i + 1) % 37))

    threads = [threading.Thread(target=work, args=(s,)) for s in range(1, 7)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert cache.nbytes <= 1000
    assert cache.nbytes == sum(len(cache.get(k) or b"") for k in cache.keys())


def test_single_flight_runs_one_computation_per_key() -> None:
    flights = SingleFlight()
    results: dict[str, int] = {}
    computed = []
    lock = threading.Lock()

    def get(key: str) -> int:
        if key in results:
            return results[key]
        with flights.hold(key):
            if key in results:
                return results[key]
            with lock:
                computed.append(key)
            time.sleep(0.05)
            results[key] = len(key)
            return results[key]

    threads = [threading.Thread(target=get, args=("same",)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert computed == ["same"]
    assert len(flights) == 0


def test_registry_hands_out_opaque_ids_and_forgets_oldest_evictable() -> None:
    registry: IdRegistry[str] = IdRegistry("i", max_items=3, evictable=lambda v: v.startswith("up"))
    keep, _ = registry.add("folder")
    first, _ = registry.add("up1")
    registry.add("up2")
    _new, evicted = registry.add("up3")
    assert evicted == [first]
    assert registry.get(keep) == "folder" and registry.get(first) is None
    assert valid_id(keep) and keep.startswith("i")


def test_registry_rejects_malformed_ids() -> None:
    registry: IdRegistry[str] = IdRegistry("i")
    for bad in ("../etc/passwd", "i/../x", "%2e%2e", "I123", "", "i" * 60, "i1.png"):
        assert registry.get(bad) is None
