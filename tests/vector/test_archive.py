"""Zip bombs and other hostile archives: every limit is per member and for the whole archive."""

from __future__ import annotations

import io
import os
import re
import zipfile
from pathlib import Path

import pytest

from geoetl.errors import InputError
from geoetl.vector.archive import MAX_RATIO, RATIO_FLOOR_BYTES, check_archive, safe_extract
from geoetl.vector.read import find_dataset

DATA = Path(__file__).parents[2] / "examples" / "data"
MIB = 1024 * 1024


def make_zip(path: Path, members: dict[str, bytes], *, stored: bool = False) -> Path:
    method = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
    with zipfile.ZipFile(path, "w", compression=method, compresslevel=9) as zf:
        for name, content in members.items():
            zf.writestr(name, content)
    return path


def expanding(ratio: float, size: int = 8 * MIB) -> bytes:
    """About ``size`` bytes that deflate ``ratio`` times: random bytes padded with zeros."""
    random_part = int(size / ratio)
    return os.urandom(random_part) + bytes(size - random_part)


def ratios(path: Path) -> list[float]:
    with zipfile.ZipFile(path) as zf:
        return [m.file_size / m.compress_size for m in zf.infolist()]


def test_single_member_expanding_150x_is_a_bomb(tmp_path: Path) -> None:
    # 200x used to pass (the guard only looked at the whole archive, with a 200x limit).
    archive = make_zip(tmp_path / "one.zip", {"data.csv": expanding(150)})
    [ratio] = ratios(archive)
    assert MAX_RATIO < ratio < 200
    with pytest.raises(InputError) as refused:
        safe_extract(archive, tmp_path / "out")
    assert re.fullmatch(
        r"one\.zip: 'data\.csv' expands \d+x when unpacked \(at most 100x for files over 1 MiB\), "
        r"which looks like a zip bomb; upload the files uncompressed or in smaller archives",
        str(refused.value),
    )
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_bomb_member_hidden_among_normal_ones(tmp_path: Path) -> None:
    members = {f"part{i}.csv": os.urandom(64 * 1024) for i in range(20)}
    members["zz.csv"] = bytes(4 * MIB)  # ~1000x
    archive = make_zip(tmp_path / "mixed.zip", members)
    with zipfile.ZipFile(archive) as zf:
        total = sum(m.file_size for m in zf.infolist())
        packed = sum(m.compress_size for m in zf.infolist())
    assert total / packed < MAX_RATIO  # the archive as a whole looks harmless
    with pytest.raises(InputError, match=r"'zz\.csv' expands \d+x"):
        safe_extract(archive, tmp_path / "out")


def test_many_small_members_adding_up_to_a_bomb(tmp_path: Path) -> None:
    # Each member is at the 1 MiB floor (any ratio allowed); together they expand ~1000x.
    archive = make_zip(
        tmp_path / "many.zip", {f"m{i}.csv": bytes(RATIO_FLOOR_BYTES) for i in range(8)}
    )
    with pytest.raises(InputError, match=r"many\.zip expands \d+x when unpacked \(at most 100x\)"):
        safe_extract(archive, tmp_path / "out")


def test_small_text_members_may_compress_well(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "small.zip", {"a.csv": b"lat,lon\n" + b"1,2\n" * 100_000})
    assert safe_extract(archive, tmp_path / "out")[0].name == "a.csv"


def test_member_count_limit(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "count.zip", {f"f{i}.txt": b"x" for i in range(11)})
    with pytest.raises(InputError, match=r"count\.zip holds 11 files; geoetl unpacks at most 10"):
        safe_extract(archive, tmp_path / "out", max_members=10)


def test_member_size_limit(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "big.zip", {"big.bin": os.urandom(2 * MIB)}, stored=True)
    with pytest.raises(InputError, match=r"'big\.bin' unpacks to 2,097,152 bytes, over the"):
        safe_extract(archive, tmp_path / "out", max_member_bytes=MIB)


def test_total_size_limit(tmp_path: Path) -> None:
    members = {f"p{i}.bin": os.urandom(MIB) for i in range(3)}
    archive = make_zip(tmp_path / "total.zip", members, stored=True)
    with pytest.raises(InputError, match=r"total\.zip unpacks to 3,145,728 bytes, over the"):
        safe_extract(archive, tmp_path / "out", max_total_bytes=2 * MIB, max_member_bytes=2 * MIB)


@pytest.mark.parametrize("inner", ["inner.zip", "data.tar.gz", "x.7z"])
def test_archives_inside_archives_are_not_unpacked(tmp_path: Path, inner: str) -> None:
    nested = io.BytesIO()
    with zipfile.ZipFile(nested, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("bomb.csv", bytes(MIB))
    archive = make_zip(
        tmp_path / "outer.zip", {"readme.txt": b"hi", f"sub/{inner}": nested.getvalue()}
    )
    with pytest.raises(InputError, match=r"holds another archive .* not unpack archives inside"):
        safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "out" / "sub").exists()


def test_encrypted_member_is_refused(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "locked.zip", {"secret.csv": b"lat,lon\n1,2\n"})
    # zipfile cannot write encrypted members: set the "encrypted" flag in both headers.
    raw = bytearray(archive.read_bytes())
    for signature, flags_at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = raw.index(signature) + flags_at
        raw[at] |= 0x1
    archive.write_bytes(bytes(raw))
    with pytest.raises(InputError, match="is encrypted; upload the archive without a password"):
        safe_extract(archive, tmp_path / "out")


def test_zip_slip_is_refused(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "slip.zip", {"../../evil.csv": b"a"})
    with pytest.raises(InputError, match="points outside the archive folder"):
        safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "evil.csv").exists()


def test_not_a_zip(tmp_path: Path) -> None:
    path = tmp_path / "fake.zip"
    path.write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(InputError, match="is not a readable zip archive"):
        safe_extract(path, tmp_path / "out")


def test_kmz_bomb_is_refused_before_gdal_unpacks_it(tmp_path: Path) -> None:
    kml = b'<?xml version="1.0"?><kml xmlns="http://www.opengis.net/kml/2.2"><Document>'
    kmz = make_zip(
        tmp_path / "map.kmz", {"doc.kml": kml + b" " * (16 * MIB) + b"</Document></kml>"}
    )
    with pytest.raises(InputError, match=r"'doc\.kml' expands \d+x"):
        check_archive(kmz)
    with pytest.raises(InputError, match="zip bomb"):
        find_dataset(kmz, tmp_path / "scratch")
    # A kmz inside an uploaded zip is a dataset, checked the same way.
    outer = make_zip(tmp_path / "upload.zip", {"map.kmz": kmz.read_bytes()}, stored=True)
    with pytest.raises(InputError, match="zip bomb"):
        find_dataset(outer, tmp_path / "scratch2")


def test_vrt_inside_a_zip_is_refused(tmp_path: Path) -> None:
    vrt = b"<OGRVRTDataSource><OGRVRTLayer name='x'><SrcDataSource>/etc/passwd</SrcDataSource>"
    vrt += b"</OGRVRTLayer></OGRVRTDataSource>"
    archive = make_zip(tmp_path / "upload.zip", {"data/points.csv": vrt})
    with pytest.raises(InputError, match=r"points\.csv is an OGR VRT file"):
        find_dataset(archive, tmp_path / "scratch")


def test_zipped_samples_still_unpack(tmp_path: Path) -> None:
    members = {f"lux/{p.name}": p.read_bytes() for p in DATA.glob("lux.*")}
    members["nc.gpkg"] = (DATA / "nc.gpkg").read_bytes()
    archive = make_zip(tmp_path / "two.zip", members)
    with pytest.raises(InputError, match="several datasets"):
        find_dataset(archive, tmp_path / "a")
    del members["nc.gpkg"]
    archive = make_zip(tmp_path / "lux.zip", members)
    assert find_dataset(archive, tmp_path / "b").name == "lux.shp"
