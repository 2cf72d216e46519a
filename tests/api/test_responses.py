"""JSON pages encoded by orjson read back as the same documents Starlette's encoder gives."""

from __future__ import annotations

import json

from fastapi.responses import JSONResponse

from geoetl.api.responses import FastJSONResponse

PAGE = {
    "type": "FeatureCollection",
    "features": [
        {
            "id": "é-1",
            "geometry": {"type": "Point", "coordinates": [1.5, -2.25]},
            "properties": {"n": 2**63 - 1, "ok": True, "none": None, "tags": ["a", "ü"]},
        }
    ],
    "numberReturned": 1,
}


def test_a_page_reads_back_as_the_standard_encoder_writes_it() -> None:
    ours = FastJSONResponse(PAGE).body
    assert json.loads(ours) == json.loads(JSONResponse(PAGE).body) == PAGE
    assert "é".encode() in ours  # UTF-8, not escaped


def test_what_orjson_refuses_is_encoded_all_the_same() -> None:
    huge = {"properties": {"n": 2**70}, "by_number": {1: "one"}}
    assert json.loads(FastJSONResponse(huge).body) == {
        "properties": {"n": 2**70},
        "by_number": {"1": "one"},
    }
