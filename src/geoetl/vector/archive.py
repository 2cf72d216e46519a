"""Unpack uploaded archives safely: no path escapes, bounded size, no resource forks."""

from __future__ import annotations

import zipfile
from pathlib import Path, PurePosixPath

from geoetl.errors import InputError

MAX_TOTAL_BYTES = 20 * 1024**3  # 20 GiB unpacked
MAX_RATIO = 200  # unpacked / packed, per member and overall
MAX_MEMBERS = 10_000
IGNORED_PREFIXES = ("__MACOSX/",)


def _ignored(name: str) -> bool:
    base = PurePosixPath(name).name
    return name.startswith(IGNORED_PREFIXES) or base.startswith("._") or base == ".DS_Store"


def safe_extract(
    archive: Path,
    dest: Path,
    *,
    max_total_bytes: int = MAX_TOTAL_BYTES,
    max_ratio: float = MAX_RATIO,
) -> list[Path]:
    """Extract ``archive`` into ``dest``; returns the files written.

    InputError for entries that would land outside ``dest`` (zip-slip), archives
    that unpack to more than ``max_total_bytes`` or compress suspiciously well
    (zip bombs), and files that are not zip archives.
    """
    try:
        zf = zipfile.ZipFile(archive)
    except zipfile.BadZipFile as exc:
        raise InputError(f"{archive.name} is not a readable zip archive ({exc})") from None
    root = dest.resolve()
    written: list[Path] = []
    with zf:
        members = [m for m in zf.infolist() if not m.is_dir() and not _ignored(m.filename)]
        if len(members) > MAX_MEMBERS:
            raise InputError(f"{archive.name} holds {len(members)} files; at most {MAX_MEMBERS}")
        total = sum(m.file_size for m in members)
        packed = max(1, sum(m.compress_size for m in members))
        if total > max_total_bytes:
            raise InputError(
                f"{archive.name} unpacks to {total:,} bytes, over the {max_total_bytes:,} limit"
            )
        if total / packed > max_ratio:
            raise InputError(
                f"{archive.name} expands {total / packed:.0f}x when unpacked, which looks like "
                "a zip bomb; upload the files uncompressed or in smaller archives"
            )
        for member in members:
            target = (root / member.filename).resolve()
            if not target.is_relative_to(root):
                raise InputError(
                    f"{archive.name} has an entry {member.filename!r} that points outside the "
                    "archive folder; repack it without absolute or '..' paths"
                )
            target.parent.mkdir(parents=True, exist_ok=True)
            # Copy with a running byte budget: headers can lie about sizes.
            budget = member.file_size
            with zf.open(member) as src, target.open("wb") as out:
                while chunk := src.read(1024 * 1024):
                    budget -= len(chunk)
                    if budget < 0:
                        raise InputError(
                            f"{archive.name}: entry {member.filename!r} is larger than declared"
                        )
                    out.write(chunk)
            written.append(target)
    return written
