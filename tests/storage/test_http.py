"""Objects served over HTTP with range requests, read in place on every store."""

from __future__ import annotations

import warnings
from pathlib import Path

from fastapi import FastAPI, Request
from starlette.responses import Response

from geoetl.storage.http import object_response
from geoetl.storage.objectstore import ObjectStore

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient


def test_ranges_whole_and_unsatisfiable(store: ObjectStore, tmp_path: Path) -> None:
    body = bytes(range(256)) * 4000
    src = tmp_path / "a.tif"
    src.write_bytes(body)
    store.put_file(src, "silver/cogs/c/a.tif")
    app = FastAPI()

    @app.get("/a")
    def serve(request: Request) -> Response:
        return object_response(store, "silver/cogs/c/a.tif", request, "image/tiff")

    client = TestClient(app)
    whole = client.get("/a")
    assert whole.status_code == 200
    assert whole.content == body
    part = client.get("/a", headers={"Range": "bytes=100-1099"})
    assert part.status_code == 206
    assert part.content == body[100:1100]
    assert part.headers["content-range"] == f"bytes 100-1099/{len(body)}"
    tail = client.get("/a", headers={"Range": "bytes=-16"})
    assert tail.status_code == 206
    assert tail.content == body[-16:]
    assert client.get("/a", headers={"Range": f"bytes={len(body)}-"}).status_code == 416
    # Ranges that are not valid, or that we do not serve: never a 500. Read in place from
    # S3/Azure they are ignored (the whole object); a folder's file is Starlette's answer.
    for bad in ("bytes=500-100", f"bytes={'9' * 5000}-", "bytes=0-1,5-9", "items=0-5"):
        answer = client.get("/a", headers={"Range": bad})
        assert answer.status_code < 500, bad
        if not store.is_local:
            assert answer.status_code == 200, bad
            assert answer.content == body


def test_names_beyond_ascii_are_served(store: ObjectStore, tmp_path: Path) -> None:
    src = tmp_path / "x.tif"
    src.write_bytes(b"II*\x00" + bytes(100))
    key = 'silver/cogs/c/データ "q".tif'
    store.put_file(src, key)
    app = FastAPI()

    @app.get("/a")
    def serve(request: Request) -> Response:
        return object_response(store, key, request, "image/tiff")

    answer = TestClient(app).get("/a")
    assert answer.status_code == 200
    assert answer.content == src.read_bytes()
    assert "filename*=utf-8''" in answer.headers["content-disposition"]
