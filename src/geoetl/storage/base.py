"""The object store's interface and rules: keys, zones, content addressing, uploads.

Backends (``local.py``, ``s3.py``, ``azure.py``) wrap one fsspec filesystem each and
translate its errors: missing keys become :class:`~geoetl.errors.NotFound`, throttling,
timeouts and server faults :class:`~geoetl.errors.TransientError`. Everything else here
is shared: a key must lie in a zone and never climb out of the root, content-addressed
keys are written once (a conditional create), and an upload that fails leaves nothing.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import sys
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager, suppress
from datetime import datetime
from io import FileIO
from pathlib import Path, PurePosixPath
from typing import IO, Any, Literal, NamedTuple

import fsspec

from geoetl.errors import InputError, NotFound, TransientError

LINEAGE = "geoetl_lineage"
"""Object metadata naming the dataset version (lineage record) that wrote a silver object.

Letters and an underscore: a valid name on S3, Azure (C# identifiers) and as an extended
attribute. :meth:`ObjectStore.metadata` reads names back lowercase with ``-`` as ``_``.
"""

Zone = Literal["bronze", "silver", "tmp", "landing"]
ZONES: tuple[Zone, ...] = ("bronze", "silver", "tmp", "landing")
CHUNK = 8 * 1024 * 1024
# A copy's chunk: small enough to stay in the CPU cache between the hash and the write
# (8 MiB chunks measured no faster on 192 MB; docs/bench-ingestperf.md).
COPY_CHUNK = 256 * 1024
# File systems cap a name at 255 bytes; leave room for a staging suffix.
MAX_NAME_BYTES = 200
READ_AHEAD = 2 * 1024 * 1024
# GDAL's /vsi… prefix per URL scheme.
GDAL_PREFIXES = {"s3": "/vsis3", "az": "/vsiaz", "abfs": "/vsiaz", "gs": "/vsigs"}


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's content (read into one reused buffer)."""
    with path.open("rb", buffering=0) as fh:
        return sha256_of(fh)


def sha256_of(fh: FileIO) -> str:
    """Hex SHA-256 of what is left to read in ``fh``."""
    digest = hashlib.sha256()
    buffer = bytearray(CHUNK)
    view = memoryview(buffer)
    while size := fh.readinto(buffer):
        digest.update(view[:size])
    return digest.hexdigest()


# linux/fs.h: _IOW(0x94, 9, int), "share the blocks of the file given by descriptor".
FICLONE = 0x40049409


@contextmanager
def open_source(path: Path) -> Iterator[FileIO]:
    """Open a user's file to store it; an InputError saying why it cannot be read."""
    try:
        fh = path.open("rb", buffering=0)
    except FileNotFoundError:
        raise InputError(f"{path} does not exist: check the path") from None
    except IsADirectoryError:
        raise InputError(f"{path} is a folder, not a file") from None
    except PermissionError:
        raise InputError(
            f"{path} cannot be read (permission denied): make it readable by this user "
            "(e.g. chmod u+r) or ingest a copy"
        ) from None
    with fh:
        yield fh


def clone_file(src: FileIO, dst: FileIO) -> bool:
    """Make the empty file ``dst`` a copy-on-write clone of ``src``; False where impossible.

    Linux ``FICLONE``: the two files share blocks until either is written, so the copy
    costs no I/O and changes to one never show in the other. File systems without it
    (ext4, tmpfs), files on two file systems, other systems: False, and ``dst`` is
    left empty.
    """
    if not hasattr(fcntl, "ioctl") or not sys.platform.startswith("linux"):
        return False
    try:
        fcntl.ioctl(dst.fileno(), FICLONE, src.fileno())
    except OSError as exc:
        if exc.errno in _NO_CLONE:
            return False
        raise
    return True


# What FICLONE answers where it cannot clone: unsupported, across file systems, not a
# regular file or unaligned, no such ioctl (ENOTTY), a file system refusing it (EPERM).
_NO_CLONE = frozenset(
    {errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV, errno.EINVAL, errno.ENOTTY, errno.EPERM}
    | ({errno.ENOSYS} if hasattr(errno, "ENOSYS") else set())
)


def copy_hashing(src: FileIO, dst: FileIO) -> str:
    """Copy ``src`` to ``dst`` from where they are, hashing each chunk on the way.

    One read of the source: the bytes written are the bytes hashed. Returns the hex
    SHA-256.
    """
    digest = hashlib.sha256()
    buffer = bytearray(COPY_CHUNK)
    view = memoryview(buffer)
    while size := src.readinto(buffer):
        chunk = view[:size]
        digest.update(chunk)
        written = 0
        while written < size:
            written += dst.write(chunk[written:]) or 0
    return digest.hexdigest()


class ObjectInfo(NamedTuple):
    """An object as a listing shows it: key, size in bytes, last written (epoch seconds)."""

    key: str
    size: int
    modified: float


Listing = list[ObjectInfo]  # named here: ObjectStore.list hides the builtin in its class


def modified_of(info: dict[str, Any]) -> float | None:
    """When a listing's entry was last written (seconds since the epoch), or None.

    ``mtime`` on a folder, ``LastModified`` from s3fs, ``last_modified`` from adlfs.
    """
    stamp = info.get("mtime") or info.get("LastModified") or info.get("last_modified")
    if isinstance(stamp, datetime):
        return stamp.timestamp()
    if isinstance(stamp, str):
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    return None if stamp is None else float(stamp)


def causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and the exceptions it was raised from (``__cause__``/``__context__``)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


class ObjectStore:
    """Objects addressed by keys like ``silver/cogs/c/i.tif`` under one root URL.

    Subclasses give the filesystem (``fs``), GDAL's view of an object
    (:meth:`gdal_path`, :meth:`gdal_options`) and their error translation
    (:meth:`_errors`); they override an operation only where their store does it better
    (a rename on a folder, a conditional create on S3 and Azure).
    """

    is_local = False

    def __init__(self, url: str, fs: fsspec.AbstractFileSystem, root: str) -> None:
        self.url = url.rstrip("/")
        self.fs = fs
        self.root = root.rstrip("/")
        self.protocol = url.split("://", 1)[0] if "://" in url else "file"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"  # never the credentials

    # -- keys --------------------------------------------------------------------------

    def _full(self, key: str) -> str:
        key = key.lstrip("/")
        if not key or ".." in key.split("/") or "\x00" in key:
            raise ValueError(f"invalid object key {key!r}")
        if key.split("/", 1)[0] not in ZONES:
            raise ValueError(f"object key {key!r} is not in a zone ({', '.join(ZONES)})")
        return f"{self.root}/{key}"

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
        if self.protocol not in GDAL_PREFIXES:
            raise ValueError(f"GDAL cannot read objects over {self.protocol}://")
        return f"{GDAL_PREFIXES[self.protocol]}/{full}"

    def gdal_options(self) -> dict[str, str]:
        """GDAL configuration that reaches this store (credentials included).

        Apply it around one operation (``rasterio.Env``, :mod:`geoetl.gdalsafe`), never
        to the process environment; empty for a local folder.
        """
        return {}

    # -- errors ------------------------------------------------------------------------

    @contextmanager
    def _errors(self, key: str) -> Iterator[None]:
        """Translate the filesystem's errors for ``key`` (NotFound, TransientError)."""
        try:
            yield
        except FileNotFoundError:
            raise NotFound(f"no object {key!r}") from None

    def _secrets(self) -> list[str]:
        """Credential values that must never appear in a message."""
        return []

    def redact(self, text: str) -> str:
        """``text`` with this store's credentials replaced by ``***``."""
        for secret in self._secrets():
            if secret and len(secret) >= 4:
                text = text.replace(secret, "***")
        return text

    # -- reading -----------------------------------------------------------------------

    def exists(self, key: str) -> bool:
        """True when ``key`` holds an object."""
        full = self._full(key)
        with self._errors(key):
            return bool(self.fs.exists(full))

    def ping(self) -> bool:
        """True when the store answers (its root exists or may be written)."""
        with self._errors(""):
            return bool(self.fs.exists(self.root.split("/", 1)[0]))

    def size(self, key: str) -> int:
        """Size of the object in bytes."""
        full = self._full(key)
        with self._errors(key):
            return int(self.fs.size(full))

    def modified(self, key: str) -> float:
        """When the object was last written (seconds since the epoch)."""
        full = self._full(key)
        with self._errors(key):
            info = self.fs.info(full)
        stamp = modified_of(info)
        if stamp is None:
            raise ValueError(f"the store does not report when {key!r} was written")
        return stamp

    @contextmanager
    def open(self, key: str, mode: str = "rb") -> Iterator[IO[Any]]:
        """Open an object for reading (range reads on a remote store) or writing (``wb``).

        A written object appears when the file is closed (multipart on a remote store).
        """
        full = self._full(key)
        with self._errors(key):
            if "r" in mode and not self.fs.isfile(full):
                raise NotFound(f"no object {key!r}")
            # Reads fetch 2 MiB ahead (a sniff, a parquet footer, a served range), not
            # a whole upload part; writes go out in the store's part size.
            size = READ_AHEAD if "r" in mode else None
            fh = self.fs.open(full, mode, block_size=size) if size else self.fs.open(full, mode)
        try:
            yield fh
        except BaseException:
            if "w" in mode:
                self._discard(fh)
            else:
                fh.close()
            raise
        with self._errors(key):
            fh.close()

    def _discard(self, fh: IO[Any]) -> None:
        """Drop a file being written without publishing it."""
        with suppress(Exception):
            fh.discard()  # type: ignore[attr-defined]  # S3: abort the multipart upload
        # Closing would publish what was written (also from __del__): mark it closed.
        with suppress(Exception):
            fh.closed = True  # type: ignore[misc]

    def list(self, prefix: str) -> list[str]:
        """Keys under ``prefix``, sorted."""
        full = self._full(prefix).rstrip("/")
        with self._errors(prefix):
            try:
                found = self.fs.find(full)
            except FileNotFoundError:
                return []
        return sorted(p[len(self.root) + 1 :] for p in found)

    def list_info(self, prefix: str) -> Listing:
        """Objects under ``prefix`` with their size and time, sorted by key.

        One listing (S3 and Azure return both facts with each name, so a million objects
        cost a thousand list requests, not a million HEADs). Files being written are
        listed too (a local ``.partial-`` name): one left behind by a killed writer ages
        like any other object, and whoever deletes by age judges it so. A name that is no
        valid key (outside the root, ``..``) is left out: no operation could reach it.
        """
        full = self._full(prefix).rstrip("/")
        with self._errors(prefix):
            try:
                found: dict[str, dict[str, Any]] | list[str] = self.fs.find(full, detail=True)
            except FileNotFoundError:
                return []
            if isinstance(found, list):  # adlfs answers a file's path without details
                found = {path: self.fs.info(path) for path in found}
        start = f"{self.root}/"
        listed: Listing = []
        for path, info in found.items():
            if info.get("type") == "directory" or not path.startswith(start):
                continue
            key = path[len(start) :]
            try:
                self._full(key)
            except ValueError:
                continue
            stamp = modified_of(info)
            if stamp is None:  # never seen on the three backends; ask for that one object
                stamp = self.modified(key)
            listed.append(ObjectInfo(key, int(info.get("size") or 0), stamp))
        return sorted(listed)

    def get_file(self, key: str, local: Path) -> Path:
        """Download an object to ``local`` (for what GDAL or pyogrio must read locally)."""
        full = self._full(key)
        local.parent.mkdir(parents=True, exist_ok=True)
        with self._errors(key):
            self.fs.get_file(full, str(local))
        return local

    def local_copy(self, key: str, scratch_path: Path) -> Path:
        """A local file with the object's content: the file itself when the store is local.

        On a remote store a file already at ``scratch_path`` with the object's size is
        reused (several tasks of one job on one machine need the same source).
        """
        if scratch_path.is_file() and scratch_path.stat().st_size == self.size(key):
            return scratch_path
        partial = scratch_path.with_name(f"{scratch_path.name}.partial-{uuid.uuid4().hex[:8]}")
        try:
            self.get_file(key, partial)
            partial.replace(scratch_path)
        finally:
            partial.unlink(missing_ok=True)
        return scratch_path

    # -- writing -----------------------------------------------------------------------

    def put_file(
        self,
        local: Path,
        key: str,
        *,
        if_absent: bool = False,
        metadata: Mapping[str, str] | None = None,
    ) -> bool:
        """Copy a local file to ``key``; readers never see a partial object.

        With ``if_absent`` an existing object is kept (a conditional create: content-
        addressed keys are written once). True when this call wrote the object.
        ``metadata`` (e.g. ``{LINEAGE: "collection/item@v2"}``) is stored with the object
        where the store keeps object metadata (S3 and Azure metadata, a folder's
        extended attributes).
        """
        full = self._full(key)
        try:
            with self._errors(key):
                self.fs.put_file(str(local), full, mode="create" if if_absent else "overwrite")
        except FileExistsError:
            return False
        return True

    def move_file(self, local: Path, key: str, *, metadata: Mapping[str, str] | None = None) -> str:
        """Move a local file (a finished output in scratch) to ``key``."""
        self.put_file(local, key, metadata=metadata)
        local.unlink(missing_ok=True)
        return key

    def metadata(self, key: str) -> dict[str, str]:
        """The metadata stored with an object (empty where the store keeps none)."""
        with self._errors(key):
            info = self.fs.info(self._full(key))
        found = info.get("Metadata") or info.get("metadata") or {}
        return meta_names(found)

    def move(self, src: str, dst: str) -> str:
        """Move an object to another key (a server-side copy on a remote store)."""
        full_src, full_dst = self._full(src), self._full(dst)
        with self._errors(src):
            self.fs.copy(full_src, full_dst)
        with self._errors(src):
            self.fs.rm_file(full_src)
        return dst

    def delete(self, key: str) -> bool:
        """Delete one object; False if there was none."""
        full = self._full(key)
        with self._errors(key):
            if not self.fs.isfile(full):
                return False
            self.fs.rm_file(full)
        return True

    def delete_prefix(self, prefix: str) -> int:
        """Delete every object under ``prefix``; returns how many."""
        keys = self.list(prefix)
        if keys:
            with self._errors(prefix):
                self.fs.rm([self._full(k) for k in keys])
        return len(keys)

    # -- content-addressed ---------------------------------------------------------------

    def put_content_addressed(self, local: Path, zone: Zone = "bronze") -> tuple[str, str]:
        """Store a file at ``{zone}/{sha256}/{name}``; same content, same key.

        Returns ``(key, sha256)``. The file is hashed, then uploaded (multipart when
        large) with a conditional create: an object already there is never rewritten.
        """
        check_name(local.name)
        with open_source(local) as fh:
            hexdigest = sha256_of(fh)
        key = f"{zone}/{hexdigest}/{local.name}"
        if not self.exists(key):
            self.put_file(local, key, if_absent=True)
        return key, hexdigest

    def begin_upload(self, name: str, zone: Zone = "bronze") -> Upload:
        """Receive a file piece by piece (an HTTP upload); see :class:`Upload`."""
        check_name(name)
        return Upload(self, name, zone)

    def _settle(self, staging: str, zone: Zone, hexdigest: str, name: str) -> str:
        """Move a staged object to its content-addressed key, or drop it if stored already."""
        key = f"{zone}/{hexdigest}/{name}"
        if self.exists(key):
            self.delete(staging)
        else:
            self.move(staging, key)
        return key

    def put_file_set(self, main: Path, sidecars: Sequence[Path], zone: Zone = "bronze") -> str:
        """Store a file with its sidecars (a shapefile's .dbf, .shx, …) in one folder.

        The folder is named by a SHA-256 over every member's name and content hash,
        so changing any member gives a new key. Returns the main file's key.
        """
        members = sorted({main, *sidecars}, key=lambda p: p.name)
        digest = hashlib.sha256()
        for member in members:
            with open_source(member) as fh:
                digest.update(f"{member.name}\0{sha256_of(fh)}\n".encode())
        folder = f"{zone}/{digest.hexdigest()}"
        for member in members:
            key = f"{folder}/{member.name}"
            if not self.exists(key):
                self.put_file(member, key, if_absent=True)
        return f"{folder}/{main.name}"


def meta_names(found: Mapping[str, Any]) -> dict[str, str]:
    """Metadata as geoetl names it: lowercase, ``-`` read as ``_`` (s3fs turns ``_`` to ``-``)."""
    return {str(k).lower().replace("-", "_"): str(v) for k, v in dict(found).items()}


def check_name(name: str) -> None:
    """InputError unless ``name`` is a plain file name geoetl can store."""
    if not name or name != PurePosixPath(name).name or name in (".", ".."):
        raise InputError(f"invalid file name {name!r}: give a plain name like 'dem.tif'")
    if len(name.encode()) > MAX_NAME_BYTES:
        raise InputError(f"the file name is longer than {MAX_NAME_BYTES} bytes; shorten it")


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
            raise TransientError(f"could not store {name}: {store.redact(str(exc))}") from exc

    def write(self, chunk: bytes) -> None:
        """Append ``chunk``."""
        try:
            self._fh.write(chunk)
        except OSError as exc:
            raise TransientError(
                f"could not store {self.name}: {self.store.redact(str(exc))}"
            ) from exc
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
        except (OSError, TransientError) as exc:
            self.abort()
            raise TransientError(
                f"could not store {self.name}: {self.store.redact(str(exc))}"
            ) from exc
        hexdigest = self._digest.hexdigest()
        return self.store._settle(self.staging, self.zone, hexdigest, self.name), hexdigest

    def abort(self) -> None:
        """Drop what arrived."""
        with suppress(Exception):  # the open() context discards an unfinished write
            self._stack.__exit__(InterruptedError, InterruptedError("upload aborted"), None)
        with suppress(Exception):
            self.store.delete(self.staging)
