"""An object's bytes as an HTTP response, with range requests, read where it is stored.

A file on a local store is sent by Starlette's ``FileResponse``; an object on S3 or Azure
is streamed from the store (one ranged read per request: a client asking for a COG's
header or a tile gets those bytes, never a download of the whole object).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import PurePosixPath
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import FileResponse, Response, StreamingResponse

from geoetl.storage.base import ObjectStore

CHUNK = 1024 * 1024
# At most 19 digits (an int64): a longer value is no range we could serve, and int() of
# thousands of digits would raise.
_RANGE = re.compile(r"^bytes=(\d{0,19})-(\d{0,19})$")


def object_response(
    objects: ObjectStore, key: str, request: Request, media_type: str | None = None
) -> Response:
    """The object ``key`` (NotFound when missing); ``Range: bytes=a-b`` gives 206."""
    filename = PurePosixPath(key).name
    if objects.is_local:
        return FileResponse(
            objects.gdal_path(key),
            media_type=media_type,
            filename=filename,
            content_disposition_type="inline",
        )
    size = objects.size(key)  # NotFound for a missing object
    headers = {
        "Accept-Ranges": "bytes",
        "Content-Disposition": _disposition(filename),
    }
    wanted = _byte_range(request.headers.get("range"), size)
    if wanted is None:
        headers["Content-Length"] = str(size)
        return StreamingResponse(_read(objects, key, 0, size), 200, headers, media_type)
    if wanted == (-1, -1):
        return Response(status_code=416, headers={"Content-Range": f"bytes */{size}"})
    start, end = wanted
    headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    headers["Content-Length"] = str(end - start + 1)
    return StreamingResponse(_read(objects, key, start, end + 1), 206, headers, media_type)


def _disposition(filename: str) -> str:
    """``inline`` with the name; a name beyond plain ASCII (or with quotes) as RFC 5987."""
    quoted = quote(filename)
    if quoted != filename:
        return f"inline; filename*=utf-8''{quoted}"
    return f'inline; filename="{filename}"'


def _byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(first, last) byte of a single range; None for the whole object; (-1, -1): 416."""
    if not header:
        return None
    match = _RANGE.match(header.strip())
    if match is None:
        return None  # several ranges or another unit: the whole object, as RFC 9110 allows
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # the last N bytes
        n = int(last)
        if n == 0 or size == 0:
            return (-1, -1)
        return (max(0, size - n), size - 1)
    start = int(first)
    if last and int(last) < start:
        return None  # not a valid range: ignored, the whole object (RFC 9110 14.1.1)
    end = min(int(last), size - 1) if last else size - 1
    if start >= size or start > end:
        return (-1, -1)
    return (start, end)


def _read(objects: ObjectStore, key: str, start: int, stop: int) -> Iterator[bytes]:
    with objects.open(key) as fh:
        fh.seek(start)
        left = stop - start
        while left > 0:
            chunk = fh.read(min(CHUNK, left))
            if not chunk:
                return
            left -= len(chunk)
            yield chunk
