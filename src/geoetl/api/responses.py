"""JSON responses encoded by orjson: item and feature pages are the API's largest answers.

``json.dumps`` takes about 0.2 ms for a 16 kB page of ten STAC items; orjson about
0.02 ms. The bytes differ only in spacing (orjson writes none, as Starlette's own
encoder does) and in non-finite floats, which orjson writes as ``null`` where
``json.dumps`` would refuse them and the request would end in a 500.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi.responses import JSONResponse


class FastJSONResponse(JSONResponse):
    """A :class:`JSONResponse` rendered by orjson (UTF-8, compact)."""

    def render(self, content: Any) -> bytes:
        """The content as compact UTF-8 JSON.

        What orjson refuses (an integer beyond 64 bits, say, which another writer of
        pgSTAC may have stored) is encoded by Starlette's encoder instead.
        """
        try:
            return orjson.dumps(content)
        except orjson.JSONEncodeError:
            return super().render(content)
