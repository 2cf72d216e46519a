"""pgSTAC's schema in the platform database: installed and upgraded by pypgstac.

pypgstac's version pins the pgSTAC schema it installs; geoetl pins a pypgstac minor
that the current stac-fastapi-pgstac and titiler-pgstac support, so the catalog
geoetl writes is the one those tools read. PostGIS is enabled in the same step
(the feature store's tables and the catalog's spatial filters need it).
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from geoetl.errors import GeoEtlError

# The pgSTAC minor this code speaks (pypgstac==0.10.* installs pgSTAC 0.10.x).
PGSTAC_MINOR = "0.10"
# Keeps two processes from migrating pgSTAC at the same moment.
_PGSTAC_LOCK = 0x7067_7374_6163


class PgstacVersionError(GeoEtlError):
    """The database holds a pgSTAC this code does not speak."""


def dsn(engine: Engine) -> str:
    """A libpq connection string for ``engine`` (what pypgstac and psycopg take)."""
    url = engine.url.set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


def installed_version(engine: Engine) -> str | None:
    """PgSTAC's version in the database, or None when it is not installed."""
    with engine.connect() as conn:
        has_schema = conn.execute(
            sa.text("SELECT 1 FROM pg_namespace WHERE nspname = 'pgstac'")
        ).scalar()
        if not has_schema:
            return None
        version = conn.execute(sa.text("SELECT pgstac.get_version()")).scalar()
    return None if version is None else str(version)


def check_version(engine: Engine) -> str:
    """The installed pgSTAC version; PgstacVersionError unless it is the pinned minor."""
    version = installed_version(engine)
    if version is None:
        raise PgstacVersionError(
            "pgSTAC is not installed in this database; run `geoetl db upgrade`"
        )
    if not (version == PGSTAC_MINOR or version.startswith(PGSTAC_MINOR + ".")):
        raise PgstacVersionError(
            f"this database has pgSTAC {version}; geoetl needs {PGSTAC_MINOR}.x "
            "(run `geoetl db upgrade` with this geoetl, or use a geoetl built for that pgSTAC)"
        )
    return version


def ensure_postgis(engine: Engine) -> None:
    """``CREATE EXTENSION postgis`` unless it is there (needs a role allowed to create it)."""
    with engine.begin() as conn:
        present = conn.execute(
            sa.text("SELECT 1 FROM pg_extension WHERE extname = 'postgis'")
        ).scalar()
        if not present:
            conn.execute(sa.text("CREATE EXTENSION IF NOT EXISTS postgis"))


def install(engine: Engine) -> str:
    """Install or upgrade pgSTAC (and enable PostGIS); returns the pgSTAC version."""
    ensure_postgis(engine)
    with engine.connect() as lock:
        lock.execute(sa.text(f"SELECT pg_advisory_lock({_PGSTAC_LOCK})"))
        try:
            version = installed_version(engine)
            if version is None or not version.startswith(PGSTAC_MINOR):
                # pypgstac (and what it imports) loads only when a migration runs.
                from pypgstac.db import PgstacDB
                from pypgstac.migrate import Migrate

                with PgstacDB(dsn=dsn(engine)) as db:
                    Migrate(db).run_migration()
        finally:
            lock.execute(sa.text(f"SELECT pg_advisory_unlock({_PGSTAC_LOCK})"))
            lock.commit()
    return check_version(engine)
