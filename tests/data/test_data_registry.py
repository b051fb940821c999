"""The bundle registry: names, listing, loading, removal, caching and crash safety."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from bundle_testkit import ROWS

from rustybt_ray.data import bundle_root, ingest_bundle, list_bundles, load_bundle, remove_bundle
from rustybt_ray.data.registry import CURRENT_FILE
from rustybt_ray.errors import BundleError, BundleNameError, BundleNotFoundError

OTHER = {"ZZZ": ["2024-02-01,1.0,2.0,0.5,1.5,10", "2024-02-02,1.5,2.5,1.0,2.0,20"]}


def test_env_root_is_respected(csv_dir: Path, bundle_root: Path) -> None:
    info = ingest_bundle("tiny", csv_dir)
    assert info.path.parent == bundle_root / "tiny"
    assert (bundle_root / "tiny" / CURRENT_FILE).is_file()


def test_explicit_root_beats_env(csv_dir: Path, tmp_path: Path) -> None:
    other = tmp_path / "elsewhere"
    ingest_bundle("tiny", csv_dir, root=other)
    assert [b.name for b in list_bundles(root=other)] == ["tiny"]
    assert list_bundles() == []
    assert load_bundle("tiny", root=other).symbols == ["AAA", "BBB", "CCC"]


def test_default_root_without_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("RUSTYBT_BUNDLE_ROOT")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert bundle_root() == tmp_path / ".rustybt_ray" / "bundles"


def test_list_load_remove(csv_dir: Path, make_csv_dir) -> None:
    ingest_bundle("b_one", csv_dir)
    ingest_bundle("a.two-2", make_csv_dir(OTHER))
    infos = list_bundles()
    assert [i.name for i in infos] == ["a.two-2", "b_one"]
    assert infos[1].symbols == ("AAA", "BBB", "CCC") and infos[1].rows == 10
    remove_bundle("b_one")
    assert [i.name for i in list_bundles()] == ["a.two-2"]
    with pytest.raises(BundleNotFoundError):
        load_bundle("b_one")
    with pytest.raises(BundleNotFoundError):
        remove_bundle("b_one")


@pytest.mark.parametrize("name", ["../x", "a/b", ".", "..", "", ".hidden", "a b", "x\\y", "é"])
def test_bad_names_are_rejected(name: str, csv_dir: Path) -> None:
    with pytest.raises(BundleNameError, match=r"letters, digits, '_', '-' and '\.'"):
        ingest_bundle(name, csv_dir)
    with pytest.raises(BundleError):
        remove_bundle(name)


def test_demo_name_is_reserved(csv_dir: Path) -> None:
    with pytest.raises(BundleNameError, match="built-in demo"):
        ingest_bundle("demo", csv_dir)


def test_not_found_lists_registered_names(csv_dir: Path, make_csv_dir) -> None:
    ingest_bundle("alpha", csv_dir)
    ingest_bundle("beta", make_csv_dir(OTHER))
    with pytest.raises(BundleNotFoundError) as err:
        load_bundle("gamma")
    message = str(err.value)
    assert "'gamma'" in message and "alpha, beta" in message and "ingest_bundle('gamma', source)" in message


def test_not_found_with_empty_registry() -> None:
    with pytest.raises(BundleNotFoundError, match="registered bundles: none"):
        load_bundle("nothing")


def test_path_that_is_not_a_bundle(tmp_path: Path) -> None:
    with pytest.raises(BundleNotFoundError, match="is not a bundle directory"):
        load_bundle(tmp_path)


def test_reingest_replaces_and_collects_old_versions(csv_dir: Path, make_csv_dir, bundle_root: Path) -> None:
    first = ingest_bundle("x", csv_dir)
    assert load_bundle("x").symbols == ["AAA", "BBB", "CCC"]
    second = ingest_bundle("x", make_csv_dir(OTHER))
    assert load_bundle("x").symbols == ["ZZZ"]  # the cache sees the new sha
    assert not first.path.exists()
    assert sorted(p.name for p in (bundle_root / "x").iterdir()) == sorted([CURRENT_FILE, second.path.name])


def test_cache_returns_same_object_and_rereads_changes(csv_dir: Path, make_csv_dir) -> None:
    ingest_bundle("x", csv_dir)
    a = load_bundle("x")
    assert load_bundle("x") is a
    assert load_bundle("x", cache=False) is not a
    ingest_bundle("x", make_csv_dir({"AAA": ROWS["AAA"]}))
    b = load_bundle("x")
    assert b is not a and b.symbols == ["AAA"]


def test_damaged_data_is_detected(csv_dir: Path) -> None:
    info = ingest_bundle("x", csv_dir)
    data = info.path / "data.parquet"
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    data.write_bytes(bytes(raw))
    with pytest.raises(BundleError, match="is damaged"):
        load_bundle("x", cache=False)


def test_failed_ingest_keeps_old_bundle(csv_dir: Path, make_csv_dir, bundle_root: Path) -> None:
    ingest_bundle("x", csv_dir)
    before = load_bundle("x", cache=False)
    seen: list[Path] = []

    def crash(tmp: Path) -> None:
        seen.append(tmp)
        assert (tmp / "data.parquet").is_file() and (tmp / "manifest.json").is_file()
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        ingest_bundle("x", make_csv_dir(OTHER), before_commit=crash)
    assert not seen[0].exists()
    after = load_bundle("x", cache=False)
    np.testing.assert_array_equal(after.values, before.values)
    assert after.version == before.version
    assert [i.name for i in list_bundles()] == ["x"]
    assert all(not p.name.startswith(".") for p in (bundle_root / "x").iterdir())


def test_failed_first_ingest_leaves_no_bundle(make_csv_dir, bundle_root: Path) -> None:
    def crash(tmp: Path) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ingest_bundle("fresh", make_csv_dir(OTHER), before_commit=crash)
    assert list_bundles() == []
    assert not (bundle_root / "fresh").exists()
    with pytest.raises(BundleNotFoundError):
        load_bundle("fresh")


_KILL_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import numpy as np
    import polars as pl
    from rustybt_ray.data import ingest_bundle

    marker = Path(sys.argv[1])
    # 40 symbols x 5000 days: big enough that the writer is clearly mid-flight when killed.
    days = np.datetime64("1990-01-01") + np.arange(5000)
    symbols = [f"S{i:02d}" for i in range(40)]
    frame = pl.DataFrame({"date": np.tile(days, 40), "symbol": np.repeat(symbols, 5000), "open": 2.0,
                          "high": 3.0, "low": 1.0, "close": 2.0, "volume": 1.0})

    def hang(tmp):
        marker.write_text(str(tmp))
        time.sleep(60)

    ingest_bundle("x", frame, before_commit=hang)
    """
)


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
def test_sigkill_mid_ingest_keeps_old_bundle(csv_dir: Path, tmp_path: Path, bundle_root: Path) -> None:
    ingest_bundle("x", csv_dir)
    before = load_bundle("x", cache=False)
    marker = tmp_path / "writing"
    script = tmp_path / "ingest_big.py"
    script.write_text(_KILL_SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script), str(marker)], env=dict(os.environ))
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert proc.poll() is None, "ingest subprocess died early"
            assert time.monotonic() < deadline, "ingest subprocess never reached the write"
            time.sleep(0.05)
        tmp_dir = Path(marker.read_text())
        assert tmp_dir.is_dir()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    after = load_bundle("x", cache=False)
    np.testing.assert_array_equal(after.values, before.values)
    assert [i.name for i in list_bundles()] == ["x"]
    # The dead writer's temporary directory is invisible, and the next ingest removes it.
    ingest_bundle("x", csv_dir)
    assert not tmp_dir.exists()
    assert [i.name for i in list_bundles()] == ["x"]


def test_remove_forgets_cached_bundle(csv_dir: Path, make_csv_dir) -> None:
    ingest_bundle("x", csv_dir)
    load_bundle("x")
    remove_bundle("x")
    with pytest.raises(BundleNotFoundError):
        load_bundle("x")
    ingest_bundle("x", make_csv_dir(OTHER))
    assert load_bundle("x").symbols == ["ZZZ"]


def test_bundle_info_is_its_manifest_plus_location(tmp_path):
    import json

    from rustybt_ray.data import ingest_bundle, load_bundle
    from rustybt_ray.data.storage import read_manifest

    frame = load_bundle("demo").slice("2024-01-01", "2024-02-29").to_long_frame()
    info = ingest_bundle("info_check", frame, root=tmp_path)
    manifest = read_manifest(info.path)
    assert json.loads(info.to_json()) == json.loads(manifest.to_json())  # path and dropped are not manifest facts
    assert info.path.is_dir() and info.sha256 == load_bundle("info_check", root=tmp_path).version
