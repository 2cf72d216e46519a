"""Storing a user's file in bronze: one read, a clone where possible, never a hard link."""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from geoetl.errors import InputError, TransientError
from geoetl.ingest import store_in_bronze
from geoetl.storage import base
from geoetl.storage.local import LocalStore
from geoetl.storage.objectstore import ObjectStore

# Several copy chunks and a ragged end: the loop's every path.
SIZE = 3 * base.COPY_CHUNK + 12_345


def _user_file(tmp_path: Path, name: str = "scene.tif") -> tuple[Path, bytes]:
    data = os.urandom(SIZE)
    path = tmp_path / "user" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path, data


def _stored(store: ObjectStore, key: str) -> bytes:
    with store.open(key) as fh:
        data: bytes = fh.read()
    return data


def test_bronze_copy_is_byte_identical_under_its_sha256(store: ObjectStore, tmp_path: Path) -> None:
    path, data = _user_file(tmp_path)
    key, digest = store.put_content_addressed(path)
    assert digest == hashlib.sha256(data).hexdigest()
    assert key == f"bronze/{digest}/scene.tif"
    assert _stored(store, key) == data
    assert store.list("tmp") == []


def test_editing_the_users_file_later_leaves_bronze_alone(tmp_path: Path) -> None:
    store = LocalStore(f"file://{tmp_path / 'store'}")
    path, data = _user_file(tmp_path)
    key = store_in_bronze(store, path)
    stored = Path(store.gdal_path(key))
    assert os.stat(path).st_nlink == 1  # no hard link to the user's file
    assert not os.path.samefile(path, stored)
    with path.open("r+b") as fh:  # edited in place, as an editor saving over it would
        fh.seek(1000)
        fh.write(b"EDITED" * 100)
    path.with_name("other.tif").write_bytes(b"x")
    assert stored.read_bytes() == data
    assert key.split("/")[1] == hashlib.sha256(stored.read_bytes()).hexdigest()


@contextmanager
def _ficlone_fails(code: int) -> Iterator[list[int]]:
    """FICLONE answering ``code`` (as on a file system without it); other ioctls as usual."""
    real = fcntl.ioctl
    asked: list[int] = []

    def ioctl(fd: int, request: int, arg: int = 0, *more: object) -> object:
        if request == base.FICLONE:
            asked.append(request)
            raise OSError(code, os.strerror(code))
        return real(fd, request, arg, *more)  # type: ignore[call-overload]

    fcntl.ioctl = ioctl  # type: ignore[assignment]
    try:
        yield asked
    finally:
        fcntl.ioctl = real


@pytest.mark.skipif(not hasattr(fcntl, "ioctl"), reason="no ioctl here")
@pytest.mark.parametrize("code", [errno.EOPNOTSUPP, errno.EXDEV, errno.EINVAL])
def test_without_a_clone_the_file_is_copied_and_hashed_in_one_pass(
    tmp_path: Path, code: int
) -> None:
    store = LocalStore(f"file://{tmp_path / 'store'}")
    path, data = _user_file(tmp_path)
    with _ficlone_fails(code) as asked:
        key, digest = store.put_content_addressed(path)
    assert asked  # the clone was tried first
    assert _stored(store, key) == data
    assert digest == hashlib.sha256(data).hexdigest()
    assert store.list("tmp") == []


def test_a_clone_or_a_copy_on_this_file_system(tmp_path: Path) -> None:
    """Whatever this file system offers (a clone on btrfs/XFS, a copy on ext4)."""
    path, data = _user_file(tmp_path)
    dst = tmp_path / "clone"
    with path.open("rb", buffering=0) as src, dst.open("xb", buffering=0) as out:
        cloned = base.clone_file(src, out)
        digest = base.sha256_file(dst) if cloned else base.copy_hashing(src, out)
    assert dst.read_bytes() == data
    assert digest == hashlib.sha256(data).hexdigest()


def test_a_failing_clone_is_a_storage_error_and_leaves_nothing(tmp_path: Path) -> None:
    store = LocalStore(f"file://{tmp_path / 'store'}")
    path, _data = _user_file(tmp_path)
    with _ficlone_fails(errno.EIO), pytest.raises(TransientError, match="could not store"):
        store.put_content_addressed(path)
    assert store.list("tmp") == []
    assert store.list("bronze") == []


@contextmanager
def _as_nobody() -> Iterator[None]:
    """Run as an unprivileged user for a moment (root reads every file)."""
    if os.geteuid() != 0:
        yield
        return
    os.seteuid(65534)
    try:
        yield
    finally:
        os.seteuid(0)


def test_an_unreadable_file_says_so(store: ObjectStore, tmp_path: Path) -> None:
    path, _data = _user_file(tmp_path)
    path.chmod(0)
    os.chmod(tmp_path, 0o755)  # the user (nobody) may look into the folders
    os.chmod(path.parent, 0o755)
    with _as_nobody(), pytest.raises(InputError, match=r"cannot be read \(permission denied\)"):
        store.put_content_addressed(path)
    assert store.list("bronze") == []


def test_a_missing_file_or_a_folder_says_so(tmp_path: Path) -> None:
    store = LocalStore(f"file://{tmp_path / 'store'}")
    with pytest.raises(InputError, match="does not exist"):
        store.put_content_addressed(tmp_path / "gone.tif")
    (tmp_path / "dir.tif").mkdir()
    with pytest.raises(InputError, match="is a folder"):
        store.put_content_addressed(tmp_path / "dir.tif")
