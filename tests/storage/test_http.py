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
