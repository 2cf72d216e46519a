"""Alembic migrations, run programmatically: ``geoetl db upgrade`` or on first use."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from geoetl.engine.db import is_postgres

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"
# Any constant works; it only keeps two processes from migrating at once.
_PG_MIGRATION_LOCK = 0x6765_6F65_746C


def _config() -> Config:
    # Alembic is imported only when a migration runs: it costs every command start-up.
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def head_revision() -> str:
    """The newest migration revision shipped with this code."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, or None for an empty database."""
    with engine.connect().execution_options(sqlite_begin="DEFERRED") as conn:
        if not sa.inspect(conn).has_table("alembic_version"):
            return None
        version = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
        return None if version is None else str(version)


def shipped_head() -> str:
    """The newest revision among the migration files (named ``NNNN_*.py``, linear)."""
    return max(p.name[:4] for p in (MIGRATIONS / "versions").glob("[0-9][0-9][0-9][0-9]_*.py"))


def upgrade(engine: Engine) -> str:
    """Bring the schema to head; safe to run from several processes at once."""
    from alembic import command

    cfg = _config()
    with engine.begin() as conn:
        if is_postgres(engine):
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_MIGRATION_LOCK})")
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
    return head_revision()


def ensure_schema(engine: Engine) -> None:
    """Upgrade when the database is behind this code (first use of a new home)."""
    if current_revision(engine) != shipped_head():
        upgrade(engine)
