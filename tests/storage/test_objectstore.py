"""The object store on a local folder, S3 (moto) and Azure Blob (Azurite): one suite."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import rasterio

from geoetl import gdalsafe
from geoetl.errors import InputError, NotFound, TransientError
from geoetl.settings import Settings
from geoetl.storage.objectstore import LocalStore, ObjectStore, open_object_store, sha256_file

DATA = Path(__file__).parents[2] / "examples" / "data"


def test_put_get_exists_list_size(store: ObjectStore, tmp_path: Path) -> None:
    src = tmp_path / "a.bin"
    src.write_bytes(b"hello")
    assert store.put_file(src, "bronze/ab/a.bin") is True
    assert store.exists("bronze/ab/a.bin")
    assert not store.exists("bronze/ab/b.bin")
    assert store.size("bronze/ab/a.bin") == 5
    assert store.modified("bronze/ab/a.bin") > 0
    with store.open("bronze/ab/a.bin") as fh:
        assert fh.read() == b"hello"
    assert store.list("bronze") == ["bronze/ab/a.bin"]
    assert store.list("silver") == []
    back = store.get_file("bronze/ab/a.bin", tmp_path / "back.bin")
    assert back.read_bytes() == b"hello"
    assert store.ping()


def test_move_delete_and_delete_prefix(store: ObjectStore, tmp_path: Path) -> None:
    src = tmp_path / "a.bin"
    src.write_bytes(b"x" * 1000)
    for name in ("1", "2", "3"):
        store.put_file(src, f"tmp/job/{name}.bin")
    assert store.move("tmp/job/1.bin", "silver/c/1.bin") == "silver/c/1.bin"
    assert not store.exists("tmp/job/1.bin")
    assert store.size("silver/c/1.bin") == 1000
    assert store.delete("silver/c/1.bin") is True
    assert store.delete("silver/c/1.bin") is False
    assert store.delete_prefix("tmp/job") == 2
    assert store.list("tmp") == []


def test_missing_keys_are_not_found(store: ObjectStore, tmp_path: Path) -> None:
    for call in (
        lambda: store.size("bronze/no/such.tif"),
        lambda: store.modified("bronze/no/such.tif"),
        lambda: store.get_file("bronze/no/such.tif", tmp_path / "x"),
    ):
        with pytest.raises(NotFound):
            call()
    with pytest.raises(NotFound), store.open("bronze/no/such.tif") as fh:
        fh.read()


def test_keys_stay_inside_zones(store: ObjectStore) -> None:
    for key in ("etc/passwd", "silver/../../etc/passwd", "../x", "bronze/a\x00b"):
        with pytest.raises(ValueError, match="object key"):
            store.exists(key)
    assert store.key_of(f"{store.url}/silver/cogs/c/i.tif") == "silver/cogs/c/i.tif"
    assert store.key_of("silver/cogs/c/i.tif") == "silver/cogs/c/i.tif"
    assert store.key_of(f"{store.url}/../secret.tif") is None
    assert store.key_of(f"{store.url}/etc/passwd") is None
    assert store.key_of("file:///etc/passwd") is None


def test_content_addressed_put_stores_each_content_once(store: ObjectStore, tmp_path: Path) -> None:
    a = tmp_path / "a.tif"
    a.write_bytes(b"same bytes")
    key, digest = store.put_content_addressed(a)
    assert digest == sha256_file(a)
    assert key == f"bronze/{digest}/a.tif"
    first = store.modified(key)
    again, _ = store.put_content_addressed(a)
    assert again == key
    assert store.modified(key) == first  # never rewritten
    assert store.list("bronze") == [key]
    assert store.list("tmp") == []  # staging copies never linger
    with store.open(key) as fh:
        assert fh.read() == b"same bytes"


def test_conditional_create_keeps_the_first_object(store: ObjectStore, tmp_path: Path) -> None:
    one, two = tmp_path / "1", tmp_path / "2"
    one.write_bytes(b"first")
    two.write_bytes(b"second")
    assert store.put_file(one, "bronze/k/f", if_absent=True) is True
    assert store.put_file(two, "bronze/k/f", if_absent=True) is False
    with store.open("bronze/k/f") as fh:
        assert fh.read() == b"first"
    assert store.put_file(two, "bronze/k/f") is True  # an unconditional put replaces
    with store.open("bronze/k/f") as fh:
        assert fh.read() == b"second"


def test_large_upload_is_multipart_and_exact(store: ObjectStore, tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(40 * 1024 * 1024 + 123))  # > two 16 MiB parts
    key, digest = store.put_content_addressed(big)
    assert store.size(key) == big.stat().st_size
    back = store.get_file(key, tmp_path / "back.bin")
    assert sha256_file(back) == digest


def test_upload_commit_and_abort(store: ObjectStore) -> None:
    upload = store.begin_upload("x.txt")
    upload.write(b"abc")
    upload.write(b"def")
    key, digest = upload.commit()
    assert key == f"bronze/{digest}/x.txt"
    with store.open(key) as fh:
        assert fh.read() == b"abcdef"
    broken = store.begin_upload("y.txt")
    broken.write(b"partial" * 1000)
    broken.abort()
    assert store.list("tmp") == []
    assert store.list("bronze") == [key]  # an aborted upload leaves nothing behind
    with pytest.raises(InputError):
        store.begin_upload("../evil.txt")


def test_writer_that_fails_publishes_nothing(store: ObjectStore) -> None:
    def write_and_fail() -> None:
        with store.open("silver/partial.bin", "wb") as fh:
            fh.write(b"half")
            raise RuntimeError("the writer failed")

    with pytest.raises(RuntimeError, match="writer failed"):
        write_and_fail()
    assert not store.exists("silver/partial.bin")
    assert store.list("silver") == []


def test_gdal_path_reads_with_rasterio(store: ObjectStore) -> None:
    key = "silver/cogs/c/elev.tif"
    store.put_file(DATA / "elev.tif", key)
    with gdalsafe.open_stored_raster(store, key) as ds:
        assert ds.driver == "GTiff"
        assert ds.files == [store.gdal_path(key)]  # no sidecar probes
        with rasterio.open(DATA / "elev.tif") as ref:
            assert (ds.read(1) == ref.read(1)).all()
    if not store.is_local:
        assert store.gdal_path(key).startswith(("/vsis3/", "/vsiaz/"))
        # Outside the operation GDAL has no credentials: nothing leaked process-wide.
        with pytest.raises(rasterio.RasterioIOError):
            rasterio.open(store.gdal_path(key))


def test_remote_bronze_source_is_sniffed(store: ObjectStore, tmp_path: Path) -> None:
    vrt = tmp_path / "evil.tif"
    vrt.write_text('<VRTDataset rasterXSize="1"><SourceFilename>/etc/passwd</SourceFilename>')
    key, _ = store.put_content_addressed(vrt)
    with pytest.raises(InputError, match="VRT"):
        gdalsafe.bronze_file(store, key)


def test_credentials_stay_out_of_messages(store: ObjectStore) -> None:
    assert "secret" not in repr(store).lower()
    for value in store.gdal_options().values():
        if len(value) > 8 and store.redact(f"x {value} y") != f"x {value} y":
            assert value not in store.redact(f"failed with {value}")


def test_local_move_file_renames(tmp_path: Path) -> None:
    store = LocalStore((tmp_path / "root").as_uri())
    src = tmp_path / "scratch" / "cog.tif"
    src.parent.mkdir()
    src.write_bytes(b"cog bytes")
    inode = src.stat().st_ino
    assert store.move_file(src, "tmp/job/cog.tif") == "tmp/job/cog.tif"
    moved = Path(store.gdal_path("tmp/job/cog.tif"))
    assert moved.read_bytes() == b"cog bytes"
    assert moved.stat().st_ino == inode  # renamed, not copied


def test_sha256(tmp_path: Path) -> None:
    p = tmp_path / "x"
    p.write_bytes(b"abc")
    assert sha256_file(p) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_unknown_scheme_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not supported"):
        open_object_store(Settings(home=tmp_path, storage_url="ftp://host/x"))


def test_s3_errors_translate() -> None:
    from botocore.exceptions import ClientError

    from geoetl.storage.s3 import S3Store

    store = S3Store(
        "s3://bucket/p",
        endpoint_url="http://127.0.0.1:9",
        access_key_id="k",
        secret_access_key="very-secret-key",
    )

    def fail(code: str, status: int) -> None:
        response = {
            "Error": {"Code": code, "Message": "very-secret-key"},
            "ResponseMetadata": {"HTTPStatusCode": status},
        }
        raise OSError("wrapped") from ClientError(response, "GetObject")  # type: ignore[arg-type]

    for code, status in (("SlowDown", 503), ("InternalError", 500), ("Throttling", 400)):
        with pytest.raises(TransientError) as caught, store._errors("k"):
            fail(code, status)
        assert "very-secret-key" not in str(caught.value)
    with pytest.raises(NotFound), store._errors("k"):
        fail("NoSuchKey", 404)
    with pytest.raises(OSError, match="wrapped"), store._errors("k"):
        fail("AccessDenied", 403)


def test_azure_errors_translate() -> None:
    from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

    from geoetl.storage.azure import AzureStore

    store = AzureStore("az://c/p", account_name="acct", account_key="a-long-account-key")
    for status in (500, 503, 429):
        error = HttpResponseError(message="busy")
        error.status_code = status
        with pytest.raises(TransientError), store._errors("k"):
            raise error
    missing = ResourceNotFoundError(message="gone")
    missing.status_code = 404
    with pytest.raises(NotFound), store._errors("k"):
        raise missing
