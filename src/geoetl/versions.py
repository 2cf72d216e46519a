"""Dataset versions: every publication of an item is a numbered version (SQL lives here).

A row per (collection, item, version) records what one job published or staged: its
status, the STAC item document as staged, the objects it wrote, and for vectors the
feature-store dataset and OGC API collections. The catalog holds only the current
version (the highest published one) of each item, so searches and other tools see
one item per dataset; older published versions are read from here (``?version=N``).

Statuses:

- ``staging``: the job reserved the number and is writing its outputs;
- ``draft``: outputs staged, waiting for the publish stage (or an admin's approval);
- ``published``: served (the highest published version is the current one);
- ``unpublishing``: out of serving, its data being deleted;
- ``unpublished``, ``rejected``, ``discarded`` (its job ended before publishing): ended,
  data deleted; the row stays as history, and its number is never reused.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from geoetl.engine.schema import Json, JsonOrNull, Time, metadata
from geoetl.errors import Conflict, NotFound

VersionStatus = Literal[
    "staging", "draft", "published", "unpublishing", "unpublished", "rejected", "discarded"
]
LIVE: tuple[VersionStatus, ...] = ("staging", "draft", "published")
"""Statuses whose data is (or is about to be) in use."""
ENDED: tuple[VersionStatus, ...] = ("unpublished", "rejected", "discarded")

dataset_versions = sa.Table(
    "dataset_versions",
    metadata,
    sa.Column("collection_id", sa.String(100), primary_key=True),
    sa.Column("item_id", sa.String(150), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("kind", sa.String(10), nullable=False),
    sa.Column("status", sa.String(20), nullable=False, index=True),
    sa.Column("job_id", sa.String(64), nullable=False, index=True),
    sa.Column("source_key", sa.String(1000), nullable=False),
    sa.Column("source_sha", sa.String(64), nullable=False, index=True),
    sa.Column("params_hash", sa.String(64), nullable=False),
    sa.Column("access_level", sa.String(20), nullable=False),
    sa.Column("item", JsonOrNull, nullable=True),
    sa.Column("objects", Json, nullable=False),
    sa.Column("storage_id", sa.String(100), nullable=True),
    sa.Column("feature_collections", JsonOrNull, nullable=True),
    sa.Column("created_at", Time, nullable=False),
    sa.Column("published_at", Time, nullable=True),
    sa.Column("updated_at", Time, nullable=False),
    sa.Column("workflow", sa.String(100), nullable=True),
    sa.Column("workflow_version", sa.Integer, nullable=True),
    sa.Column("batch_id", sa.String(100), nullable=True, index=True),
)


@dataclass
class Version:
    """One version of an item."""

    collection_id: str
    item_id: str
    version: int
    kind: str
    status: VersionStatus
    job_id: str
    source_key: str
    source_sha: str
    params_hash: str
    access_level: str
    item: dict[str, Any] | None = None
    objects: list[str] = field(default_factory=list)
    storage_id: str | None = None
    feature_collections: list[dict[str, Any]] | None = None
    created_at: float = 0.0
    published_at: float | None = None
    updated_at: float = 0.0
    workflow: str | None = None
    workflow_version: int | None = None
    batch_id: str | None = None

    @property
    def ref(self) -> str:
        """``collection/item@vN``, as reports and the audit log name it."""
        return f"{self.collection_id}/{self.item_id}@v{self.version}"


def _row(row: sa.Row[Any]) -> Version:
    values = row._asdict()
    values["objects"] = list(values.get("objects") or [])
    return Version(**values)


class VersionStore:
    """Versions in the platform database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def _read(self) -> Any:
        return self.engine.connect().execution_options(sqlite_begin="DEFERRED")

    def reserve(
        self,
        collection_id: str,
        item_id: str,
        *,
        kind: str,
        job_id: str,
        source_key: str,
        source_sha: str,
        params_hash: str,
        access_level: str,
        workflow: str | None = None,
        workflow_version: int | None = None,
        batch_id: str | None = None,
    ) -> Version:
        """The version ``job_id`` publishes: its own row again, or the next number.

        Numbers are never reused: a concurrent reservation that took the same number
        makes this one try the next.
        """
        for _ in range(20):
            with self.engine.begin() as conn:
                own = conn.execute(
                    sa.select(dataset_versions).where(
                        dataset_versions.c.collection_id == collection_id,
                        dataset_versions.c.item_id == item_id,
                        dataset_versions.c.job_id == job_id,
                    )
                ).first()
                if own is not None:
                    return _row(own)
                top = conn.execute(
                    sa.select(sa.func.max(dataset_versions.c.version)).where(
                        dataset_versions.c.collection_id == collection_id,
                        dataset_versions.c.item_id == item_id,
                    )
                ).scalar()
                now = time.time()
                values: dict[str, Any] = {
                    "collection_id": collection_id,
                    "item_id": item_id,
                    "version": (top or 0) + 1,
                    "kind": kind,
                    "status": "staging",
                    "job_id": job_id,
                    "source_key": source_key,
                    "source_sha": source_sha,
                    "params_hash": params_hash,
                    "access_level": access_level,
                    "objects": [],
                    "created_at": now,
                    "updated_at": now,
                    "workflow": workflow,
                    "workflow_version": workflow_version,
                    "batch_id": batch_id,
                }
                try:
                    conn.execute(sa.insert(dataset_versions).values(**values))
                except IntegrityError:
                    continue  # another job took that number just now
                return Version(**values)
        raise Conflict(f"could not number a new version of {collection_id}/{item_id}; retry")

    def adopt(self, version: Version) -> None:
        """Record an item published before versions existed (as its version 1)."""
        values = dict(version.__dict__)
        try:
            with self.engine.begin() as conn:
                conn.execute(sa.insert(dataset_versions).values(**values))
        except IntegrityError:
            pass  # adopted concurrently

    def get(self, collection_id: str, item_id: str, version: int) -> Version:
        """One version, or NotFound."""
        with self._read() as conn:
            row = conn.execute(
                sa.select(dataset_versions).where(
                    dataset_versions.c.collection_id == collection_id,
                    dataset_versions.c.item_id == item_id,
                    dataset_versions.c.version == version,
                )
            ).first()
        if row is None:
            raise NotFound(f"{collection_id}/{item_id} has no version {version}")
        return _row(row)

    def history(self, collection_id: str, item_id: str) -> list[Version]:
        """Every version of an item, oldest first."""
        with self._read() as conn:
            rows = conn.execute(
                sa.select(dataset_versions)
                .where(
                    dataset_versions.c.collection_id == collection_id,
                    dataset_versions.c.item_id == item_id,
                )
                .order_by(dataset_versions.c.version)
            ).all()
        return [_row(r) for r in rows]

    def current(self, collection_id: str, item_id: str) -> Version | None:
        """The highest published version, if any."""
        published = [v for v in self.history(collection_id, item_id) if v.status == "published"]
        return published[-1] if published else None

    def by_job(self, job_id: str) -> list[Version]:
        """The versions a job reserved (one, for the publishing workflows)."""
        with self._read() as conn:
            rows = conn.execute(
                sa.select(dataset_versions).where(dataset_versions.c.job_id == job_id)
            ).all()
        return [_row(r) for r in rows]

    def with_status(self, *statuses: str) -> list[Version]:
        """Every version in one of ``statuses`` (for the janitor)."""
        with self._read() as conn:
            rows = conn.execute(
                sa.select(dataset_versions)
                .where(dataset_versions.c.status.in_(statuses))
                .order_by(
                    dataset_versions.c.collection_id,
                    dataset_versions.c.item_id,
                    dataset_versions.c.version,
                )
            ).all()
        return [_row(r) for r in rows]

    def feature_collection(self, collection_id: str, version: int) -> dict[str, Any] | None:
        """The OGC API collection ``collection_id`` as published by version ``version``."""
        with self._read() as conn:
            rows = conn.execute(
                sa.select(dataset_versions.c.feature_collections).where(
                    dataset_versions.c.kind == "vector",
                    dataset_versions.c.version == version,
                    dataset_versions.c.status == "published",
                )
            ).all()
        for (collections,) in rows:
            for fc in collections or []:
                if fc.get("collection_id") == collection_id:
                    return dict(fc)
        return None

    def derived_from(self, source: str) -> list[Version]:
        """Versions made from a source: its bronze key, or its SHA-256."""
        column = (
            dataset_versions.c.source_sha if "/" not in source else dataset_versions.c.source_key
        )
        with self._read() as conn:
            rows = conn.execute(
                sa.select(dataset_versions)
                .where(column == source)
                .order_by(
                    dataset_versions.c.collection_id,
                    dataset_versions.c.item_id,
                    dataset_versions.c.version,
                )
            ).all()
        return [_row(r) for r in rows]

    def producing(self, key: str) -> list[Version]:
        """Versions that wrote the object ``key``."""
        like = key.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        with self._read() as conn:
            rows = conn.execute(
                sa.select(dataset_versions).where(
                    sa.cast(dataset_versions.c.objects, sa.Text).like(f"%{like}%", escape="\\")
                )
            ).all()
        return [v for v in (_row(r) for r in rows) if key in v.objects]

    def add_objects(self, collection_id: str, item_id: str, version: int, keys: list[str]) -> None:
        """Record objects a version wrote (before they are published: the janitor knows)."""
        with self.engine.begin() as conn:
            row = conn.execute(
                sa.select(dataset_versions.c.objects)
                .where(
                    dataset_versions.c.collection_id == collection_id,
                    dataset_versions.c.item_id == item_id,
                    dataset_versions.c.version == version,
                )
                .with_for_update()
            ).first()
            if row is None:
                raise NotFound(f"{collection_id}/{item_id} has no version {version}")
            merged = list(dict.fromkeys([*(row.objects or []), *keys]))
            conn.execute(
                sa.update(dataset_versions)
                .where(
                    dataset_versions.c.collection_id == collection_id,
                    dataset_versions.c.item_id == item_id,
                    dataset_versions.c.version == version,
                )
                .values(objects=merged, updated_at=time.time())
            )

    def update(
        self,
        collection_id: str,
        item_id: str,
        version: int,
        *,
        only_from: tuple[str, ...] | None = None,
        **values: Any,
    ) -> bool:
        """Change a version's columns (status, item, storage_id, …).

        With ``only_from``, only while its status is one of those; False if it was not.
        """
        query = sa.update(dataset_versions).where(
            dataset_versions.c.collection_id == collection_id,
            dataset_versions.c.item_id == item_id,
            dataset_versions.c.version == version,
        )
        if only_from is not None:
            query = query.where(dataset_versions.c.status.in_(only_from))
        with self.engine.begin() as conn:
            done = conn.execute(query.values(**values, updated_at=time.time())).rowcount
        return bool(done)
