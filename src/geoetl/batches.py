"""Landing-zone batches in the platform database (SQL lives here).

A batch row is written when a watcher picks up ``landing/manifests/{batch_id}.json``:
its primary key is what makes the pick-up exactly-once across watchers (a second
insert fails). A batch left ``received`` by a watcher that died is taken over after
:data:`STALE_SECONDS`. Each file of the batch has a row with its bronze copy, its
SHA-256 and the job publishing it (or why it was not submitted).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from geoetl.engine.schema import JsonOrNull, Time, metadata
from geoetl.errors import NotFound

STALE_SECONDS = 600.0

batches = sa.Table(
    "batches",
    metadata,
    sa.Column("batch_id", sa.String(100), primary_key=True),
    sa.Column("manifest_key", sa.String(1000), nullable=False),
    sa.Column("status", sa.String(20), nullable=False, index=True),
    sa.Column("uploader", sa.String(200), nullable=True),
    sa.Column("access_level", sa.String(20), nullable=True),
    sa.Column("intent", sa.String(100), nullable=True),
    sa.Column("manifest", JsonOrNull, nullable=True),
    sa.Column("errors", JsonOrNull, nullable=True),
    sa.Column("picked_by", sa.String(200), nullable=False),
    sa.Column("received_at", Time, nullable=False),
    sa.Column("updated_at", Time, nullable=False),
)

batch_files = sa.Table(
    "batch_files",
    metadata,
    sa.Column("batch_id", sa.String(100), primary_key=True),
    sa.Column("path", sa.String(1000), primary_key=True),
    sa.Column("kind", sa.String(10), nullable=True),
    sa.Column("source_key", sa.String(1000), nullable=True),
    sa.Column("sha256", sa.String(64), nullable=True),
    sa.Column("job_id", sa.String(64), nullable=True, index=True),
    sa.Column("error", sa.Text, nullable=True),
)


@dataclass
class BatchFile:
    """One file of a batch."""

    path: str
    kind: str | None = None
    source_key: str | None = None
    sha256: str | None = None
    job_id: str | None = None
    error: str | None = None


@dataclass
class Batch:
    """A picked-up manifest: ``received`` (being submitted), ``submitted`` or ``invalid``."""

    batch_id: str
    manifest_key: str
    status: str
    picked_by: str
    received_at: float
    updated_at: float
    uploader: str | None = None
    access_level: str | None = None
    intent: str | None = None
    manifest: dict[str, Any] | None = None
    errors: list[str] | None = None
    files: list[BatchFile] = field(default_factory=list)


class BatchStore:
    """Batches and their files."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def known(self) -> set[str]:
        """Ids of every batch picked up (and not stale)."""
        cutoff = time.time() - STALE_SECONDS
        with self.engine.connect().execution_options(sqlite_begin="DEFERRED") as conn:
            rows = conn.execute(
                sa.select(batches.c.batch_id).where(
                    sa.or_(batches.c.status != "received", batches.c.updated_at >= cutoff)
                )
            ).all()
        return {r.batch_id for r in rows}

    def claim(self, batch_id: str, manifest_key: str, worker: str) -> bool:
        """Take a manifest; False when another watcher has it (or had it and finished)."""
        now = time.time()
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    sa.insert(batches).values(
                        batch_id=batch_id,
                        manifest_key=manifest_key,
                        status="received",
                        picked_by=worker,
                        received_at=now,
                        updated_at=now,
                    )
                )
            return True
        except IntegrityError:
            pass
        # A watcher that died mid-batch: its claim is taken over once stale.
        with self.engine.begin() as conn:
            taken = conn.execute(
                sa.update(batches)
                .where(
                    batches.c.batch_id == batch_id,
                    batches.c.status == "received",
                    batches.c.updated_at < now - STALE_SECONDS,
                )
                .values(picked_by=worker, updated_at=now)
            ).rowcount
        return bool(taken)

    def finish(
        self,
        batch_id: str,
        *,
        status: str,
        manifest: dict[str, Any] | None,
        errors: list[str],
        files: list[BatchFile],
    ) -> None:
        """Record a batch's outcome and its files."""
        with self.engine.begin() as conn:
            conn.execute(sa.delete(batch_files).where(batch_files.c.batch_id == batch_id))
            if files:
                conn.execute(
                    sa.insert(batch_files),
                    [{"batch_id": batch_id, **f.__dict__} for f in files],
                )
            conn.execute(
                sa.update(batches)
                .where(batches.c.batch_id == batch_id)
                .values(
                    status=status,
                    manifest=manifest,
                    errors=errors or None,
                    uploader=(manifest or {}).get("uploader"),
                    access_level=(manifest or {}).get("access_level"),
                    intent=(manifest or {}).get("intent"),
                    updated_at=time.time(),
                )
            )

    def get(self, batch_id: str) -> Batch:
        """A batch with its files, or NotFound."""
        with self.engine.connect().execution_options(sqlite_begin="DEFERRED") as conn:
            row = conn.execute(sa.select(batches).where(batches.c.batch_id == batch_id)).first()
            if row is None:
                raise NotFound(f"no batch {batch_id!r}")
            files = conn.execute(
                sa.select(batch_files)
                .where(batch_files.c.batch_id == batch_id)
                .order_by(batch_files.c.path)
            ).all()
        batch = Batch(**row._asdict())
        batch.files = [
            BatchFile(**{k: v for k, v in f._asdict().items() if k != "batch_id"}) for f in files
        ]
        return batch
