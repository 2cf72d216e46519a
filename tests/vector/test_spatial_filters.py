"""Spatial CQL2 predicates on both feature stores give GeoPandas' answers."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import geopandas as gpd
import pyogrio
import pytest
import shapely

from geoetl.cql2 import parse
from geoetl.errors import InputError
from geoetl.features.store import FeatureQuery, FeatureStore
from tests.frames import to_arrow, to_frame
from tests.vector.conftest import make_store

DATA = Path(__file__).parents[2] / "examples" / "data"
AREA = "POLYGON((-80 35, -78 35, -78 36.5, -80 36.5, -80 35))"
RALEIGH = "POINT(-78.64 35.78)"


@pytest.fixture(params=["geopackage", "postgis"])
def counties(request: pytest.FixtureRequest) -> Iterator[tuple[FeatureStore, gpd.GeoDataFrame]]:
    nc = pyogrio.read_dataframe(DATA / "nc.gpkg").to_crs(4326)
    frame = gpd.GeoDataFrame({"name": nc["NAME"]}, geometry=nc.geometry.values, crs=4326)
    for store in make_store(str(request.param), request):
        store.begin_load("nc")
        store.write_chunk("nc", "nc_polygons", 0, to_arrow(frame))
        store.finish_load("nc", {})
        yield store, to_frame(store.read("nc", "nc_polygons"))


def _names(store: FeatureStore, text: str, lang: str = "cql2-text") -> set[str]:
    query = FeatureQuery({"name": "object"}, filter=parse(text, lang), limit=1000)
    features, total = store.query("nc", "nc_polygons", query)
    assert total == len(features)
    return {f["properties"]["name"] for f in features}


@pytest.mark.parametrize(
    ("text", "predicate", "literal"),
    [
        (f"S_INTERSECTS(geometry, {AREA})", shapely.intersects, AREA),
        (f"S_WITHIN(geometry, {AREA})", shapely.within, AREA),
        (f"S_CONTAINS(geometry, {RALEIGH})", shapely.contains, RALEIGH),
        (f"S_DISJOINT(geometry, {AREA})", shapely.disjoint, AREA),
        ("S_INTERSECTS(geometry, BBOX(-80, 35, -78, 36.5))", shapely.intersects, AREA),
        (f"S_TOUCHES(geometry, {AREA})", shapely.touches, AREA),
    ],
)
def test_spatial_predicates_match_geopandas(
    counties: tuple[FeatureStore, gpd.GeoDataFrame],
    text: str,
    predicate: Callable[..., Any],
    literal: str,
) -> None:
    store, frame = counties
    expected = frame[predicate(frame.geometry.values, shapely.from_wkt(literal))]
    got = _names(store, text)
    assert got == set(expected["name"])
    assert 0 < len(got) < len(frame) or predicate is shapely.touches


def test_cql2_json_bbox_and_combination_with_properties(
    counties: tuple[FeatureStore, gpd.GeoDataFrame],
) -> None:
    store, frame = counties
    box = shapely.box(-80, 35, -78, 36.5)
    cql = {
        "op": "and",
        "args": [
            {
                "op": "s_intersects",
                "args": [{"property": "geometry"}, {"bbox": [-80, 35, -78, 36.5]}],
            },
            {"op": "like", "args": [{"property": "name"}, "W%"]},
        ],
    }
    hits = frame[frame.intersects(box) & frame["name"].str.startswith("W")]
    assert _names(store, json.dumps(cql), "cql2-json") == set(hits["name"])
    point = {
        "op": "s_contains",
        "args": [{"property": "geometry"}, {"type": "Point", "coordinates": [-78.64, 35.78]}],
    }
    assert _names(store, json.dumps(point), "cql2-json") == {"Wake"}


@pytest.mark.parametrize(
    ("pattern", "matches"),
    [
        ("W%", lambda n: n.startswith("W")),
        ("w%", lambda n: n.startswith("w")),  # case-sensitive, as CQL2 says: none
        ("W_lkes", lambda n: len(n) == 6 and n[0] == "W" and n[2:] == "lkes"),
        ("Wil.es", lambda n: n == "Wil.es"),  # '.' is a plain character: none
        ("%a%a%", lambda n: n.count("a") >= 2),
        ("New Hanover", lambda n: n == "New Hanover"),
        ("New\\ Hanover", lambda n: n == "New Hanover"),  # escaped ordinary character
        ("*", lambda n: n == "*"),  # GLOB's own wildcard is literal: none
    ],
)
def test_like_follows_cql2_wildcards(
    counties: tuple[FeatureStore, gpd.GeoDataFrame], pattern: str, matches: Any
) -> None:
    store, frame = counties
    expected = {n for n in frame["name"] if matches(n)}
    assert _names(store, f"name LIKE '{pattern}'") == expected
    cql = {"op": "like", "args": [{"property": "name"}, pattern.replace("\\\\", "\\")]}
    assert _names(store, json.dumps(cql), "cql2-json") == expected


@pytest.mark.parametrize(
    "text",
    [
        f"S_INTERSECTS(name, {RALEIGH})",
        "S_INTERSECTS(geometry, POINT EMPTY)",
        "S_INTERSECTS(geometry, 'POINT(1 2)')",
    ],
)
def test_bad_spatial_filters_are_input_errors(
    counties: tuple[FeatureStore, gpd.GeoDataFrame], text: str
) -> None:
    store, _ = counties
    with pytest.raises(InputError):
        _names(store, text)
