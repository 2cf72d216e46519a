"""Reader roles on PostgreSQL: pgSTAC row-level security and feature table grants.

Every check connects as the role itself (psycopg), so what is asserted is what
PostgreSQL enforces, not what geoetl believes it granted.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from geoetl.auth.dbroles import ReaderRoles, check_name, policy_name
from geoetl.catalog.pgstac import PgstacCatalog
from geoetl.engine.db import make_engine
from geoetl.engine.migrate import ensure_schema
from geoetl.errors import InputError
from geoetl.features.registry import FeatureCollection, FeatureRegistry
from geoetl.settings import Settings
from tests.cli.helpers import geoetl

pytestmark = pytest.mark.postgres


def _as(url: str, role: str) -> str:
    """``url`` with ``role`` as the user (the test server trusts local connections)."""
    base = url.split("://", 1)[1].split("@", 1)[1]
    return f"postgresql://{role}:pw@{base}"


def drop_role(url: str, role: str) -> None:
    """Remove ``role`` and whatever it holds in the database of ``url``."""
    with psycopg.connect(url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
        if exists:
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


@pytest.fixture
def role_names(pg_database_url: str) -> Iterator[list[str]]:
    """Fresh role names (roles are cluster-wide); dropped afterwards."""
    names: list[str] = []
    yield names
    for name in names:
        drop_role(pg_database_url, name)


def new_role(names: list[str], prefix: str = "t_reader") -> str:
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    names.append(name)
    return name


def _item(cid: str, iid: str, level: str, year: int) -> dict[str, Any]:
    return {
        "type": "Feature",
        "stac_version": "1.1.0",
        "id": iid,
        "collection": cid,
        "bbox": [0, 0, 1, 1],
        "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]]},
        "properties": {"datetime": f"{year}-01-01T00:00:00Z", "geoetl:access_level": level},
        "links": [],
        "assets": {},
    }


@pytest.fixture
def catalog_url(pg_database_url: str) -> str:
    """A database with public, ouo and restricted collections and items in pgSTAC."""
    engine = make_engine(pg_database_url)
    try:
        ensure_schema(engine)
        catalog = PgstacCatalog(engine)
        catalog.ensure_system_collections()
        catalog.ensure_collection("pub", "public")
        catalog.ensure_collection("ouo", "ouo")
        catalog.upsert_items(
            [
                (_item("pub", "p-public", "public", 2020), "public"),
                (_item("pub", "p-ouo", "ouo", 2021), "ouo"),
                (_item("ouo", "o-ouo", "ouo", 2022), "ouo"),
                (_item("ouo", "o-restricted", "restricted", 2023), "restricted"),
            ]
        )
    finally:
        engine.dispose()
    return pg_database_url


def _visible(url: str) -> dict[str, Any]:
    """What a connection sees of pgSTAC, through its tables and its functions."""
    with psycopg.connect(url) as conn:
        conn.execute("SET search_path TO pgstac, public")
        search = conn.execute("SELECT pgstac.search('{\"limit\": 100}')").fetchone()
        collections = conn.execute("SELECT pgstac.collection_search('{}')").fetchone()
        assert search is not None
        assert collections is not None
        return {
            "items": sorted(r[0] for r in conn.execute("SELECT id FROM pgstac.items")),
            "collections": sorted(r[0] for r in conn.execute("SELECT id FROM collections")),
            "search": sorted(f["id"] for f in search[0]["features"]),
            "collection_search": sorted(c["id"] for c in collections[0]["collections"]),
            "stats": sorted({r[0] for r in conn.execute("SELECT collection FROM partition_stats")}),
        }


def test_role_names_are_checked() -> None:
    for bad in ("Reader", "1reader", "reader-x", "a" * 64, 'x"; DROP TABLE y; --', ""):
        with pytest.raises(InputError, match="not valid"):
            check_name(bad)
    for reserved in ("pg_reader", "pgstac_read", "postgres", "public"):
        with pytest.raises(InputError, match="reserved"):
            check_name(reserved)
    assert check_name("_reader_1") == "_reader_1"
    assert len(policy_name("r" * 63)) <= 63
    assert policy_name("r" * 63) != policy_name("r" * 62 + "s")


def test_reader_roles_need_postgresql(home: Path) -> None:
    engine = make_engine(f"sqlite:///{home}/geoetl.db")
    try:
        with pytest.raises(InputError, match="need PostgreSQL"):
            ReaderRoles(engine)
    finally:
        engine.dispose()


def test_a_reader_sees_only_rows_within_its_clearance(
    catalog_url: str, role_names: list[str]
) -> None:
    public, ouo = new_role(role_names), new_role(role_names)
    engine = make_engine(catalog_url)
    try:
        roles = ReaderRoles(engine)
        roles.create(public, "public", "pw")
        roles.create(ouo, "OUO", "pw")
        assert {(r.name, r.clearance) for r in roles.roles()} == {(public, "public"), (ouo, "ouo")}
    finally:
        engine.dispose()

    everything = _visible(catalog_url)  # postgres: a superuser, who bypasses RLS
    assert everything["items"] == ["o-ouo", "o-restricted", "p-ouo", "p-public"]
    assert everything["search"] == everything["items"]
    assert everything["collection_search"] == ["ouo", "pub", "system-rasters", "system-vectors"]

    seen = _visible(_as(catalog_url, public))
    assert seen == {
        "items": ["p-public"],
        "collections": ["pub", "system-rasters", "system-vectors"],
        "search": ["p-public"],
        "collection_search": ["pub", "system-rasters", "system-vectors"],
        "stats": ["pub"],
    }
    seen = _visible(_as(catalog_url, ouo))
    assert seen["items"] == seen["search"] == ["o-ouo", "p-ouo", "p-public"]
    assert seen["collection_search"] == ["ouo", "pub", "system-rasters", "system-vectors"]

    with psycopg.connect(_as(catalog_url, public)) as conn:
        conn.execute("SET search_path TO pgstac, public")
        # pgSTAC's functions run with the caller's rights: hidden things are not found.
        assert conn.execute("SELECT get_item('o-ouo', 'ouo')").fetchone() == (None,)
        assert conn.execute("SELECT get_collection('ouo')").fetchone() == (None,)
        found = conn.execute("SELECT get_item('p-public', 'pub')").fetchone()
        assert found is not None
        assert found[0]["id"] == "p-public"
        # Registering a search (titiler-pgstac's mosaics) writes pgSTAC's caches.
        registered = conn.execute(
            'SELECT hash FROM search_query(\'{"collections": ["ouo"]}\')'
        ).fetchone()
        assert registered is not None
        # Item partitions are not readable directly (they would skip RLS), nor are
        # pgSTAC's partition views, staging tables and format cache.
        partitions = [
            r[0]
            for r in conn.execute(
                "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = 'pgstac' AND c.relispartition AND c.relkind IN ('r', 'p')"
            )
        ]
        assert partitions
        for table in [*partitions, "partitions", "partitions_view", "items_staging"]:
            granted = conn.execute(
                "SELECT has_table_privilege(format('pgstac.%%I', %s::text), 'SELECT')", (table,)
            ).fetchone()
            assert granted == (False,), table
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(
                sql.SQL("SELECT * FROM {}").format(sql.Identifier("pgstac", partitions[0]))
            )


def test_pgstac_roles_and_the_owner_still_see_and_write_everything(
    catalog_url: str, role_names: list[str]
) -> None:
    reader, ingest, admin = (new_role(role_names) for _ in range(3))
    engine = make_engine(catalog_url)
    try:
        ReaderRoles(engine).create(reader, "public")
    finally:
        engine.dispose()
    with psycopg.connect(catalog_url, autocommit=True) as conn:
        for role, group in ((ingest, "pgstac_ingest"), (admin, "pgstac_admin")):
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN IN ROLE {}").format(
                    sql.Identifier(role), sql.Identifier(group)
                )
            )
    for role in (ingest, admin):
        assert _visible(_as(catalog_url, role))["items"] == [
            "o-ouo",
            "o-restricted",
            "p-ouo",
            "p-public",
        ]
    # An ingest role writes as before: a new item in a new year partition, and an update.
    with psycopg.connect(_as(catalog_url, ingest)) as conn:
        conn.execute("SET search_path TO pgstac, public")
        conn.execute(
            "SELECT upsert_item(%s::jsonb)",
            (psycopg.types.json.Json(_item("ouo", "o-new", "ouo", 2030)),),
        )
    with psycopg.connect(_as(catalog_url, admin)) as conn:
        conn.execute("SET search_path TO pgstac, public")
        assert conn.execute("SELECT count(*) FROM items").fetchone() == (5,)
        assert conn.execute("SELECT get_item('o-new', 'ouo')").fetchone() != (None,)
    # pgSTAC's owner role (through SET ROLE) is not limited either.
    with psycopg.connect(catalog_url) as conn:
        conn.execute("SET ROLE pgstac_admin")
        assert conn.execute("SELECT count(*) FROM pgstac.items").fetchone() == (5,)
        assert conn.execute("SELECT count(*) FROM pgstac.collections").fetchone() == (4,)
    assert _visible(_as(catalog_url, reader))["items"] == ["p-public"]


def test_a_role_that_would_see_everything_is_refused(
    catalog_url: str, role_names: list[str]
) -> None:
    member, superuser = new_role(role_names), new_role(role_names)
    with psycopg.connect(catalog_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN IN ROLE pgstac_read").format(sql.Identifier(member))
        )
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN SUPERUSER").format(sql.Identifier(superuser)))
    engine = make_engine(catalog_url)
    try:
        with pytest.raises(InputError, match="member of pgstac_read"):
            ReaderRoles(engine).create(member, "public")
        with pytest.raises(InputError, match="superuser"):
            ReaderRoles(engine).create(superuser, "public")
    finally:
        engine.dispose()


def test_clearance_update_password_and_drop(catalog_url: str, role_names: list[str]) -> None:
    name = new_role(role_names)
    engine = make_engine(catalog_url)
    try:
        roles = ReaderRoles(engine)
        roles.create(name, "public", "first secret")
        with psycopg.connect(catalog_url) as conn:
            stored = conn.execute(
                "SELECT rolpassword FROM pg_authid WHERE rolname = %s", (name,)
            ).fetchone()
        # Hashed by the client: the clear text never reached the server.
        assert stored is not None
        assert stored[0].startswith("SCRAM-SHA-256$")
        roles.create(name, "ouo")  # a new clearance; the password is kept
        with psycopg.connect(catalog_url) as conn:
            again = conn.execute(
                "SELECT rolpassword FROM pg_authid WHERE rolname = %s", (name,)
            ).fetchone()
        assert again == stored
        assert _visible(_as(catalog_url, name))["items"] == ["o-ouo", "p-ouo", "p-public"]
        roles.create(name, "public")
        assert _visible(_as(catalog_url, name))["items"] == ["p-public"]
        with pytest.raises(InputError, match="empty"):
            roles.create(name, "public", "")

        assert roles.drop(name) is True
        assert roles.roles() == []
        with psycopg.connect(catalog_url) as conn:
            policies = conn.execute(
                "SELECT count(*) FROM pg_policies WHERE policyname = %s", (policy_name(name),)
            ).fetchone()
            gone = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone()
        assert policies == (0,)
        assert gone is None
    finally:
        engine.dispose()


def _feature_table(url: str, table: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA IF NOT EXISTS geo")
        conn.execute(
            sql.SQL("CREATE TABLE {} (fid bigint PRIMARY KEY, geom geometry(Point, 4326))").format(
                sql.Identifier("geo", table)
            )
        )


def _register(registry: FeatureRegistry, table: str, level: str) -> None:
    registry.upsert(
        FeatureCollection(
            collection_id=table,
            dataset_id=table,
            table_name=table,
            family="points",
            title=table,
            feature_count=0,
            bbox=None,
            fields={},
            column_map={},
            access_level=level,
            stac_collection="system-vectors",
            job_id="j",
        )
    )


def _selectable(url: str, role: str) -> list[str]:
    with psycopg.connect(_as(url, role)) as conn:
        rows = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'geo' "
            "AND has_table_privilege(format('%I.%I', schemaname, tablename), 'SELECT') ORDER BY 1"
        ).fetchall()
    return [r[0] for r in rows]


def test_feature_grants_follow_the_registry(pg_database_url: str, role_names: list[str]) -> None:
    public, ouo = new_role(role_names), new_role(role_names)
    engine = make_engine(pg_database_url)
    try:
        ensure_schema(engine)
        registry = FeatureRegistry(engine)
        for table, level in (("roads", "public"), ("wells", "ouo"), ("secret", "restricted")):
            _feature_table(pg_database_url, table)
            _register(registry, table, level)
        _feature_table(pg_database_url, "unregistered")
        roles = ReaderRoles(engine)
        assert roles.create(public, "public").feature_tables == ("roads",)
        assert roles.create(ouo, "ouo").feature_tables == ("roads", "wells")
        assert _selectable(pg_database_url, public) == ["roads"]
        assert _selectable(pg_database_url, ouo) == ["roads", "wells"]

        # A dataset published later, and one re-published at a higher level.
        _feature_table(pg_database_url, "parks")
        _register(registry, "parks", "public")
        _register(registry, "roads", "ouo")
        assert roles.sync() == {public: ["parks"], ouo: ["parks", "roads", "wells"]}
        assert _selectable(pg_database_url, public) == ["parks"]
        assert _selectable(pg_database_url, ouo) == ["parks", "roads", "wells"]
        with (
            psycopg.connect(_as(pg_database_url, public)) as conn,
            pytest.raises(psycopg.errors.InsufficientPrivilege),
        ):
            conn.execute("SELECT * FROM geo.roads")
    finally:
        engine.dispose()


def test_sync_without_reader_roles_changes_nothing(pg_database_url: str) -> None:
    engine = make_engine(pg_database_url)
    try:
        assert ReaderRoles(engine).sync() == {}
        with psycopg.connect(pg_database_url) as conn:
            assert conn.execute("SELECT to_regclass('geoetl_reader_roles')").fetchone() == (None,)
            rls = conn.execute(
                "SELECT relrowsecurity FROM pg_class WHERE oid = 'pgstac.items'::regclass"
            ).fetchone()
        assert rls == (False,)
    finally:
        engine.dispose()


def test_cli_creates_a_reader_role(pg_database_url: str, home: Path, role_names: list[str]) -> None:
    name = new_role(role_names)
    settings = Settings(home=home, database_url=pg_database_url)
    done = geoetl(settings, "db", "create-reader-role", name, "--clearance", "public", "--json")
    assert done.returncode == 0, done.stderr
    assert '"clearance": "public"' in done.stdout
    bad = geoetl(settings, "db", "create-reader-role", "Bad-Name", "--clearance", "public")
    assert bad.returncode == 2
    assert "not valid" in bad.stderr
    level = geoetl(settings, "db", "create-reader-role", name, "--clearance", "secret")
    assert level.returncode == 2
    assert "access_level" in level.stderr


def test_cli_on_sqlite_says_postgresql_is_needed(home: Path) -> None:
    done = geoetl(Settings(home=home), "db", "create-reader-role", "reader_pub")
    assert done.returncode == 2
    assert "reader roles need PostgreSQL" in done.stderr


def test_db_upgrade_applies_reader_roles_again(
    catalog_url: str, home: Path, role_names: list[str]
) -> None:
    name = new_role(role_names)
    settings = Settings(home=home, database_url=catalog_url)
    made = geoetl(settings, "db", "create-reader-role", name, "--clearance", "public")
    assert made.returncode == 0, made.stderr
    # What a pgSTAC migration may undo: the view read with the reader's rights.
    with psycopg.connect(catalog_url, autocommit=True) as conn:
        conn.execute("ALTER VIEW pgstac.collections_asitems RESET (security_invoker)")
    assert "ouo" in _visible(_as(catalog_url, name))["collection_search"]
    done = geoetl(settings, "db", "upgrade")
    assert done.returncode == 0, done.stderr
    assert f"reader role {name}: policies and grants applied again" in done.stdout
    after = _visible(_as(catalog_url, name))["collection_search"]
    assert after == ["pub", "system-rasters", "system-vectors"]
