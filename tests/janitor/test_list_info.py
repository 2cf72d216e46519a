"""``ObjectStore.list_info``: keys, sizes and times in one listing, on every backend."""

from __future__ import annotations

import time
from pathlib import Path

from geoetl.storage.objectstore import ObjectStore


def test_list_info_gives_size_and_time_of_each_object(store: ObjectStore, tmp_path: Path) -> None:
    start = time.time()
    for key, size in (
        ("silver/a/1.bin", 10),
        ("silver/a/b/2.bin", 2000),
        ("silver/ab/4.bin", 5),  # beside silver/a, not under it
        ("tmp/j/3.bin", 0),
    ):
        local = tmp_path / "f"
        local.write_bytes(b"x" * size)
        store.put_file(local, key)
    listed = store.list_info("silver/a")
    assert [(i.key, i.size) for i in listed] == [("silver/a/1.bin", 10), ("silver/a/b/2.bin", 2000)]
    assert [i.key for i in store.list_info("silver")] == [
        *(i.key for i in listed),
        "silver/ab/4.bin",
    ]
    for info in listed:
        assert abs(info.modified - store.modified(info.key)) < 1
        assert start - 60 < info.modified < time.time() + 60
    assert [i.key for i in store.list_info("silver/a/b")] == ["silver/a/b/2.bin"]
    assert [(i.key, i.size) for i in store.list_info("tmp")] == [("tmp/j/3.bin", 0)]
    assert store.list_info("bronze") == []
    assert store.list_info("silver/a/1.bin")[0].key == "silver/a/1.bin"
