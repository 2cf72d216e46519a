"""The object store on a folder of this machine (``file:///…``)."""

from __future__ import annotations

import errno
import os
import shutil
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from fsspec.implementations.local import LocalFileSystem

from geoetl.errors import NotFound, TransientError
from geoetl.storage.base import (
    ObjectStore,
    Zone,
    check_name,
    clone_file,
    copy_hashing,
    open_source,
    sha256_file,
)


class LocalStore(ObjectStore):
    """Objects as files under a folder; writes land under a temporary name and are renamed."""

    is_local = True

    def __init__(self, url: str) -> None:
        root = url.split("://", 1)[1] if url.startswith("file://") else url
        super().__init__(url, LocalFileSystem(), root)
        Path(self.root).mkdir(parents=True, exist_ok=True)

    @contextmanager
    def _errors(self, key: str) -> Iterator[None]:
        try:
            yield
        except FileNotFoundError:
            raise NotFound(f"no object {key!r}") from None
        except OSError as exc:  # a full or failing disk: worth another attempt
            raise TransientError(f"could not store {key}: {exc}") from exc

    def gdal_path(self, key: str) -> str:
        """The object's file path."""
        return self._full(key)

    def ping(self) -> bool:
        """True when the root folder exists."""
        return Path(self.root).is_dir()

    def exists(self, key: str) -> bool:
        """True when ``key`` holds an object."""
        return Path(self._full(key)).exists()

    def size(self, key: str) -> int:
        """Size of the object in bytes."""
        with self._errors(key):
            return Path(self._full(key)).stat().st_size

    def modified(self, key: str) -> float:
        """When the object was last written (seconds since the epoch)."""
        with self._errors(key):
            return Path(self._full(key)).stat().st_mtime

    @contextmanager
    def open(self, key: str, mode: str = "rb") -> Iterator[IO[Any]]:
        """Open an object; a written one appears (renamed into place) when closed."""
        full = Path(self._full(key))
        if "w" not in mode:
            if not full.is_file():
                raise NotFound(f"no object {key!r}")
            with full.open(mode) as fh:
                yield fh
            return
        full.parent.mkdir(parents=True, exist_ok=True)
        if key.lstrip("/").startswith("tmp/"):
            # tmp/ objects (upload staging) are private to their writer: written in place,
            # so one cut off by a killed server is a file the janitor's sweep can see.
            with self._errors(key), full.open(mode) as fh:
                yield fh
            return
        partial = full.with_name(f"{full.name}.partial-{uuid.uuid4().hex[:8]}")
        try:
            with self._errors(key), partial.open(mode) as fh:
                yield fh
            partial.replace(full)
        finally:
            partial.unlink(missing_ok=True)

    def list(self, prefix: str) -> list[str]:
        """Keys under ``prefix``, sorted (files being written are left out)."""
        full = Path(self._full(prefix).rstrip("/"))
        if full.is_file():
            return [prefix]
        if not full.is_dir():
            return []
        found = [p for p in full.rglob("*") if p.is_file() and ".partial-" not in p.name]
        return sorted(p.relative_to(self.root).as_posix() for p in found)

    def local_copy(self, key: str, scratch_path: Path) -> Path:
        """The object's own file: nothing is copied."""
        full = Path(self._full(key))
        if not full.is_file():
            raise NotFound(f"no object {key!r}")
        return full

    def get_file(self, key: str, local: Path) -> Path:
        """Copy an object to ``local``."""
        local.parent.mkdir(parents=True, exist_ok=True)
        with self._errors(key):
            shutil.copyfile(self._full(key), local)
        return local

    def put_file(
        self,
        local: Path,
        key: str,
        *,
        if_absent: bool = False,
        metadata: Mapping[str, str] | None = None,
    ) -> bool:
        """Copy a local file to ``key`` under a temporary name, then rename it into place.

        With ``if_absent`` an existing object is kept (a hard link publishes the copy
        only where no file is).
        """
        full = Path(self._full(key))
        with self._errors(key):
            full.parent.mkdir(parents=True, exist_ok=True)
            partial = full.with_name(f"{full.name}.partial-{uuid.uuid4().hex[:8]}")
            try:
                shutil.copyfile(local, partial)
                _set_xattrs(partial, metadata)
                return self._publish(partial, full, if_absent)
            finally:
                partial.unlink(missing_ok=True)

    @staticmethod
    def _publish(partial: Path, full: Path, if_absent: bool) -> bool:
        if not if_absent:
            partial.replace(full)
            return True
        try:
            os.link(partial, full)
        except FileExistsError:
            return False
        return True

    def move_file(self, local: Path, key: str, *, metadata: Mapping[str, str] | None = None) -> str:
        """Move a local file (a finished output in scratch) to ``key``.

        On the same file system this is a rename, so a large COG is not copied again;
        otherwise the file is copied as by :meth:`put_file` and removed.
        """
        full = self._full(key)
        Path(full).parent.mkdir(parents=True, exist_ok=True)
        try:
            _set_xattrs(local, metadata)
            os.replace(local, full)
            return key
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise TransientError(f"could not store {key}: {exc}") from exc
        self.put_file(local, key, metadata=metadata)
        local.unlink(missing_ok=True)
        return key

    def metadata(self, key: str) -> dict[str, str]:
        """An object's metadata: its ``user.`` extended attributes (empty without)."""
        full = Path(self._full(key))
        with self._errors(key):
            try:
                names = os.listxattr(full)
            except OSError:
                return {}
            return {
                n.removeprefix(XATTR_PREFIX): os.getxattr(full, n).decode("utf-8", "replace")
                for n in names
                if n.startswith(XATTR_PREFIX)
            }

    def move(self, src: str, dst: str) -> str:
        """Rename an object."""
        full_src, full_dst = Path(self._full(src)), Path(self._full(dst))
        with self._errors(src):
            full_dst.parent.mkdir(parents=True, exist_ok=True)
            full_src.replace(full_dst)
        return dst

    def delete(self, key: str) -> bool:
        """Delete one object; False if there was none."""
        full = Path(self._full(key))
        if not full.is_file():
            return False
        full.unlink(missing_ok=True)
        return True

    def delete_prefix(self, prefix: str) -> int:
        """Delete every object under ``prefix``; returns how many."""
        keys = self.list(prefix)
        for key in keys:
            Path(self._full(key)).unlink(missing_ok=True)
        full = Path(self._full(prefix).rstrip("/"))
        if full.is_dir():
            shutil.rmtree(full, ignore_errors=True)
        return len(keys)

    def put_content_addressed(self, local: Path, zone: Zone = "bronze") -> tuple[str, str]:
        """Store a file at ``{zone}/{sha256}/{name}``; same content, same key.

        The user's file is read once: where the file system shares blocks between files
        (btrfs, XFS, …) the staging copy is a copy-on-write clone, hashed afterwards;
        elsewhere each chunk read is hashed and written in one pass
        (:func:`copy_hashing`). Never a hard link: editing the user's file later would
        change the stored object. The copy is then linked into place only if no object
        holds that content yet.
        """
        check_name(local.name)
        staging = Path(self._full(f"tmp/uploads/{uuid.uuid4().hex}"))
        with open_source(local) as src, self._errors(local.name):
            try:
                staging.parent.mkdir(parents=True, exist_ok=True)
                with staging.open("xb", buffering=0) as dst:
                    cloned = clone_file(src, dst)
                    hexdigest = sha256_file(staging) if cloned else copy_hashing(src, dst)
                key = f"{zone}/{hexdigest}/{local.name}"
                full = Path(self._full(key))
                full.parent.mkdir(parents=True, exist_ok=True)
                self._publish(staging, full, if_absent=True)
            finally:
                staging.unlink(missing_ok=True)
        return key, hexdigest


XATTR_PREFIX = "user."


def _set_xattrs(path: Path, metadata: Mapping[str, str] | None) -> None:
    """Object metadata as extended attributes; skipped where the file system has none."""
    for name, value in (metadata or {}).items():
        try:
            os.setxattr(path, XATTR_PREFIX + name, value.encode("utf-8"))
        except OSError:  # no user xattrs here (some tmpfs, network mounts): metadata is optional
            return
