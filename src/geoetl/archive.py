"""Unpack uploaded archives safely: no path escapes, bounded size, no resource forks.

Shared by the vector pipeline (a zipped shapefile, a .gdb) and the raster pipeline (a
raster with its sidecar files); ``geoetl.vector.archive`` re-exports these names.

Limits hold per member and for the whole archive: members, unpacked bytes, compression
ratio (a member over :data:`RATIO_FLOOR_BYTES` may not expand more than
:data:`MAX_RATIO` times: text and GIS data compress 5-20x, a zip bomb thousands of
times), and no archive is unpacked from inside another. The sizes the headers declare
are checked first; the copy then stops at the declared size, as headers can lie.
"""

from __future__ import annotations

import zipfile
from pathlib import Path, PurePosixPath

from geoetl.errors import InputError

MAX_TOTAL_BYTES = 20 * 1024**3  # 20 GiB unpacked, all members
MAX_MEMBER_BYTES = 10 * 1024**3  # 10 GiB unpacked, one member
MAX_RATIO = 100  # unpacked / packed, per member and overall
RATIO_FLOOR_BYTES = 1024 * 1024  # members (and archives) up to 1 MiB unpacked: any ratio
MAX_MEMBERS = 10_000
IGNORED_PREFIXES = ("__MACOSX/",)
# Archives are not unpacked from inside archives. A .kmz is a dataset (GDAL reads it
# itself), checked with the same limits by check_archive.
NESTED_ARCHIVE_SUFFIXES = (".zip", ".7z", ".rar", ".tar", ".gz", ".tgz", ".bz2", ".xz", ".zst")
_ENCRYPTED = 0x1
_COPY_BYTES = 1024 * 1024


def _ignored(name: str) -> bool:
    base = PurePosixPath(name).name
    return name.startswith(IGNORED_PREFIXES) or base.startswith("._") or base == ".DS_Store"


def _open(archive: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise InputError(f"{archive.name} is not a readable zip archive ({exc})") from None


def _check_members(
    archive: Path,
    members: list[zipfile.ZipInfo],
    *,
    max_total_bytes: int,
    max_member_bytes: int,
    max_ratio: float,
    max_members: int,
) -> None:
    name = archive.name
    if len(members) > max_members:
        raise InputError(
            f"{name} holds {len(members):,} files; geoetl unpacks at most {max_members:,}"
        )
    bomb = "which looks like a zip bomb; upload the files uncompressed or in smaller archives"
    for member in members:
        if member.flag_bits & _ENCRYPTED:
            raise InputError(
                f"{name}: {member.filename!r} is encrypted; upload the archive without a password"
            )
        if member.file_size > max_member_bytes:
            raise InputError(
                f"{name}: {member.filename!r} unpacks to {member.file_size:,} bytes, over the "
                f"{max_member_bytes:,}-byte limit for one file"
            )
        ratio = member.file_size / max(1, member.compress_size)
        if member.file_size > RATIO_FLOOR_BYTES and ratio > max_ratio:
            raise InputError(
                f"{name}: {member.filename!r} expands {ratio:.0f}x when unpacked (at most "
                f"{max_ratio:.0f}x for files over 1 MiB), {bomb}"
            )
    total = sum(m.file_size for m in members)
    packed = max(1, sum(m.compress_size for m in members))
    if total > max_total_bytes:
        raise InputError(
            f"{name} unpacks to {total:,} bytes, over the {max_total_bytes:,}-byte limit"
        )
    if total > RATIO_FLOOR_BYTES and total / packed > max_ratio:
        raise InputError(
            f"{name} expands {total / packed:.0f}x when unpacked (at most {max_ratio:.0f}x), {bomb}"
        )


def check_archive(
    archive: Path,
    *,
    max_total_bytes: int = MAX_TOTAL_BYTES,
    max_member_bytes: int = MAX_MEMBER_BYTES,
    max_ratio: float = MAX_RATIO,
    max_members: int = MAX_MEMBERS,
) -> None:
    """Apply the archive limits to a zip GDAL unpacks itself (a .kmz), without unpacking."""
    with _open(archive) as zf:
        members = [m for m in zf.infolist() if not m.is_dir()]
        _check_members(
            archive,
            members,
            max_total_bytes=max_total_bytes,
            max_member_bytes=max_member_bytes,
            max_ratio=max_ratio,
            max_members=max_members,
        )


def member_names(
    archive: Path,
    *,
    max_total_bytes: int = MAX_TOTAL_BYTES,
    max_member_bytes: int = MAX_MEMBER_BYTES,
    max_ratio: float = MAX_RATIO,
    max_members: int = MAX_MEMBERS,
) -> list[str]:
    """The names of the files :func:`safe_extract` would unpack, without unpacking.

    The archive limits are applied first (InputError as for :func:`safe_extract`).
    """
    with _open(archive) as zf:
        members = [m for m in zf.infolist() if not m.is_dir() and not _ignored(m.filename)]
        _check_members(
            archive,
            members,
            max_total_bytes=max_total_bytes,
            max_member_bytes=max_member_bytes,
            max_ratio=max_ratio,
            max_members=max_members,
        )
    return [m.filename for m in members]


def safe_extract(
    archive: Path,
    dest: Path,
    *,
    max_total_bytes: int = MAX_TOTAL_BYTES,
    max_member_bytes: int = MAX_MEMBER_BYTES,
    max_ratio: float = MAX_RATIO,
    max_members: int = MAX_MEMBERS,
) -> list[Path]:
    """Extract ``archive`` into ``dest``; returns the files written.

    InputError for entries that would land outside ``dest`` (zip-slip), archives inside
    the archive, encrypted entries, too many entries, entries or archives that unpack
    to more than the limits or compress suspiciously well (zip bombs), and files that
    are not zip archives.
    """
    root = dest.resolve()
    written: list[Path] = []
    with _open(archive) as zf:
        members = [m for m in zf.infolist() if not m.is_dir() and not _ignored(m.filename)]
        _check_members(
            archive,
            members,
            max_total_bytes=max_total_bytes,
            max_member_bytes=max_member_bytes,
            max_ratio=max_ratio,
            max_members=max_members,
        )
        for member in members:
            if member.filename.lower().endswith(NESTED_ARCHIVE_SUFFIXES):
                raise InputError(
                    f"{archive.name} holds another archive ({member.filename!r}); geoetl does "
                    "not unpack archives inside archives — upload the inner archive itself"
                )
            target = (root / member.filename).resolve()
            if not target.is_relative_to(root) or target == root:
                raise InputError(
                    f"{archive.name} has an entry {member.filename!r} that points outside the "
                    "archive folder; repack it without absolute or '..' paths"
                )
        for member in members:
            target = (root / member.filename).resolve()
            target.parent.mkdir(parents=True, exist_ok=True)
            _copy(zf, member, target, archive.name)
            written.append(target)
    return written


def _copy(zf: zipfile.ZipFile, member: zipfile.ZipInfo, target: Path, name: str) -> None:
    # A running byte budget: the copy never writes more than the header declared.
    budget = member.file_size
    try:
        with zf.open(member) as src, target.open("wb") as out:
            while chunk := src.read(_COPY_BYTES):
                budget -= len(chunk)
                if budget < 0:
                    raise InputError(f"{name}: entry {member.filename!r} is larger than declared")
                out.write(chunk)
    except (zipfile.BadZipFile, NotImplementedError, RuntimeError, EOFError) as exc:
        raise InputError(f"{name}: entry {member.filename!r} cannot be unpacked ({exc})") from None
