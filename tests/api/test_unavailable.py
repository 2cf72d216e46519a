"""A storage fault that may pass answers 503 with Retry-After, and shows no internals."""

from __future__ import annotations

import shutil
from pathlib import Path

from fastapi.testclient import TestClient

from tests.api.conftest import platform_of


def test_storage_fault_is_503_with_retry_after_and_no_paths(client: TestClient) -> None:
    objects = platform_of(client).objects
    root = Path(objects.root)
    # The upload staging folder cannot be created: a file stands where it should be.
    shutil.rmtree(root / "tmp", ignore_errors=True)
    (root / "tmp").write_bytes(b"not a folder")

    response = client.post("/ingest", params={"filename": "dem.tif"}, content=b"II*\x00")

    assert response.status_code == 503
    assert response.headers["Retry-After"].isdigit()
    body = response.json()
    assert body["code"] == "ServiceUnavailable"
    assert str(root) not in response.text
    assert "dem.tif" not in body["detail"]

    # The fault passes: the same request succeeds and the service kept running.
    (root / "tmp").unlink()
    again = client.post("/ingest", params={"filename": "dem.tif"}, content=b"II*\x00")
    assert again.status_code != 503
    assert client.get("/livez").status_code == 200
