"""The object store: zones (bronze, silver, tmp) over an fsspec filesystem."""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import IO, TYPE_CHECKING, Any, Literal

import fsspec
from fsspec.implementations.local import LocalFileSystem

from geoetl.errors import InputError, NotFound, TransientError

if TYPE_CHECKING:
    from geoetl.settings import Settings

Zone = Literal["bronze", "silver", "tmp"]
ZONES: tuple[Zone, ...] = ("bronze", "silver", "tmp")
_CHUNK = 8 * 1024 * 1024
# File systems cap a name at 255 bytes; leave room for a staging suffix.
MAX_NAME_BYTES = 200


def open_object_store(settings: Settings) -> ObjectStore:
    """The object store at ``settings.storage_url`` (``file://``, ``s3://``, ``az://``)."""
    assert settings.storage_url is not None
    return ObjectStore(settings.storage_url)


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's content (read into one reused buffer)."""
    digest = hashlib.sha256()
    buffer = bytearray(_CHUNK)
    view = memoryview(buffer)
    with path.open("rb", buffering=0) as fh:
        while size := fh.readinto(buffer):
            digest.update(view[:size])
    return digest.hexdigest()


class ObjectStore:
    """Objects addressed by keys like ``silver/cogs/c/i.tif`` under one root URL.

    ``file:///…`` works now; ``s3://`` and ``az://`` are the same code with another
    fsspec filesystem, and :meth:`gdal_path` gives GDAL a ``/vsis3/``-style path.
    """

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        fs, root = fsspec.core.url_to_fs(self.url)
        self.fs: fsspec.AbstractFileSystem = fs
        self.root = root.rstrip("/")
        self.protocol = url.split("://", 1)[0] if "://" in url else "file"
        if self.is_local:
            Path(self.root).mkdir(parents=True, exist_ok=True)

    @property
    def is_local(self) -> bool:
        """True for a folder on this machine."""
        return isinstance(self.fs, LocalFileSystem)

    def _full(self, key: str) -> str:
        key = key.lstrip("/")
        if not key or ".." in key.split("/"):
            raise ValueError(f"invalid object key {key!r}")
        if key.split("/", 1)[0] not in ZONES:
            raise ValueError(f"object key {key!r} is not in a zone ({', '.join(ZONES)})")
        return f"{self.root}/{key}"

    def put_file(self, local: Path, key: str) -> str:
        """Copy a local file to ``key``; readers never see a partial object."""
        full = self._full(key)
        try:
            if self.is_local:
                Path(full).parent.mkdir(parents=True, exist_ok=True)
                partial = f"{full}.partial-{uuid.uuid4().hex[:8]}"
                shutil.copyfile(local, partial)
                Path(partial).replace(full)
            else:
                self.fs.put_file(str(local), full)  # object stores publish on completion
        except OSError as exc:
            raise TransientError(f"could not store {key}: {exc}") from exc
        return key

    def move_file(self, local: Path, key: str) -> str:
        """Move a local file (a finished output in scratch) to ``key``.

        On a local store on the same file system this is a rename, so a large COG is
        not copied again; otherwise the file is copied as by :meth:`put_file` and removed.
        """
        full = self._full(key)
        if self.is_local:
            Path(full).parent.mkdir(parents=True, exist_ok=True)
            try:
                os.replace(local, full)
                return key
            except OSError as exc:
                if exc.errno != errno.EXDEV:
                    raise TransientError(f"could not store {key}: {exc}") from exc
        self.put_file(local, key)
        local.unlink(missing_ok=True)
        return key

    def put_content_addressed(self, local: Path, zone: Zone = "bronze") -> tuple[str, str]:
        """Store a file at ``{zone}/{sha256}/{name}``; same content, same key.

        Returns ``(key, sha256)``. The bytes go to a staging key, the hash is of what was
        stored, and the staging object is then moved into place (or dropped if the same
        content is already stored). On a local store the kernel copies the file
        (``copy_file_range``/``sendfile``) and the copy is hashed from the page cache:
        about 0.4 s for 268 MB against 0.85 s for a read-hash-write loop in Python.
        """
        if not self.is_local:
            upload = self.begin_upload(local.name, zone)
            try:
                with local.open("rb") as src:
                    while chunk := src.read(_CHUNK):
                        upload.write(chunk)
            except BaseException:
                upload.abort()
                raise
            return upload.commit()
        staging = f"tmp/uploads/{uuid.uuid4().hex}"
        try:
            full = Path(self._full(staging))
            full.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(local, full)
            hexdigest = sha256_file(full)
        except OSError as exc:
            self.delete(staging)
            raise TransientError(f"could not store {local.name}: {exc}") from exc
        return self._settle(staging, zone, hexdigest, local.name), hexdigest

    def begin_upload(self, name: str, zone: Zone = "bronze") -> Upload:
        """Receive a file piece by piece (an HTTP upload); see :class:`Upload`."""
        if not name or name != PurePosixPath(name).name or name in (".", ".."):
            raise InputError(f"invalid file name {name!r}: give a plain name like 'dem.tif'")
        if len(name.encode()) > MAX_NAME_BYTES:
            raise InputError(f"the file name is longer than {MAX_NAME_BYTES} bytes; shorten it")
        return Upload(self, name, zone)

    def _settle(self, staging: str, zone: Zone, hexdigest: str, name: str) -> str:
        """Move a staged object to its content-addressed key, or drop it if stored already."""
        key = f"{zone}/{hexdigest}/{name}"
        if self.exists(key):
            self.delete(staging)
        else:
            self.move(staging, key)
        return key

    def put_file_set(self, main: Path, sidecars: list[Path], zone: Zone = "bronze") -> str:
        """Store a file with its sidecars (a shapefile's .dbf, .shx, …) in one folder.

        The folder is named by a SHA-256 over every member's name and content hash,
        so changing any member gives a new key. Returns the main file's key.
        """
        members = sorted({main, *sidecars}, key=lambda p: p.name)
        digest = hashlib.sha256()
        for member in members:
            digest.update(f"{member.name}\0{sha256_file(member)}\n".encode())
        folder = f"{zone}/{digest.hexdigest()}"
        for member in members:
            key = f"{folder}/{member.name}"
            if not self.exists(key):
                self.put_file(member, key)
        return f"{folder}/{main.name}"

    def move(self, src: str, dst: str) -> str:
        """Move an object to another key (a rename on a local folder)."""
        full_src, full_dst = self._full(src), self._full(dst)
        if self.is_local:
            Path(full_dst).parent.mkdir(parents=True, exist_ok=True)
            Path(full_src).replace(full_dst)
        else:
            self.fs.mv(full_src, full_dst)
        return dst

    def local_copy(self, key: str, scratch_path: Path) -> Path:
        """A local file with the object's content: the file itself when the store is local."""
        full = self._full(key)
        if self.is_local:
            return Path(full)
        scratch_path.parent.mkdir(parents=True, exist_ok=True)
        self.fs.get_file(full, str(scratch_path))
        return scratch_path

    def exists(self, key: str) -> bool:
        """True when ``key`` holds an object."""
        return bool(self.fs.exists(self._full(key)))

    def modified(self, key: str) -> float:
        """When the object was last written (seconds since the epoch)."""
        full = self._full(key)
        try:
            if self.is_local:
                return Path(full).stat().st_mtime
            info = self.fs.info(full)
        except FileNotFoundError:
            raise NotFound(f"no object {key!r}") from None
        stamp = info.get("mtime") or info.get("LastModified") or info.get("last_modified")
        if isinstance(stamp, datetime):
            return stamp.timestamp()
        if stamp is None:
            raise ValueError(f"the store does not report when {key!r} was written")
        return float(stamp)

    def size(self, key: str) -> int:
        """Size of the object in bytes."""
        try:
            return int(self.fs.size(self._full(key)))
        except FileNotFoundError:
            raise NotFound(f"no object {key!r}") from None

    @contextmanager
    def open(self, key: str, mode: str = "rb") -> Iterator[IO[Any]]:
        """Open an object for reading (or writing, with ``mode='wb'``)."""
        full = self._full(key)
        if "r" in mode and not self.fs.exists(full):
            raise NotFound(f"no object {key!r}")
        if "w" in mode and self.is_local:
            Path(full).parent.mkdir(parents=True, exist_ok=True)
        with self.fs.open(full, mode) as fh:
            yield fh

    def list(self, prefix: str) -> list[str]:
        """Keys under ``prefix``, sorted."""
        full = self._full(prefix).rstrip("/")
        if not self.fs.exists(full):
            return []
        found = self.fs.find(full)
        return sorted(p[len(self.root) + 1 :] for p in found)

    def delete(self, key: str) -> bool:
        """Delete one object; False if there was none."""
        full = self._full(key)
        if not self.fs.exists(full):
            return False
        self.fs.rm(full)
        return True

    def delete_prefix(self, prefix: str) -> int:
        """Delete every object under ``prefix``; returns how many."""
        keys = self.list(prefix)
        for key in keys:
            self.fs.rm(self._full(key))
        full = self._full(prefix).rstrip("/")
        if self.is_local and Path(full).is_dir():
            shutil.rmtree(full, ignore_errors=True)
        return len(keys)

    def key_of(self, href: str) -> str | None:
        """The object key an asset href names, or None.

        A key itself, the store's URL and a key (pgSTAC items hold those), or the path
        (or GDAL path) of an object in this store, which is what vector items written
        before keys were stored hold.
        """
        if href.split("/", 1)[0] in ZONES:
            return href if ".." not in href.split("/") else None
        if href.startswith(f"{self.url}/"):  # an absolute href (what pgSTAC items carry)
            key = href[len(self.url) + 1 :]
            return self.key_of(key) if key.split("/", 1)[0] in ZONES else None
        for prefix in ("", "/vsis3/", "/vsiaz/", "/vsigs/"):
            root = f"{prefix}{self.root}/" if prefix else f"{self.root}/"
            if href.startswith(root):
                key = href[len(root) :]
                return self.key_of(key) if key.split("/", 1)[0] in ZONES else None
        return None

    def gdal_path(self, key: str) -> str:
        """A path GDAL opens directly: a file path, or ``/vsis3/``, ``/vsiaz/``."""
        full = self._full(key)
        if self.is_local:
            return full
        prefix = {"s3": "/vsis3", "az": "/vsiaz", "abfs": "/vsiaz", "gs": "/vsigs"}
        if self.protocol not in prefix:
            raise ValueError(f"GDAL cannot read objects over {self.protocol}://")
        return f"{prefix[self.protocol]}/{full}"


class Upload:
    """A file arriving in pieces: written to a staging object and hashed on the way.

    :meth:`commit` moves it to ``{zone}/{sha256}/{name}`` (the same content is stored
    once); :meth:`abort` deletes what arrived, so a broken upload leaves nothing behind.
    """

    def __init__(self, store: ObjectStore, name: str, zone: Zone) -> None:
        self.store, self.name, self.zone = store, name, zone
        self.staging = f"tmp/uploads/{uuid.uuid4().hex}"
        self.size = 0
        self._digest = hashlib.sha256()
        self._stack = ExitStack()
        try:
            self._fh = self._stack.enter_context(store.open(self.staging, "wb"))
        except OSError as exc:
            raise TransientError(f"could not store {name}: {exc}") from exc

    def write(self, chunk: bytes) -> None:
        """Append ``chunk``."""
        try:
            self._fh.write(chunk)
        except OSError as exc:
            raise TransientError(f"could not store {self.name}: {exc}") from exc
        self._digest.update(chunk)
        self.size += len(chunk)

    @property
    def hexdigest(self) -> str:
        """SHA-256 of what arrived so far."""
        return self._digest.hexdigest()

    def commit(self) -> tuple[str, str]:
        """Finish: ``(key, sha256)`` of the stored file."""
        try:
            self._stack.close()
        except OSError as exc:
            self.abort()
            raise TransientError(f"could not store {self.name}: {exc}") from exc
        hexdigest = self._digest.hexdigest()
        return self.store._settle(self.staging, self.zone, hexdigest, self.name), hexdigest

    def abort(self) -> None:
        """Drop what arrived."""
        with suppress(OSError):
            self._stack.close()
        with suppress(OSError):
            self.store.delete(self.staging)
