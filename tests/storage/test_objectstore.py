from pathlib import Path

import pytest

from geoetl.errors import NotFound
from geoetl.storage.objectstore import ObjectStore, sha256_file


def test_local_store_round_trip(tmp_path: Path) -> None:
    store = ObjectStore((tmp_path / "root").as_uri())
    src = tmp_path / "a.bin"
    src.write_bytes(b"hello")
    store.put_file(src, "bronze/ab/a.bin")
    assert store.exists("bronze/ab/a.bin")
    assert store.size("bronze/ab/a.bin") == 5
    with store.open("bronze/ab/a.bin") as fh:
        assert fh.read() == b"hello"
    assert store.list("bronze") == ["bronze/ab/a.bin"]
    assert Path(store.gdal_path("bronze/ab/a.bin")).read_bytes() == b"hello"
    assert not list((tmp_path / "root" / "bronze" / "ab").glob("*.partial-*"))
    assert store.delete_prefix("bronze/ab") == 1
    assert not store.exists("bronze/ab/a.bin")
    with pytest.raises(NotFound):
        store.size("bronze/ab/a.bin")


def test_keys_stay_inside_zones(tmp_path: Path) -> None:
    store = ObjectStore(tmp_path.as_uri())
    with pytest.raises(ValueError, match="not in a zone"):
        store.exists("etc/passwd")
    with pytest.raises(ValueError, match="invalid object key"):
        store.exists("silver/../../etc/passwd")


def test_sha256(tmp_path: Path) -> None:
    p = tmp_path / "x"
    p.write_bytes(b"abc")
    assert sha256_file(p) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_content_addressed_put_stores_each_content_once(tmp_path: Path) -> None:
    store = ObjectStore((tmp_path / "root").as_uri())
    a = tmp_path / "a.tif"
    a.write_bytes(b"same bytes")
    key, digest = store.put_content_addressed(a)
    assert digest == sha256_file(a)
    assert key == f"bronze/{digest}/a.tif"
    again, _ = store.put_content_addressed(a)
    assert again == key
    assert store.list("bronze") == [key]
    assert store.list("tmp") == []  # staging copies never linger
    with store.open(key) as fh:
        assert fh.read() == b"same bytes"


def test_move_file_renames_into_a_local_store(tmp_path: Path) -> None:
    store = ObjectStore((tmp_path / "root").as_uri())
    src = tmp_path / "scratch" / "cog.tif"
    src.parent.mkdir()
    src.write_bytes(b"cog bytes")
    inode = src.stat().st_ino
    assert store.move_file(src, "tmp/job/cog.tif") == "tmp/job/cog.tif"
    assert not src.exists()
    moved = Path(store.gdal_path("tmp/job/cog.tif"))
    assert moved.read_bytes() == b"cog bytes"
    assert moved.stat().st_ino == inode  # renamed, not copied


def test_absolute_hrefs_map_back_to_keys(tmp_path: Path) -> None:
    store = ObjectStore(tmp_path.as_uri())
    assert store.key_of(f"{store.url}/silver/cogs/c/i.tif") == "silver/cogs/c/i.tif"
    assert store.key_of("silver/cogs/c/i.tif") == "silver/cogs/c/i.tif"
    assert store.key_of(f"{store.url}/../secret.tif") is None
    assert store.key_of(f"{store.url}/etc/passwd") is None
    assert store.key_of("file:///etc/passwd") is None
