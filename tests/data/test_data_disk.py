"""The registry against a real file system: long names, damaged bundles, modes, and OS errors as typed errors."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from rustybt_ray.app.cli import main
from rustybt_ray.data import bundle_info, ingest_bundle, list_bundles, load_bundle, remove_bundle
from rustybt_ray.data.registry import CURRENT_FILE, MAX_NAME_LENGTH
from rustybt_ray.errors import BundleError, BundleNameError, OutputError

# -- issue 9, defect 3: names longer than the file system allows ---------------------


@pytest.mark.parametrize("length", [MAX_NAME_LENGTH + 1, 300, 5000])
def test_overlong_names_are_refused_before_touching_disk(length: int, csv_dir: Path, bundle_root: Path) -> None:
    name = "a" * length
    for call in (lambda: ingest_bundle(name, csv_dir), lambda: load_bundle(name), lambda: remove_bundle(name),
                 lambda: bundle_info(name)):
        with pytest.raises(BundleNameError, match=f"at most {MAX_NAME_LENGTH} characters"):
            call()
    assert not bundle_root.exists()


def test_longest_allowed_name_works(csv_dir: Path) -> None:
    name = "n" * MAX_NAME_LENGTH
    ingest_bundle(name, csv_dir)
    assert load_bundle(name).symbols == ["AAA", "BBB", "CCC"]
    assert [b.name for b in list_bundles()] == [name]
    remove_bundle(name)
    assert list_bundles() == []


def test_overlong_path_is_not_a_bundle(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="is not a bundle directory"):
        load_bundle(tmp_path / ("p" * 300))


# -- issue 9, defect 8: damaged bundles are listed as damaged ------------------------


def _version_dir(bundle_root: Path, name: str) -> Path:
    return bundle_root / name / (bundle_root / name / CURRENT_FILE).read_text().strip()


@pytest.mark.parametrize(
    ("damage", "words"),
    [
        (lambda d: (d / "manifest.json").write_text("{not json"), "is not a valid bundle manifest"),
        (lambda d: (d / "manifest.json").write_text("[1, 2]"), "is not a valid bundle manifest"),
        (lambda d: (d / "manifest.json").write_bytes(b"\xff\xfe\x00"), "not UTF-8"),
        (lambda d: (d / "manifest.json").unlink(), "has no manifest.json"),
        (lambda d: (d.parent / CURRENT_FILE).write_text("../elsewhere\n"), "CURRENT is damaged"),
    ],
    ids=["bad_json", "json_list", "binary", "no_manifest", "bad_current"],
)
def test_damaged_bundle_is_listed_as_damaged(damage, words: str, csv_dir: Path, bundle_root: Path) -> None:
    ingest_bundle("good", csv_dir)
    ingest_bundle("hurt", csv_dir)
    damage(_version_dir(bundle_root, "hurt"))
    infos = list_bundles()
    assert [(i.name, i.damaged) for i in infos] == [("good", False), ("hurt", True)]
    hurt = infos[1]
    assert words in hurt.problem and hurt.symbols == () and hurt.rows == 0
    assert infos[0].problem is None and infos[0].rows == 10
    with pytest.raises(BundleError):
        load_bundle("hurt", cache=False)
    # Both ways out work on a damaged bundle: re-ingest, and remove.
    ingest_bundle("hurt", csv_dir)
    assert not any(i.damaged for i in list_bundles())
    damage(_version_dir(bundle_root, "hurt"))
    remove_bundle("hurt")
    assert [i.name for i in list_bundles()] == ["good"]


def test_cli_bundles_shows_damaged_bundle_and_the_fix(csv_dir: Path, bundle_root: Path, capsys) -> None:
    ingest_bundle("good", csv_dir)
    ingest_bundle("hurt", csv_dir)
    (_version_dir(bundle_root, "hurt") / "manifest.json").write_text("{")
    assert main(["bundles"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[:2] == ["demo (built in)", "good  1d  3 symbols  10 rows"] and len(out) == 4
    assert out[2].startswith("hurt  DAMAGED: ") and "manifest.json is not a valid bundle manifest" in out[2]
    assert "re-ingest it (rustybt-ray ingest hurt" in out[3] and f"rm -r {bundle_root / 'hurt'}" in out[3]


def test_cli_refuses_overlong_name_in_one_line(csv_dir: Path, capsys) -> None:
    assert main(["ingest", "x" * 300, "--csv-dir", str(csv_dir)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "at most 200 characters" in err and "Traceback" not in err


# -- issue 9, defect 7: modes ---------------------------------------------------------


@pytest.fixture
def umask() -> Iterator[None]:
    old = os.umask(0o022)
    os.umask(old)
    yield
    os.umask(old)


@pytest.mark.usefixtures("umask")
@pytest.mark.parametrize(("mask", "file_mode", "dir_mode"), [(0o022, 0o644, 0o755), (0o002, 0o664, 0o775),
                                                               (0o077, 0o600, 0o700)])
def test_bundle_files_get_the_umask_modes(mask: int, file_mode: int, dir_mode: int, csv_dir: Path,
                                          bundle_root: Path) -> None:
    os.umask(mask)
    ingest_bundle("x", csv_dir)
    info = ingest_bundle("x", csv_dir)  # a re-ingest rewrites CURRENT
    modes = {p.name: p.stat().st_mode & 0o777 for p in [info.path, info.path.parent]}
    modes.update({p.name: p.stat().st_mode & 0o777 for p in [*info.path.iterdir(), info.path.parent / CURRENT_FILE]})
    assert modes == {info.path.name: dir_mode, "x": dir_mode, "data.parquet": file_mode,
                     "manifest.json": file_mode, CURRENT_FILE: file_mode}
    assert sorted(p.name for p in info.path.parent.iterdir()) == sorted([CURRENT_FILE, info.path.name])


# -- issue 9, defect 3: OS errors become typed errors naming the path -----------------


def test_root_below_a_regular_file(csv_dir: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    with pytest.raises(OutputError, match=f"{blocker}/bundles/x.*regular file"):
        ingest_bundle("x", csv_dir, root=blocker / "bundles")
    assert blocker.read_text() == "not a directory"
    assert list_bundles(root=blocker / "bundles") == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores permissions")
def test_root_without_permission(csv_dir: Path, tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    try:
        with pytest.raises(OutputError, match=str(locked)):
            ingest_bundle("x", csv_dir, root=locked)
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o755)


_FULL_DISK = textwrap.dedent(
    """
    import resource, signal, sys
    import numpy as np
    import polars as pl
    from rustybt_ray.data import ingest_bundle
    from rustybt_ray.errors import RustyBTError

    days = np.datetime64("2000-01-01") + np.arange(3000)
    frame = pl.DataFrame({"date": np.tile(days, 4), "symbol": np.repeat(["A", "B", "C", "D"], 3000),
                          "open": 2.0, "high": 3.0, "low": 1.0, "close": np.linspace(1, 3, 12000),
                          "volume": 1.0})
    # A file size limit makes write() fail with EFBIG, as a full disk fails it with ENOSPC.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (8192, 8192))
    try:
        ingest_bundle("x", frame)
    except RustyBTError as exc:
        print(type(exc).__name__, exc)
        sys.exit(3)
    """
)


@pytest.mark.skipif(not hasattr(resource, "RLIMIT_FSIZE"), reason="needs RLIMIT_FSIZE")
def test_full_disk_names_the_file_and_keeps_the_old_bundle(csv_dir: Path, tmp_path: Path,
                                                           bundle_root: Path) -> None:
    ingest_bundle("x", csv_dir)
    before = load_bundle("x", cache=False)
    script = tmp_path / "full_disk.py"
    script.write_text(_FULL_DISK)
    proc = subprocess.run([sys.executable, str(script)], env=dict(os.environ), capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 3, proc.stderr
    assert proc.stdout.startswith("OutputError cannot write ") and "data.parquet" in proc.stdout
    assert "File too large" in proc.stdout
    after = load_bundle("x", cache=False)
    np.testing.assert_array_equal(after.values, before.values)
    live = (bundle_root / "x" / CURRENT_FILE).read_text().strip()
    assert sorted(p.name for p in (bundle_root / "x").iterdir()) == sorted([CURRENT_FILE, live])


def test_full_disk_on_first_ingest_leaves_nothing(tmp_path: Path, bundle_root: Path) -> None:
    script = tmp_path / "full_disk.py"
    script.write_text(_FULL_DISK)
    proc = subprocess.run([sys.executable, str(script)], env=dict(os.environ), capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 3, proc.stderr
    assert "data.parquet" in proc.stdout
    assert not (bundle_root / "x").exists()
    assert list_bundles() == []



def test_overlong_source_path_is_a_bundle_error(tmp_path: Path, bundle_root: Path) -> None:
    source = tmp_path / ("s" * 300)
    with pytest.raises(BundleError, match="cannot read source .*File name too long"):
        ingest_bundle("x", source)
    assert not bundle_root.exists()


def test_failed_switch_of_current_leaves_no_version_behind(csv_dir: Path, bundle_root: Path) -> None:
    (bundle_root / "x" / CURRENT_FILE).mkdir(parents=True)  # os.replace cannot put a file over it
    with pytest.raises(OutputError, match=f"cannot write {bundle_root / 'x' / CURRENT_FILE}"):
        ingest_bundle("x", csv_dir)
    assert [p.name for p in (bundle_root / "x").iterdir()] == [CURRENT_FILE]
    assert list((bundle_root / "x" / CURRENT_FILE).iterdir()) == []
