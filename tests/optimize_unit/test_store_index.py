"""KeyIndex: the store's key index on disk answers exactly like a dict, keeps O(1) memory, merges in bounded chunks."""

from __future__ import annotations

import hashlib
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rustybt_ray.optimize import store_index
from rustybt_ray.optimize.store_index import KeyIndex


def digest(i: int) -> bytes:
    return hashlib.blake2b(str(i).encode(), digest_size=32).digest()


@pytest.fixture
def small_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    # Tiny blocks and merge chunks, so a few hundred keys cross every boundary the code has.
    monkeypatch.setattr(store_index, "_BLOCK", 4)
    monkeypatch.setattr(store_index, "_CHUNK", 16)
    monkeypatch.setattr(store_index, "_BULK", 300)


@settings(max_examples=40, deadline=None)
@given(ops=st.lists(st.tuples(st.integers(0, 300), st.integers(0, 10_000)), min_size=1, max_size=400),
       merge_every=st.integers(1, 50), on_disk=st.booleans())
def test_index_answers_like_a_dict(tmp_path_factory: pytest.TempPathFactory, ops: list[tuple[int, int]],
                                   merge_every: int, on_disk: bool) -> None:
    old = store_index._BLOCK, store_index._CHUNK
    store_index._BLOCK, store_index._CHUNK = 4, 16
    try:
        path = tmp_path_factory.mktemp("idx") / "keys.index" if on_disk else None
        index = KeyIndex(merge_every, path)
        reference: dict[bytes, int] = {}
        for key, row in ops:
            index.add(digest(key), row)
            reference[digest(key)] = row  # a later row wins
        for key in range(0, 320):
            assert index.find(digest(key)) == reference.get(digest(key))
        index.merge()
        assert len(index) == len(reference)
        for key in range(0, 320):
            assert index.find(digest(key)) == reference.get(digest(key))
        if on_disk:
            assert path.stat().st_size == 40 * len(reference)
    finally:
        store_index._BLOCK, store_index._CHUNK = old


def test_keys_with_trailing_nul_bytes_are_found(tmp_path, small_blocks) -> None:
    keys = [bytes([i]) * 31 + b"\0" for i in range(1, 60)] + [b"\0" * 32, b"a" + b"\0" * 31]
    index = KeyIndex(7, tmp_path / "k")
    for row, k in enumerate(keys):
        index.add(k, row)
    index.merge()
    assert [index.find(k) for k in keys] == list(range(len(keys)))
    assert index.find(b"\x01" * 32) is None


def test_bulk_load_keeps_the_latest_row_and_matches_adds(tmp_path, small_blocks) -> None:
    rng = np.random.default_rng(1)
    ids = rng.integers(0, 500, 2000)
    keys = np.array([digest(int(i)) for i in ids], dtype="S32")
    rows = np.arange(len(ids), dtype=np.int64)
    shards = [(keys[a:a + 137], rows[a:a + 137]) for a in range(0, len(ids), 137)]
    index = KeyIndex.from_arrays([k for k, _ in shards], [r for _, r in shards], 100, tmp_path / "k")
    latest = {int(i): r for r, i in enumerate(ids)}
    assert len(index) == len(latest)
    for i, r in latest.items():
        assert index.find(digest(i)) == r
    # Keys added one by one after the bulk load override it (a rerun of a lost trial).
    index.add(digest(int(ids[0])), 99_999)
    assert index.find(digest(int(ids[0]))) == 99_999
    index.merge()
    assert index.find(digest(int(ids[0]))) == 99_999


def test_memory_stays_the_fence_only(tmp_path) -> None:
    n = 300_000
    index = KeyIndex(65_536, tmp_path / "k")
    for i in range(n):
        index.add(digest(i), i)
    index.merge()
    # 40 bytes a key on disk; in memory one 32-byte key per block of 256 (0.125 bytes a key).
    assert os.path.getsize(tmp_path / "k") == 40 * n
    assert index.nbytes <= 32 * (n // 256 + 1)
    sample = np.random.default_rng(0).integers(0, n, 2000)
    assert all(index.find(digest(int(i))) == int(i) for i in sample)
    assert index.find(digest(n + 1)) is None
