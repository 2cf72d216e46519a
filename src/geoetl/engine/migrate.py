"""Alembic migrations, run programmatically: ``geoetl db upgrade`` or on first use."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine

from geoetl.engine.db import is_postgres

MIGRATIONS = Path(__file__).parent / "migrations"
# Any constant works; it only keeps two processes from migrating at once.
_PG_MIGRATION_LOCK = 0x6765_6F65_746C


def _config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def head_revision() -> str:
    """The newest migration revision shipped with this code."""
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, or None for an empty database."""
    with engine.connect().execution_options(sqlite_begin="DEFERRED") as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine) -> str:
    """Bring the schema to head; safe to run from several processes at once."""
    cfg = _config()
    with engine.begin() as conn:
        if is_postgres(engine):
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_MIGRATION_LOCK})")
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
    return head_revision()


def ensure_schema(engine: Engine) -> None:
    """Upgrade when the database is behind this code (first use of a new home)."""
    if current_revision(engine) != head_revision():
        upgrade(engine)
