"""The audit log: who did what to which dataset or token, and when (SQL lives here).

Append-only: rows are only ever inserted. The database refuses UPDATE and DELETE on
the table (a trigger on both backends, installed by the migration), so a mistake or
a compromised worker cannot rewrite history through geoetl's own connection.

Actions: ``publish`` (a dataset's first version), ``replace`` (a new version of a
published dataset), ``approve``, ``reject``, ``unpublish``, ``discard`` (a draft whose
job ended without publishing: cancelled while awaiting approval, or swept by the
janitor), ``token_create`` and ``token_revoke``. ``actor`` is a token's name
(``token:NAME``), an OIDC subject, ``local`` (the CLI on the machine) or ``system``;
``target`` names the dataset (``collection/item@vN``) or the token.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from geoetl.engine.schema import BigId, JsonOrNull, Time, metadata

ACTIONS = (
    "publish",
    "replace",
    "approve",
    "reject",
    "unpublish",
    "discard",
    "token_create",
    "token_revoke",
)

audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("at", Time, nullable=False, index=True),
    sa.Column("actor", sa.String(200), nullable=False, index=True),
    sa.Column("action", sa.String(30), nullable=False, index=True),
    sa.Column("target", sa.String(400), nullable=False, index=True),
    sa.Column("job_id", sa.String(64), nullable=True, index=True),
    sa.Column("details", JsonOrNull, nullable=True),
)


@dataclass(frozen=True)
class AuditEntry:
    """One recorded action."""

    id: int
    at: float
    actor: str
    action: str
    target: str
    job_id: str | None
    details: dict[str, Any] | None

    def as_json(self) -> dict[str, Any]:
        """The entry as the API shows it (time in ISO 8601)."""
        return {
            "id": self.id,
            "at": datetime.fromtimestamp(self.at, tz=UTC).isoformat().replace("+00:00", "Z"),
            "actor": self.actor,
            "action": self.action,
            "target": self.target,
            "job_id": self.job_id,
            "details": self.details,
        }


class AuditLog:
    """The append-only audit table."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def record(
        self,
        actor: str,
        action: str,
        target: str,
        *,
        job_id: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> int:
        """Append an entry; returns its id."""
        if action not in ACTIONS:
            raise ValueError(f"unknown audit action {action!r}")
        with self.engine.begin() as conn:
            new_id = conn.execute(
                sa.insert(audit_log)
                .values(
                    at=time.time(),
                    actor=actor,
                    action=action,
                    target=target,
                    job_id=job_id,
                    details=details,
                )
                .returning(audit_log.c.id)
            ).scalar_one()
        return int(new_id)

    def entries(
        self,
        *,
        actor: str | None = None,
        action: str | None = None,
        target: str | None = None,
        job_id: str | None = None,
        since: float | None = None,
        until: float | None = None,
        before_id: int | None = None,
        limit: int = 100,
    ) -> list[AuditEntry]:
        """Entries matching every given filter, newest first.

        ``target`` matches a whole target or its prefix up to ``@`` or ``/`` (a
        collection, or an item with all its versions). ``before_id`` pages on.
        """
        query = sa.select(audit_log).order_by(audit_log.c.id.desc()).limit(limit)
        if actor is not None:
            query = query.where(audit_log.c.actor == actor)
        if action is not None:
            query = query.where(audit_log.c.action == action)
        if target is not None:
            query = query.where(
                sa.or_(
                    audit_log.c.target == target,
                    audit_log.c.target.startswith(f"{target}@", autoescape=True),
                    audit_log.c.target.startswith(f"{target}/", autoescape=True),
                )
            )
        if job_id is not None:
            query = query.where(audit_log.c.job_id == job_id)
        if since is not None:
            query = query.where(audit_log.c.at >= since)
        if until is not None:
            query = query.where(audit_log.c.at < until)
        if before_id is not None:
            query = query.where(audit_log.c.id < before_id)
        with self.engine.connect().execution_options(sqlite_begin="DEFERRED") as conn:
            rows = conn.execute(query).all()
        return [AuditEntry(**r._asdict()) for r in rows]
