"""Which published table answers which OGC API collection, with its metadata."""

from __future__ import annotations

import time
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel
from sqlalchemy.engine import Engine

from geoetl.engine.schema import Json, Time, metadata
from geoetl.errors import NotFound

feature_collections = sa.Table(
    "feature_collections",
    metadata,
    sa.Column("collection_id", sa.String(200), primary_key=True),
    sa.Column("dataset_id", sa.String(200), nullable=False),
    sa.Column("table_name", sa.String(200), nullable=False),
    sa.Column("family", sa.String(20), nullable=False),
    sa.Column("title", sa.String(500), nullable=False),
    sa.Column("feature_count", sa.Integer, nullable=False),
    sa.Column("bbox", Json, nullable=True),
    sa.Column("fields", Json, nullable=False),
    sa.Column("column_map", Json, nullable=False),
    sa.Column("access_level", sa.String(20), nullable=False),
    sa.Column("stac_collection", sa.String(200), nullable=False),
    sa.Column("job_id", sa.String(64), nullable=False),
    sa.Column("updated_at", Time, nullable=False),
)


class FeatureCollection(BaseModel):
    """A published feature table as the OGC API sees it."""

    collection_id: str
    dataset_id: str
    table_name: str
    family: str
    title: str
    feature_count: int
    bbox: list[float] | None
    fields: dict[str, str]
    column_map: dict[str, str]
    access_level: str
    stac_collection: str
    job_id: str


class FeatureRegistry:
    """Feature collections in the platform database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def upsert(self, fc: FeatureCollection) -> None:
        """Create or replace a collection entry."""
        values: dict[str, Any] = {**fc.model_dump(), "updated_at": time.time()}
        with self.engine.begin() as conn:
            done = conn.execute(
                sa.update(feature_collections)
                .where(feature_collections.c.collection_id == fc.collection_id)
                .values(**values)
            ).rowcount
            if not done:
                conn.execute(sa.insert(feature_collections).values(**values))

    def get(self, collection_id: str, audience: list[str] | None = None) -> FeatureCollection:
        """One collection, or NotFound (also when the audience may not see it)."""
        query = sa.select(feature_collections).where(
            feature_collections.c.collection_id == collection_id
        )
        if audience is not None:
            query = query.where(feature_collections.c.access_level.in_(audience))
        with self.engine.connect().execution_options(sqlite_begin="DEFERRED") as conn:
            row = conn.execute(query).first()
        if row is None:
            raise NotFound(f"no feature collection {collection_id!r}")
        return FeatureCollection.model_validate(row._asdict())

    def all(self, audience: list[str] | None = None) -> list[FeatureCollection]:
        """Every collection the audience may see, by id."""
        query = sa.select(feature_collections).order_by(feature_collections.c.collection_id)
        if audience is not None:
            query = query.where(feature_collections.c.access_level.in_(audience))
        with self.engine.connect().execution_options(sqlite_begin="DEFERRED") as conn:
            return [FeatureCollection.model_validate(r._asdict()) for r in conn.execute(query)]

    def delete_dataset(self, dataset_id: str) -> int:
        """Forget every collection of a dataset."""
        with self.engine.begin() as conn:
            return conn.execute(
                sa.delete(feature_collections).where(feature_collections.c.dataset_id == dataset_id)
            ).rowcount
