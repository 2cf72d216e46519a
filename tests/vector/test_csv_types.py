"""CSV columns: geometry found by name, types detected over the whole file, same in every chunk."""

from __future__ import annotations

import warnings
from datetime import UTC, date, datetime
from pathlib import Path

import pyarrow as pa
import pyogrio
import pytest

from geoetl.errors import InputError
from geoetl.vector.csvtypes import apply_types, detect_types
from geoetl.vector.read import CsvOptions, list_layers, read_chunk


def test_types_follow_every_value_not_the_first_ones() -> None:
    table = pa.table(
        {
            "int": ["1", " -2 ", "", None, "+7"],
            "real": ["1", "2.5", "1e3", "", "-.5"],
            "zip": ["98765", "12345", "", "", "01234"],
            "long_id": ["1", "2", "", "", "99999999999999999999"],
            "flag": ["true", "FALSE", "True", "", "false"],
            "day": ["2024-01-02", "2024-02-29", "", "", "2023-12-31"],
            "no_day": ["2024-01-02", "2024-01-03", "", "", "2023-02-29"],
            "when": ["2024-01-02T10:00:00", "2024-01-02 10:00", "", "", "2024-01-02T10:00:00.5"],
            "utc": ["2024-01-02T10:00:00Z", "2024-01-02T10:00:00+02:00", "", "", ""],
            "mixed_tz": ["2024-01-02T10:00:00Z", "2024-01-02T10:00:00", "", "", ""],
            "blank": ["", " ", "", None, ""],
            "text": ["1", "2", "", "", "n/a"],
            "nan": ["1", "nan", "", "", ""],
        }
    )
    types = detect_types(table.to_batches(max_chunksize=2))
    assert types == {
        "int": "integer",
        "real": "real",
        "zip": "string",  # a leading zero: a code, not a number
        "long_id": "string",  # longer than 64 bits: an identifier
        "flag": "boolean",
        "day": "date",
        "no_day": "string",  # 29 February 2023 is no day
        "when": "datetime",
        "utc": "datetime_utc",
        "mixed_tz": "string",
        "blank": "string",
        "text": "string",
        "nan": "string",
    }
    out = apply_types(table, types).to_pydict()
    assert out["int"] == [1, -2, None, None, 7]
    assert out["real"] == [1.0, 2.5, 1000.0, None, -0.5]
    assert out["flag"] == [True, False, True, None, False]
    assert out["day"][1] == date(2024, 2, 29)
    assert out["when"][1] == datetime(2024, 1, 2, 10, 0)
    assert out["utc"][1] == datetime(2024, 1, 2, 8, 0, tzinfo=UTC)
    assert out["zip"] == ["98765", "12345", "", "", "01234"]  # text is left as it was


def test_a_late_value_changes_the_type_of_every_chunk(tmp_path: Path) -> None:
    path = tmp_path / "late.csv"
    rows = [f"{i % 90}.5,{i % 45}.25,{i}" for i in range(80_000)]
    rows.append("1,1,n/a")  # past GDAL's first megabyte
    path.write_text("lon,lat,n\n" + "\n".join(rows) + "\n")
    assert path.stat().st_size > 1_000_000
    # Control: GDAL's own detection looks at the first megabyte and empties the late value.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, control = pyogrio.read_arrow(
            path, skip_features=80_000, AUTODETECT_TYPE="YES", X_POSSIBLE_NAMES="lon"
        )
    assert control["n"].to_pylist() == [None]
    [layer] = list_layers(path)
    assert layer.column_types == {"n": "string"}
    first = read_chunk(path, layer.name, limit=10, column_types=layer.column_types)
    last = read_chunk(path, layer.name, skip=80_000, column_types=layer.column_types)
    assert first.attributes.schema == last.attributes.schema
    assert first.attributes["n"].to_pylist()[:2] == ["0", "1"]
    assert last.attributes["n"].to_pylist() == ["n/a"]


def _csv(tmp_path: Path, header: str, row: str) -> Path:
    path = tmp_path / "t.csv"
    path.write_text(f"{header}\n{row}\n")
    return path


def test_geometry_columns_are_found_by_name(tmp_path: Path) -> None:
    [layer] = list_layers(_csv(tmp_path, "id,LAT,Lng,n", "1,49.6,6.1,3"))
    assert (layer.geometry_columns, layer.default_crs) == (["LAT", "Lng"], "EPSG:4326")
    assert layer.fields == ["id", "n"]
    assert layer.column_types == {"id": "integer", "n": "integer"}
    chunk = read_chunk(_csv(tmp_path, "id,LAT,Lng,n", "1,49.6,6.1,3"), layer.name)
    assert (chunk.geometries[0].x, chunk.geometries[0].y) == (6.1, 49.6)
    # x/y may be any CRS: no default, the job asks for input_crs.
    [layer] = list_layers(_csv(tmp_path, "x,y,n", "2600000,1200000,1"))
    assert (layer.geometry_columns, layer.default_crs) == (["y", "x"], None)
    [layer] = list_layers(_csv(tmp_path, "id,WKT", '1,"LINESTRING (0 0, 1 1)"'))
    assert (layer.geometry_columns, layer.default_crs) == (["WKT"], None)
    assert layer.fields == ["id"]
    named = CsvOptions(lat="north", lon="east")
    [layer] = list_layers(_csv(tmp_path, "east,north,lat", "6.1,49.6,0"), named)
    assert layer.geometry_columns == ["north", "east"]
    assert layer.fields == ["lat"]


def test_missing_geometry_columns_are_named_with_the_columns_there_are(tmp_path: Path) -> None:
    path = _csv(tmp_path, "office,amount", "North,12")
    with pytest.raises(InputError) as refused:
        list_layers(path)
    assert str(refused.value) == (
        "t.csv has no geometry: name its coordinate columns with csv_lat and csv_lon (or a "
        "column of WKT geometries with csv_wkt); its columns are: 'office', 'amount'"
    )
    with pytest.raises(InputError) as refused:
        read_chunk(path, "t")
    assert str(refused.value).startswith("t.csv has no geometry")
    with pytest.raises(InputError, match=r"csv_wkt names column 'geom', which t\.csv does not"):
        list_layers(path, CsvOptions(wkt="geom"))
    with pytest.raises(InputError, match="give both csv_lat and csv_lon"):
        list_layers(path, CsvOptions(lat="amount"))
