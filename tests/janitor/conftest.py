"""State for the orphan sweep, built directly: objects, catalog items, version rows, jobs.

The publishing workflows are not run: each test puts the objects and rows a publication
would leave, then asks the sweep what it removes. Objects and rows are made old by
moving their times back (a file's mtime, a row's ``updated_at``).
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
import shapely
import sqlalchemy as sa
from pyproj import CRS

from geoetl.platform import Platform
from geoetl.settings import Settings
from geoetl.versions import Version, dataset_versions
from tests.storage.conftest import azure_server, s3_server, store, store_kind

__all__ = ["azure_server", "s3_server", "store", "store_kind"]

HOUR = 3600.0
OLD = 48  # hours: well past the default grace of 24


def put(platform: Platform, key: str, size: int = 1000, *, hours_ago: float = 0) -> str:
    """Store ``size`` bytes at ``key``, last written ``hours_ago`` (a local store only)."""
    local = Path(platform.settings.home) / "put" / uuid.uuid4().hex
    local.parent.mkdir(parents=True, exist_ok=True)
    local.write_bytes(os.urandom(size))
    platform.objects.put_file(local, key)
    local.unlink()
    if hours_ago:
        backdate(platform, key, hours_ago)
    return key


def backdate(platform: Platform, key: str, hours: float) -> None:
    """Make an object of a local store look written ``hours`` ago."""
    stamp = time.time() - hours * HOUR
    os.utime(platform.objects.gdal_path(key), (stamp, stamp))


def backdate_version(platform: Platform, version: Version, hours: float) -> None:
    """Make a version row look last changed ``hours`` ago."""
    with platform.versions.engine.begin() as conn:
        conn.execute(
            sa.update(dataset_versions)
            .where(
                dataset_versions.c.collection_id == version.collection_id,
                dataset_versions.c.item_id == version.item_id,
                dataset_versions.c.version == version.version,
            )
            .values(updated_at=time.time() - hours * HOUR)
        )


def item(collection: str, item_id: str, hrefs: dict[str, str]) -> dict[str, Any]:
    """A minimal valid STAC item with one asset per ``hrefs`` entry."""
    return {
        "type": "Feature",
        "stac_version": "1.1.0",
        "stac_extensions": [],
        "id": item_id,
        "collection": collection,
        "geometry": {
            "type": "Polygon",
            "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]],
        },
        "bbox": [0, 0, 1, 1],
        "properties": {"datetime": "2024-05-01T00:00:00Z"},
        "assets": {
            name: {"href": href, "type": "application/octet-stream", "roles": ["data"]}
            for name, href in hrefs.items()
        },
        "links": [],
    }


def catalogue(
    platform: Platform,
    collection: str,
    item_id: str,
    hrefs: dict[str, str],
    level: str = "public",
) -> None:
    """Put an item in the catalog (its collection made if missing)."""
    platform.catalog.ensure_collection(collection, level)
    platform.catalog.upsert_item(item(collection, item_id, hrefs), level)


def version(
    platform: Platform,
    collection: str,
    item_id: str,
    *,
    job_id: str,
    status: str,
    objects: list[str],
    kind: str = "raster",
    source_key: str = "bronze/0000/source.tif",
    storage_id: str | None = None,
    hours_ago: float = 0,
) -> Version:
    """A version row in ``status`` that wrote ``objects``."""
    v = platform.versions.reserve(
        collection,
        item_id,
        kind=kind,
        job_id=job_id,
        source_key=source_key,
        source_sha="0" * 64,
        params_hash="p" * 64,
        access_level="public",
    )
    if objects:
        platform.versions.add_objects(collection, item_id, v.version, objects)
    changes: dict[str, Any] = {"status": status}
    if storage_id:
        changes["storage_id"] = storage_id
    platform.versions.update(collection, item_id, v.version, **changes)
    if hours_ago:
        backdate_version(platform, v, hours_ago)
    return platform.versions.get(collection, item_id, v.version)


def active_job(platform: Platform) -> str:
    """A job still queued (no worker runs here)."""
    job_id, _ = platform.store.submit("hello", {"name": f"active-{uuid.uuid4().hex[:8]}"})
    return job_id


def ended_job(platform: Platform) -> str:
    """A job that was cancelled."""
    job_id, _ = platform.store.submit("hello", {"name": f"ended-{uuid.uuid4().hex[:8]}"})
    platform.store.cancel(job_id)
    return job_id


def points_table() -> pa.Table:
    """Three points as the vector pipeline stages them (WKB ``geometry``)."""
    geoms = shapely.points([0, 1, 2], [0, 1, 2])
    return pa.table(
        {
            "name": ["a", "b", "c"],
            "geometry": pa.array(shapely.to_wkb(geoms, flavor="iso"), pa.binary()),
        }
    )


def load_dataset(
    platform: Platform, dataset_id: str, table: str = "points", *, publish: bool = True
) -> None:
    """A small feature dataset, loaded as the vector pipeline's finalize does.

    ``publish=False`` stops before publishing: the rows stay staged, as a job that
    failed before its publish stage leaves them.
    """
    features = platform.features
    features.begin_load(dataset_id)
    features.write_table(
        dataset_id,
        table,
        points_table().to_reader(),
        geometry_column="geometry",
        geometry_type="Point",
        crs=CRS.from_epsg(4326).to_wkt(),
    )
    if publish:
        features.finish_load(dataset_id, {table: []})


def with_settings(settings: Settings, **changes: Any) -> Settings:
    """``settings`` with some fields changed."""
    return settings.model_copy(update=changes)
