"""BundleStore: one ``ray.put`` per bundle version, LRU bound, no pooling when disabled."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import ray

from rustybt_ray.cluster import BundleStore, WorkerPool, default_store
from rustybt_ray.data import Bundle


def modified(b: Bundle, factor: float) -> Bundle:
    """A copy of ``b`` with scaled prices: the same shape, different data, so a new version."""
    values = np.array(b.values[:5])
    values[:4] *= factor
    return Bundle(b.name, b.frequency, b.calendar, b.symbols, values)


def test_same_version_is_put_once(ray_local, demo):
    store = BundleStore()
    refs = {store.put(demo) for _ in range(20)}
    assert len(refs) == 1
    s = store.stats()
    assert (s["puts"], s["misses"], s["hits"], s["entries"]) == (1, 1, 19, 1)
    assert s["bytes"] == demo.nbytes
    assert dict(store.refs) == {demo.version: next(iter(refs))}
    assert store.bundle_connections[demo.version] == next(iter(refs))
    with pytest.raises(TypeError):
        store.refs["x"] = None  # a read-only view
    # The stored object is the bundle, data included.
    assert ray.get(next(iter(refs))).version == demo.version


def test_changed_data_gets_a_new_entry_never_the_stale_one(ray_local, demo):
    store = BundleStore()
    ref = store.put(demo)
    sliced = demo.slice("2015-01-01", "2016-12-31")
    changed = modified(demo, 1.01)
    assert len({demo.version, sliced.version, changed.version}) == 3
    ref_sliced, ref_changed = store.put(sliced), store.put(changed)
    assert len({ref, ref_sliced, ref_changed}) == 3
    assert store.stats()["puts"] == 3
    np.testing.assert_array_equal(ray.get(ref_changed).close, changed.close)
    assert not np.array_equal(ray.get(ref_changed).close, ray.get(ref).close, equal_nan=True)


def test_lru_bound(ray_local, demo):
    store = BundleStore(max_entries=2)
    a, b, c = demo, modified(demo, 1.5), modified(demo, 2.0)
    store.put(a)
    store.put(b)
    store.put(a)  # a is now the most recently used, so b goes first
    store.put(c)
    s = store.stats()
    assert (s["entries"], s["evictions"], s["puts"]) == (2, 1, 3)
    assert list(store.refs) == [a.version, c.version]
    store.put(b)  # evicted: put again
    assert store.stats()["puts"] == 4 and list(store.refs) == [c.version, b.version]
    assert store.release(c.version) and not store.release(c.version)
    store.clear()
    assert len(store) == 0


def test_disabled_store_pools_nothing(ray_local, demo):
    store = BundleStore(enabled=False)
    r1, r2 = store.put(demo), store.put(demo)
    assert r1 != r2  # two independent objects, each alive only while its caller holds it
    s = store.stats()
    assert (s["puts"], s["entries"], s["hits"]) == (2, 0, 0)
    assert dict(store.refs) == {}
    assert ray.get(r2).version == demo.version


def test_concurrent_puts_of_a_new_version_put_once(ray_local, demo):
    store = BundleStore()
    bundle = modified(demo, 3.0)
    refs: list = []
    start = threading.Barrier(8)

    def put() -> None:
        start.wait()
        refs.append(store.put(bundle))

    threads = [threading.Thread(target=put) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(refs)) == 1 and store.stats()["puts"] == 1


def test_two_pools_share_the_default_store(ray_local, demo):
    bundle = modified(demo, 4.0)  # a version no other test put in the process-wide store
    before = default_store().stats()["puts"]
    with WorkerPool(1) as p1, WorkerPool(1) as p2:
        assert p1.store is p2.store is default_store()
        refs = {p.store.put(bundle) for p in (p1, p2) for _ in range(3)}
    assert len(refs) == 1
    assert default_store().stats()["puts"] - before == 1
    assert bundle.version in default_store().refs
    default_store().release(bundle.version)
